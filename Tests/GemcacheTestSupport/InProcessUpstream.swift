public import AsyncHTTPClient
import Foundation
public import GemcacheCore
public import GeminiMock
import HTTPTypes
public import Hummingbird
public import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization

/// An upstream answered in process by a Hummingbird router (the mock Gemini API's by default): the
/// proxy's ``UpstreamClient`` hands it each request instead of opening a connection. Request bodies are
/// read whole; answers stream as the router writes them.
public final class InProcessUpstream: UpstreamTransport {
    /// The upstream URL the proxy is configured with: any host will do, no connection is made.
    public static let url = "http://upstream.invalid"

    private let responder: RouterResponder<BasicRequestContext>
    private let reachable = Mutex(true)

    /// Answers from `router`.
    public init(router: Router<BasicRequestContext>) {
        responder = router.buildResponder()
    }

    /// Answers as the mock Gemini API does, counting requests in `recorder`.
    public convenience init(mock: MockUpstreamConfiguration = .init(), recorder: MockUpstreamRecorder) {
        self.init(router: buildMockRouter(configuration: mock, recorder: recorder))
    }

    /// Answers every request with `respond` (a scripted upstream, as ``withScriptedUpstream(_:_:)`` runs on a socket).
    public convenience init(respond: @escaping @Sendable (Request) async throws -> Response) {
        let router = Router()
        router.add(middleware: ScriptedResponder(respond: respond))
        self.init(router: router)
    }

    /// While false, every request fails as one to a closed port does (connection refused).
    public var isReachable: Bool {
        get { reachable.withLock { $0 } }
        set { reachable.withLock { $0 = newValue } }
    }

    public func execute(_ request: HTTPClientRequest, deadline: NIODeadline) async throws -> HTTPClientResponse {
        guard isReachable else { throw IOError(errnoCode: ECONNREFUSED, reason: "connect") }
        var fields = HTTPFields()
        for header in request.headers {
            if let name = HTTPField.Name(header.name) { fields.append(HTTPField(name: name, value: header.value)) }
        }
        var body = ByteBuffer()
        if let requestBody = request.body {
            for try await part in requestBody { body.writeImmutableBuffer(part) }
            fields[.contentLength] = String(body.readableBytes)
        }
        let head = HTTPRequest(
            method: HTTPRequest.Method(request.method.rawValue) ?? .get,
            scheme: "http",
            authority: "upstream",
            path: Self.pathAndQuery(of: request.url),
            headerFields: fields
        )
        let context = BasicRequestContext(source: .init(channel: NIOAsyncTestingChannel(), logger: quietLogger))
        let response = try await responder.respond(to: Request(head: head, body: RequestBody(buffer: body)), context: context)
        var headers = HTTPHeaders()
        for field in response.headers { headers.add(name: field.name.rawName, value: field.value) }
        return HTTPClientResponse(
            status: HTTPResponseStatus(statusCode: response.status.code),
            headers: headers,
            body: .stream(Self.bytes(of: response.body))
        )
    }

    /// `/path?query` of an absolute URL.
    private static func pathAndQuery(of url: String) -> String {
        guard let scheme = url.range(of: "://"), let slash = url[scheme.upperBound...].firstIndex(of: "/") else { return "/" }
        return String(url[slash...])
    }

    /// The body as the router writes it. The writer runs in its own task, as a server connection's would,
    /// and is cancelled when the reader goes away (the mock then counts the stream as cut).
    private static func bytes(of body: ResponseBody) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let writer = Task {
            do {
                try await body.write(StreamWriter(continuation: continuation))
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in writer.cancel() }
        return stream
    }

    private struct StreamWriter: ResponseBodyWriter {
        let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation

        func write(_ buffer: ByteBuffer) async throws {
            if case .terminated = continuation.yield(buffer) { throw CancellationError() }
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
            continuation.finish()
        }
    }
}
