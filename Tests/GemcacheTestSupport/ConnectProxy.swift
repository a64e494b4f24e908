import Foundation
public import NIOCore
import NIOPosix
import Synchronization

/// An HTTP forward proxy on 127.0.0.1 that only tunnels (`CONNECT host:port`), as corporate egress
/// proxies do: it records every tunnel's target and `Proxy-Authorization`, answers 200 (or 407 when
/// `requiredAuthorization` is set and not given) and then copies bytes both ways.
public final class ConnectProxy: Sendable {
    /// One tunnel as the client asked for it.
    public struct Tunnel: Sendable, Equatable {
        public let target: String
        public let authorization: String?

        public init(target: String, authorization: String?) {
            self.target = target
            self.authorization = authorization
        }
    }

    public let port: Int
    private let requiredAuthorization: String?
    private let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    private let opened = Mutex<[Tunnel]>([])

    /// Every tunnel asked for so far, in order.
    public var tunnels: [Tunnel] { opened.withLock { $0 } }

    private init(requiredAuthorization: String?, server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>) {
        self.requiredAuthorization = requiredAuthorization
        self.server = server
        self.port = server.channel.localAddress?.port ?? 0
    }

    /// Runs a proxy for the duration of `body`.
    public static func run<R: Sendable>(
        requiredAuthorization: String? = nil,
        _ body: @Sendable (ConnectProxy) async throws -> R
    ) async throws -> R {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let proxy = ConnectProxy(requiredAuthorization: requiredAuthorization, server: server)
        return try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                try await server.executeThenClose { clients in
                    try await withThrowingDiscardingTaskGroup { connections in
                        for try await client in clients { connections.addTask { try? await proxy.serve(client) } }
                    }
                }
                return nil
            }
            let result = try await body(proxy)
            group.cancelAll()
            return result
        }
    }

    private func serve(_ client: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws {
        try await client.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var received = ByteBuffer()
            var headEnd: Int?
            while headEnd == nil, var chunk = try await iterator.next() {
                received.writeBuffer(&chunk)
                headEnd = received.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)).map { $0.upperBound - received.readerIndex }
            }
            guard let headEnd, let head = received.readString(length: headEnd) else { return }
            let lines = head.split(separator: "\r\n")
            let requestLine = lines.first?.split(separator: " ") ?? []
            guard requestLine.count == 3, requestLine[0] == "CONNECT", let colon = requestLine[1].lastIndex(of: ":"),
                let targetPort = Int(requestLine[1][requestLine[1].index(after: colon)...])
            else {
                try await outbound.write(ByteBuffer(string: "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"))
                return
            }
            let authorization = lines.dropFirst().first { $0.lowercased().hasPrefix("proxy-authorization:") }
                .map { $0.dropFirst("proxy-authorization:".count).trimmingCharacters(in: .whitespaces) }
            opened.withLock { $0.append(Tunnel(target: String(requestLine[1]), authorization: authorization)) }
            if let requiredAuthorization, authorization != requiredAuthorization {
                try await outbound.write(ByteBuffer(string: "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"))
                return
            }
            let upstream = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: String(requestLine[1][..<colon]), port: targetPort) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                    }
                }
            try await outbound.write(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n"))
            try await upstream.executeThenClose { upstreamInbound, upstreamOutbound in
                try await withThrowingTaskGroup(of: Void.self) { pumps in
                    pumps.addTask {
                        for try await chunk in upstreamInbound { try await outbound.write(chunk) }
                    }
                    if received.readableBytes > 0 { try await upstreamOutbound.write(received) }
                    while let chunk = try await iterator.next() { try await upstreamOutbound.write(chunk) }
                    upstreamOutbound.finish()
                    try await pumps.waitForAll()
                }
            }
        }
    }
}
