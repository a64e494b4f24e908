import Foundation
public import Hummingbird
import HummingbirdTesting
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on 127.0.0.1 that no request may ever reach: it counts the connections it accepts
/// (and closes them), so a test can show that the proxy never connected anywhere but its upstream.
public final class CanaryListener: Sendable {
    private let socket: Int32
    public let port: Int
    private let accepted = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    public init() throws {
        (socket, port) = try listenOnLoopback()
        let thread = Thread { [self] in acceptUntilStopped() }
        thread.start()
    }

    /// Connections accepted so far.
    public var connections: Int { accepted.load(ordering: .acquiring) }

    /// Stops accepting and closes the socket.
    public func stop() {
        stopped.store(true, ordering: .releasing)
    }

    private func acceptUntilStopped() {
        defer { close(socket) }
        while !stopped.load(ordering: .acquiring) {
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let client = accept(socket, nil, nil)
            if client >= 0 {
                accepted.add(1, ordering: .releasing)
                close(client)
            }
        }
    }
}

/// A TCP socket listening on a free port of 127.0.0.1, and that port.
public func listenOnLoopback() throws -> (socket: Int32, port: Int) {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(socket, address, length) == 0 && listen(socket, 64) == 0 && getsockname(socket, address, &length) == 0
        }
    }
    guard bound else {
        close(socket)
        throw POSIXError(.EADDRNOTAVAIL)
    }
    return (socket, Int(UInt16(bigEndian: address.sin_port)))
}

/// Runs `body` with a canary listener that is stopped afterwards.
public func withCanary<R>(_ body: (CanaryListener) async throws -> R) async throws -> R {
    let canary = try CanaryListener()
    defer { canary.stop() }
    return try await body(canary)
}

/// An upstream on a free loopback port that answers every request with `respond`: for hostile or
/// scripted upstreams (redirects, errors on cue) that the mock does not play.
public func withScriptedUpstream<R: Sendable>(
    _ respond: @escaping @Sendable (Request) async throws -> Response,
    _ body: @Sendable (_ port: Int) async throws -> R
) async throws -> R {
    let router = Router()
    router.add(middleware: ScriptedResponder(respond: respond))
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: quietLogger)
    let result = Mutex<R?>(nil)
    try await app.test(.live) { client in
        guard let port = client.port else { throw CancellationError() }
        let value = try await body(port)
        result.withLock { $0 = value }
    }
    return result.withLock { $0! }
}

struct ScriptedResponder: RouterMiddleware {
    let respond: @Sendable (Request) async throws -> Response

    func handle(
        _ request: Request,
        context: BasicRequestContext,
        next: (Request, BasicRequestContext) async throws -> Response
    ) async throws -> Response {
        try await respond(request)
    }
}
