import Foundation
public import HTTPTypes
public import Hummingbird
import NIOCore

/// An error the proxy answers itself, rendered in Google's envelope
/// `{"error": {"code": N, "message": "…", "status": "…"}}` (SPEC §8).
public struct ProxyError: Error, HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    /// The `google.rpc.Code` name, e.g. `INVALID_ARGUMENT`.
    public let googleStatus: String
    public let message: String
    /// Seconds for `Retry-After` (sent on 429 and 503).
    public let retryAfter: Int?
    /// Wrap the envelope in a one-element array, as Google does on the OpenAI surface and JSON-array streams.
    public var wrapped = false

    public init(_ status: HTTPResponse.Status, _ googleStatus: String, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.googleStatus = googleStatus
        self.message = message
        self.retryAfter = retryAfter
    }

    static func invalidArgument(_ message: String) -> ProxyError { ProxyError(.badRequest, "INVALID_ARGUMENT", message) }

    static let missingCredential = ProxyError(
        .forbidden, "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
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
