import Foundation
public import GemcacheCore
public import GeminiMock
import HTTPTypes
import Hummingbird
import HummingbirdTesting
public import Logging
import NIOCore

/// Runs the proxy that `buildApplication` makes of `configuration` in process, in front of `upstream`,
/// on `clock`, for the duration of `body`; then shuts it down (the store is closed when this returns).
public func withInProcessProxy<R: Sendable>(
    _ configuration: ProxyConfiguration,
    upstream: InProcessUpstream,
    clock: ManualClock = ManualClock(),
    environment: [String: String] = [:],
    logger: Logger = quietLogger,
    _ body: @Sendable (InProcessProxy) async throws -> R
) async throws -> R {
    let app = try await buildApplication(
        configuration: configuration,
        environment: environment,
        logger: logger,
        upstream: upstream,
        clock: clock.now
    )
    return try await app.test(.router) { client in try await body(InProcessProxy(client: client, clock: clock)) }
}

/// The usual stack without sockets: the mock Gemini API answering in process and, in front of it, the
/// proxy with a fresh store in a temporary directory and a ``ManualClock``, for the duration of `body`.
/// - Parameters:
///   - mock: The mock upstream's settings.
///   - configure: Changes to the proxy's ``ProxyConfiguration/testing(upstreamURL:dataDirectory:)`` settings.
public func withInProcessProxyBehindMock<R: Sendable>(
    _ mock: MockUpstreamConfiguration = .init(),
    environment: [String: String] = [:],
    configure: @Sendable (inout ProxyConfiguration) -> Void = { _ in },
    _ body: @Sendable (_ proxy: InProcessProxy, _ recorder: MockUpstreamRecorder, _ directory: TemporaryDirectory) async throws -> R
) async throws -> R {
    try await withTemporaryDirectory { directory in
        let recorder = MockUpstreamRecorder()
        var configuration = ProxyConfiguration.testing(upstreamURL: InProcessUpstream.url, dataDirectory: directory.path)
        configure(&configuration)
        return try await withInProcessProxy(configuration, upstream: InProcessUpstream(mock: mock, recorder: recorder), environment: environment) {
            proxy in
            try await body(proxy, recorder, directory)
        }
    }
}

/// The proxy under test without a socket: requests go straight to its router (`app.test(.router)`,
/// so not through the fast path or the custom server), its upstream answers in process and its
/// clock moves only when the test advances it.
public struct InProcessProxy: Sendable {
    let client: any TestClientProtocol
    /// The proxy's clock.
    public let clock: ManualClock

    /// Sends one request, as ``send(_:port:path:body:headers:)`` does over a socket.
    public func send(_ method: String = "POST", path: String, body: String? = nil, headers: [String: String] = [:]) async throws -> TestResponse {
        var fields = HTTPFields()
        for (name, value) in headers {
            guard let name = HTTPField.Name(name) else { throw HTTPError(.badRequest, message: "not a header name: \(name)") }
            fields.append(HTTPField(name: name, value: value))
        }
        if body != nil { fields[.contentType] = "application/json" }
        let response = try await client.executeRequest(
            uri: path,
            method: HTTPRequest.Method(method) ?? .get,
            headers: fields,
            body: body.map { ByteBuffer(string: $0) }
        )
        var received: [String: String] = [:]
        for field in response.headers { received[field.name.canonicalName] = field.value }
        return TestResponse(status: response.status.code, headers: received, body: String(buffer: response.body))
    }

    /// The proxy's `/_gemcache/stats` document.
    public func statsDocument() async throws -> [String: Any] {
        let response = try await send("GET", path: "/_gemcache/stats")
        return try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any] ?? [:]
    }
}
