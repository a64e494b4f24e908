import Foundation
public import HTTPTypes
public import Hummingbird
import NIOCore

/// An error the proxy answers itself, rendered in Google's envelope
/// `{"error": {"code": N, "message": "…", "status": "…"}}` (SPEC §8).
///
/// Every error is a named member, as `HTTPClientError` names its own (`.connectTimeout`): a fixed one
/// (``missingCredential``) or a family that takes what varies (``invalidArgument(_:)``). The initializer
/// is private: every status and Google status, and every fixed message, is written here only.
public struct ProxyError: Error, HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    /// The `google.rpc.Code` name, e.g. `INVALID_ARGUMENT`.
    public let googleStatus: String
    public let message: String
    /// Seconds for `Retry-After` (sent on 429 and 503).
    public let retryAfter: Int?
    /// Wrap the envelope in a one-element array, as Google does on the OpenAI surface and JSON-array streams.
    public var wrapped = false

    /// The `google.rpc.Code` names the proxy answers with.
    private enum Code: String {
        case invalidArgument = "INVALID_ARGUMENT"
        case unauthenticated = "UNAUTHENTICATED"
        case permissionDenied = "PERMISSION_DENIED"
        case resourceExhausted = "RESOURCE_EXHAUSTED"
        case deadlineExceeded = "DEADLINE_EXCEEDED"
        case unavailable = "UNAVAILABLE"
        case notFound = "NOT_FOUND"
    }

    private init(_ status: HTTPResponse.Status, _ code: Code, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.googleStatus = code.rawValue
        self.message = message
        self.retryAfter = retryAfter
    }

    // MARK: - The request

    /// 400: the request is malformed in the way `message` says.
    static func invalidArgument(_ message: String) -> ProxyError { ProxyError(.badRequest, .invalidArgument, message) }

    /// 400: a request target that is not an origin-form path on the upstream.
    static let invalidRequestTarget = invalidArgument(
        "Invalid request target: gemcache takes an origin-form path (a single leading '/', no scheme, host, '@', '\\', empty or dot segments, or encoded separators)."
    )

    /// 400: more than one credential (SPEC §8, ``Credential``).
    static let moreThanOneCredential = invalidArgument(
        "The request carries more than one credential (x-goog-api-key, ?key=, access_token, Authorization: Bearer): send exactly one."
    )

    /// 400: the body ended or failed before it was whole.
    static let unreadableBody = invalidArgument("The request body could not be read.")

    /// 413: a body on a cached route larger than `limits.max_body` (`limit` bytes).
    static func bodyTooLarge(limit: Int) -> ProxyError {
        ProxyError(.contentTooLarge, .invalidArgument, "Request body is larger than limits.max_body (\(limit) bytes).")
    }

    /// 431: headers larger than `limit` bytes.
    static func headersTooLarge(limit: Int) -> ProxyError {
        ProxyError(.requestHeaderFieldsTooLarge, .invalidArgument, "The request's headers are larger than \(limit) bytes.")
    }

    /// 405: `/metrics` is read with GET (or HEAD).
    static let metricsNeedGet = ProxyError(.methodNotAllowed, .invalidArgument, "Only GET reads /metrics.")

    // MARK: - Credentials

    /// 403: no credential, in Google's words.
    static let missingCredential = ProxyError(
        .forbidden,
        .permissionDenied,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
    )

    /// 401: managed mode, and the credential is not a gemcache proxy token.
    static let invalidProxyToken = ProxyError(
        .unauthorized,
        .unauthenticated,
        "Request had invalid authentication credentials. Present a gemcache proxy token as x-goog-api-key, ?key= or Authorization: Bearer."
    )

    /// 403: an admin action without the admin token.
    static let adminTokenRequired = ProxyError(
        .forbidden,
        .permissionDenied,
        "Admin actions need Authorization: Bearer <the token in the variable named by admin.token_env>."
    )

    // MARK: - Cache-Control: only-if-cached

    /// 504: nothing cached, and the request forbids calling upstream.
    static let notCached = ProxyError(
        .gatewayTimeout,
        .deadlineExceeded,
        "No cached answer, and Cache-Control: only-if-cached forbids calling upstream."
    )

    /// 504: a batch with an uncached item, and the request forbids calling upstream.
    static let notEveryItemCached = ProxyError(
        .gatewayTimeout,
        .deadlineExceeded,
        "Not every item is cached, and Cache-Control: only-if-cached forbids calling upstream."
    )

    // MARK: - Replay (SPEC §11)

    /// 404: replay found no recorded answer; `message` (which starts `gemcache replay:`) names the
    /// nearest recorded request and where it differs.
    static func notRecorded(_ message: String) -> ProxyError { ProxyError(.notFound, .notFound, message) }

    /// 404: replay never calls the upstream, and only cached routes are recorded.
    static let notRecordedRoute = notRecorded(
        "gemcache replay: only cached routes are recorded and replayed; this one would go to the upstream, which replay never calls."
    )

    // MARK: - Quota

    /// 429: the quota guard will not let the call through in time; `message` says which limit, and
    /// `retryAfter` (seconds) when it would.
    static func quotaExceeded(_ message: String, retryAfter: Int) -> ProxyError {
        ProxyError(.tooManyRequests, .resourceExhausted, message, retryAfter: retryAfter)
    }

    /// 429: the model and its fallback are both out of quota.
    static let outOfQuota = ProxyError(.tooManyRequests, .resourceExhausted, "Out of quota.")

    // MARK: - The upstream

    /// 504: no answer within `upstream.timeout`.
    static let upstreamTimeout = ProxyError(.gatewayTimeout, .deadlineExceeded, "The upstream did not answer within upstream.timeout.")

    /// 502: no connection within `upstream.connect_timeout`.
    static let upstreamConnectTimeout = ProxyError(
        .badGateway,
        .unavailable,
        "The upstream could not be reached within upstream.connect_timeout."
    )

    /// 502: the connection failed or closed.
    static let upstreamUnreachable = ProxyError(.badGateway, .unavailable, "The upstream could not be reached or closed the connection.")

    /// 502: a status line outside 100...599.
    static let upstreamInvalidStatus = ProxyError(.badGateway, .unavailable, "The upstream answered with an invalid status.")

    /// 502: an answer the proxy must buffer is larger than `limits.max_body`.
    static let upstreamAnswerTooLarge = ProxyError(.badGateway, .unavailable, "The upstream answer is larger than limits.max_body.")

    /// 502: a stream that ended before its head.
    static let upstreamStreamEndedEarly = ProxyError(.badGateway, .unavailable, "The upstream stream ended without an answer.")

    /// 502: what a subscriber cut off from a shared stream gets (never seen as such: its answer had started).
    static let fellBehindSharedStream = ProxyError(
        .badGateway,
        .unavailable,
        "The client fell too far behind a stream it shared with others."
    )

    /// The JSON body.
    public var body: [UInt8] {
        var error: [String: Any] = ["code": status.code, "message": message, "status": googleStatus]
        if status == .tooManyRequests, let retryAfter {
            error["details"] = [["@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "\(retryAfter)s"]]
        }
        let envelope: [String: Any] = ["error": error]
        let data = (try? JSONSerialization.data(withJSONObject: wrapped ? [envelope] : envelope, options: [.sortedKeys])) ?? Data()
        return Array(data)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=UTF-8"]
        if let retryAfter, status == .tooManyRequests || status == .serviceUnavailable {
            headers[.retryAfter] = String(retryAfter)
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

extension HTTPField.Name {
    static let gemcache = Self("X-Gemcache")!
    static let gemcacheKey = Self("X-Gemcache-Key")!
    static let gemcacheTTL = Self("X-Gemcache-TTL")!
    static let gemcacheNamespace = Self("X-Gemcache-Namespace")!
    static let cacheStatus = Self("Cache-Status")!
    static let gemcacheFallback = Self("X-Gemcache-Fallback")!
    static let googAPIKey = Self("x-goog-api-key")!
    static let googFieldMask = Self("X-Goog-FieldMask")!
    static let googAPIClient = Self("x-goog-api-client")!
    static let googUserProject = Self("x-goog-user-project")!
}
