public import Hummingbird
import HummingbirdWebSocket
import Logging

/// Settings of the fake Gemini API.
public struct MockUpstreamConfiguration: Sendable {
    /// Address to bind.
    public var host: String
    /// Port to bind; 0 picks any free port (read it from `onServerRunning` or `client.port`).
    public var port: Int
    /// Delay added before every answer.
    public var latency: Duration
    /// Pause between the chunks of a stream, so a client can observe them arriving separately.
    public var chunkDelay: Duration
    /// nil: any non-empty key is accepted; otherwise only these keys.
    public var validKeys: Set<String>?

    /// Creates a configuration; every value has a default.
    public init(
        host: String = "127.0.0.1",
        port: Int = 0,
        latency: Duration = .zero,
        chunkDelay: Duration = .milliseconds(20),
        validKeys: Set<String>? = nil
    ) {
        self.host = host
        self.port = port
        self.latency = latency
        self.chunkDelay = chunkDelay
        self.validKeys = validKeys
    }
}

/// Builds the mock Gemini server (native `v1`/`v1beta` routes, the OpenAI-compatible surface and
/// file uploads, the Live API's WebSocket: ``MockLive``). Also serves `GET /_mock/stats` → `{"requests": N, "paths": {path: count}}`.
///
/// - Parameters:
///   - configuration: address, latency and accepted keys.
///   - recorder: counts the requests that reach the mock.
///   - onServerRunning: called with the bound port once the server listens.
public func buildMockUpstream(
    configuration: MockUpstreamConfiguration,
    recorder: MockUpstreamRecorder = .init(),
    onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
) -> some ApplicationProtocol {
    let logger = Logger(label: "GeminiMock")
    return Application(
        router: buildMockRouter(configuration: configuration, recorder: recorder),
        server: .http1WebSocketUpgrade(
            webSocketRouter: MockLive.router(configuration: configuration, recorder: recorder),
            configuration: .init(ws: .init(maxFrameSize: 16 << 20))
        ),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "GeminiMock"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? configuration.port
            logger.info("mock upstream listening on \(configuration.host):\(port)")
            await onServerRunning(port)
        },
        logger: logger
    )
}

/// The mock's HTTP routes (everything but the Live API's WebSocket), for answering without a server.
///
/// - Parameters:
///   - configuration: latency, chunk delay and accepted keys (the address is not used).
///   - recorder: counts the requests that reach the mock.
public func buildMockRouter(configuration: MockUpstreamConfiguration, recorder: MockUpstreamRecorder) -> Router<BasicRequestContext> {
    let router = Router()
    router.add(middleware: GoogleEnvelopeMiddleware(recorder: recorder, latency: configuration.latency))
    MockRoutes(configuration: configuration, recorder: recorder).register(on: router)
    return router
}

/// Records every request, adds the configured latency and turns errors into Google's envelope
/// (wrapped in an array on `/v1beta/openai/*` and for JSON-array streams).
struct GoogleEnvelopeMiddleware<Context: RequestContext>: RouterMiddleware {
    let recorder: MockUpstreamRecorder
    let latency: Duration

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        guard path != MockRoutes.statsPath else { return try await next(request, context) }
        recorder.record(path: path, headers: request.headers)
        let wrapped =
            path.hasPrefix("/v1beta/openai/")
            || (path.hasSuffix(":streamGenerateContent") && !ResponseFormat(query: request.uri.query).isSSE)
        do {
            if latency > .zero { try await Task.sleep(for: latency) }
            return try await next(request, context)
        } catch let error as GoogleError {
            return error.response(wrapped: wrapped)
        } catch let error as HTTPError {
            return GoogleError(error).response(wrapped: wrapped)
        }
    }
}
