import Hummingbird
import NIOCore

/// An error answered in Google's envelope: `{"error":{"code","message","status",["details"]}}`.
struct GoogleError: Error {
    let httpStatus: HTTPResponse.Status
    let status: String
    let message: String
    var details: [JSONValue] = []

    var envelope: JSONValue {
        var error: [(String, JSONValue)] = [
            ("code", .int(httpStatus.code)), ("message", .string(message)), ("status", .string(status)),
        ]
        if !details.isEmpty { error.append(("details", .array(details))) }
        return .object([("error", .object(error))])
    }

    /// The error as an HTTP response; `wrapped` puts the envelope in a one-element array,
    /// as Google does on `/v1beta/openai/*` and for JSON-array streams.
    func response(wrapped: Bool) -> Response {
        let body = wrapped ? JSONValue.array([envelope]).pretty : envelope.pretty
        var response = jsonResponse(body + "\n", status: httpStatus)
        if httpStatus == .tooManyRequests { response.headers[.retryAfter] = "2" }
        return response
    }
}

extension GoogleError {
    static let missingCredential = GoogleError(
        httpStatus: .forbidden,
        status: "PERMISSION_DENIED",
        message: "Method doesn't allow unregistered callers (callers without established identity). "
            + "Please use API Key or other form of API consumer identity to call this API."
    )

    static let invalidKey = GoogleError(
        httpStatus: .badRequest,
        status: "INVALID_ARGUMENT",
        message: "API key not valid. Please pass a valid API key.",
        details: [
            .object([
                ("@type", .string("type.googleapis.com/google.rpc.ErrorInfo")),
                ("reason", .string("API_KEY_INVALID")),
                ("domain", .string("googleapis.com")),
                ("metadata", .object([("service", .string("generativelanguage.googleapis.com"))])),
            ]),
            .object([
                ("@type", .string("type.googleapis.com/google.rpc.LocalizedMessage")),
                ("locale", .string("en-US")),
                ("message", .string("API key not valid. Please pass a valid API key.")),
            ]),
        ]
    )

    static let internalError = GoogleError(
        httpStatus: .internalServerError,
        status: "INTERNAL",
        message: "An internal error has occurred. Please retry or report in "
            + "https://developers.generativeai.google/guide/troubleshooting"
    )

    static let overloaded = GoogleError(
        httpStatus: .serviceUnavailable,
        status: "UNAVAILABLE",
        message: "The model is overloaded. Please try again later."
    )

    static func invalidArgument(_ message: String) -> GoogleError {
        GoogleError(httpStatus: .badRequest, status: "INVALID_ARGUMENT", message: message)
    }

    static func quotaExceeded(model: String) -> GoogleError {
        GoogleError(
            httpStatus: .tooManyRequests,
            status: "RESOURCE_EXHAUSTED",
            message: "You exceeded your current quota, please check your plan and billing details. "
                + "For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
                + "Please retry in 2s.",
            details: [
                .object([
                    ("@type", .string("type.googleapis.com/google.rpc.QuotaFailure")),
                    (
                        "violations",
                        .array([
                            .object([
                                ("quotaMetric", .string("generativelanguage.googleapis.com/generate_content_free_tier_requests")),
                                ("quotaId", .string("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")),
                                ("quotaDimensions", .object([("location", .string("global")), ("model", .string(model))])),
                                ("quotaValue", .string("10")),
                            ])
                        ])
                    ),
                ]),
                .object([
                    ("@type", .string("type.googleapis.com/google.rpc.Help")),
                    (
                        "links",
                        .array([
                            .object([
                                ("description", .string("Learn more about Gemini API quotas")),
                                ("url", .string("https://ai.google.dev/gemini-api/docs/rate-limits")),
                            ])
                        ])
                    ),
                ]),
                .object([
                    ("@type", .string("type.googleapis.com/google.rpc.RetryInfo")),
                    ("retryDelay", .string("2s")),
                ]),
            ]
        )
    }

    static func notFound(_ message: String) -> GoogleError {
        GoogleError(httpStatus: .notFound, status: "NOT_FOUND", message: message)
    }

    /// Maps a framework error (unknown route, body too large, …) to the envelope.
    init(_ error: HTTPError) {
        if error.status == .notFound || error.status == .methodNotAllowed {
            self.init(httpStatus: .notFound, status: "NOT_FOUND", message: "Requested entity was not found.")
        } else {
            let statuses = [400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 413: "INVALID_ARGUMENT"]
            self.init(
                httpStatus: error.status,
                status: statuses[error.status.code] ?? "INTERNAL",
                message: error.body ?? error.status.reasonPhrase
            )
        }
    }
}

/// A JSON answer with Google's content type.
func jsonResponse(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json; charset=UTF-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: body))
    )
}
