public import AsyncHTTPClient
import Foundation
public import GemcacheCore
import GemcacheStore
public import GeminiMock
import HummingbirdTesting
public import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// A fresh directory under the system temp folder, removed by ``remove()``.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init() {
        path = NSTemporaryDirectory() + "gemcache-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Every byte of every file below the directory, concatenated (for scanning for secrets).
    public func allBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let file = enumerator?.nextObject() as? String {
            if let data = FileManager.default.contents(atPath: path + "/" + file) { bytes += data }
        }
        return bytes
    }
}

/// Runs `body` with a temporary directory that is removed afterwards.
public func withTemporaryDirectory<R>(_ body: (TemporaryDirectory) async throws -> R) async rethrows -> R {
    let directory = TemporaryDirectory()
    defer { directory.remove() }
    return try await body(directory)
}

extension ProxyConfiguration {
    /// Settings for a test: a free port on loopback, the given upstream and store, a small map.
    public static func testing(upstreamURL: String, dataDirectory: String) -> ProxyConfiguration {
        var configuration = ProxyConfiguration()
        configuration.listen.port = 0
        configuration.upstream.url = upstreamURL
        configuration.upstream.timeout = .seconds(20)
        configuration.upstream.connectTimeout = .seconds(1)
        configuration.store.path = dataDirectory + "/store"
        configuration.store.maxSize = 64 << 20
        return configuration
    }
}

/// A logger that drops everything (tests must not bootstrap the logging system).
public let quietLogger = Logger(label: "gemcache.test", factory: { _ in SwiftLogNoOpLogHandler() })

/// Runs the proxy in-process on a free loopback port for the duration of `body`, then shuts it down
/// gracefully (the store is closed when this returns).
public func withProxy<R: Sendable>(
    _ configuration: ProxyConfiguration,
    environment: [String: String] = [:],
    logger: Logger = quietLogger,
    _ body: @Sendable (_ port: Int) async throws -> R
) async throws -> R {
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let app = try await buildApplication(configuration: configuration, environment: environment, logger: logger) { port in
        portContinuation.yield(port)
    }
    let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
    return try await withThrowingTaskGroup(of: R?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        let result: R
        do {
            result = try await body(port)
        } catch {
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return result
    }
}

/// Runs the mock Gemini API on a free loopback port for the duration of `body`.
public func withMockUpstream<R: Sendable>(
    _ configuration: MockUpstreamConfiguration = .init(),
    _ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder) async throws -> R
) async throws -> R {
    let recorder = MockUpstreamRecorder()
    let app = buildMockUpstream(configuration: configuration, recorder: recorder)
    let result = ResultBox<R>()
    try await app.test(.live) { client in
        let port = try requirePort(client.port)
        result.value = try await body(port, recorder)
    }
    return result.value!
}

private func requirePort(_ port: Int?) throws -> Int {
    guard let port else { throw CancellationError() }
    return port
}

private final class ResultBox<R>: @unchecked Sendable {
    var value: R?
}

/// An answer as a test sees it.
public struct TestResponse: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let body: String

    public init(status: Int, headers: [String: String], body: String) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A header by case-insensitive name.
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// The tests' client: enough connections for concurrency tests (the shared client allows 8 per host).
private let testClient: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
    configuration.connectionPool.retryConnectionEstablishment = false
    configuration.timeout = .init(connect: .seconds(1))
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()

/// A request as the tests send it: `headers` as given, and a body as `application/json`.
public func testRequest(_ method: String = "POST", url: String, body: String?, headers: [String: String]) -> HTTPClientRequest {
    var request = HTTPClientRequest(url: url)
    request.method = .init(rawValue: method)
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body {
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
    }
    return request
}

/// Sends one request to 127.0.0.1:`port` with AsyncHTTPClient.
public func send(
    _ method: String = "POST",
    port: Int,
    path: String,
    body: String? = nil,
    headers: [String: String] = [:]
) async throws -> TestResponse {
    let request = testRequest(method, url: "http://127.0.0.1:\(port)\(path)", body: body, headers: headers)
    let response = try await testClient.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 64 << 20)
    var fields: [String: String] = [:]
    for header in response.headers { fields[header.name.lowercased()] = header.value }
    return TestResponse(status: Int(response.status.code), headers: fields, body: String(buffer: bytes))
}

/// The proxy's `/_gemcache/stats` document once `ready` holds of it, or the last one read after about
/// 5 s: fast-path hits reach the ledger in batches (FastPathHandler.reportDelay), so counts lag a moment.
public func statsDocument(port: Int, until ready: ([String: Any]) -> Bool = { _ in true }) async throws -> [String: Any] {
    var document: [String: Any] = [:]
    for _ in 0..<100 {
        let response = try await send("GET", port: port, path: "/_gemcache/stats")
        document = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any] ?? [:]
        if ready(document) { break }
        // Real time is the subject: the fast path reports hits to the ledger after a real delay.
        try await Task.sleep(for: .milliseconds(50))
    }
    return document
}

/// A generateContent body asking `text`.
public func generateBody(_ text: String) -> String {
    let escaped = String(data: try! JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed]), encoding: .utf8)!.dropFirst()
        .dropLast()
    return #"{"contents":[{"role":"user","parts":[{"text":\#(escaped)}]}]}"#
}

/// A distinctive test key (never a real one).
public let testKey = "test-key-7f3a9c"

/// Made-up keys of the two forms Google issues: the classic `AIza…` (39 characters) and the newer
/// `AQ.…`, longer, with `.`, `-` and `_` (issue 16).
/// Both are put together at run time, so that no string shaped like a real key is committed (secret
/// scanners flag `AIza` followed by 35 key characters).
public let classicFormKey = ["AI", "za"].joined() + "SyD7fake-Key_0123456789abcdefGHIJKL"
public let newerFormKey = ["AQ", "."].joined() + "Ab8RN6LmJx3kP-9qTzV0yW_c4HdEfGh.IjKl7MnOpQrStUvWxYz0123456789-_AbCdEfGhIjKlMnOpQrSt"

/// The usual end-to-end stack: the mock upstream and, in front of it, the proxy with a fresh store in a
/// temporary directory, both on free loopback ports, for the duration of `body`.
/// - Parameters:
///   - mock: The mock upstream's settings.
///   - configure: Changes to the proxy's ``ProxyConfiguration/testing(upstreamURL:dataDirectory:)`` settings.
public func withProxyBehindMock<R: Sendable>(
    _ mock: MockUpstreamConfiguration = .init(),
    environment: [String: String] = [:],
    logger: Logger = quietLogger,
    configure: @Sendable (inout ProxyConfiguration) -> Void = { _ in },
    _ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder, _ directory: TemporaryDirectory) async throws -> R
) async throws -> R {
    try await withTemporaryDirectory { directory in
        try await withMockUpstream(mock) { upstreamPort, recorder in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: directory.path)
            configure(&configuration)
            return try await withProxy(configuration, environment: environment, logger: logger) { port in
                try await body(port, recorder, directory)
            }
        }
    }
}
