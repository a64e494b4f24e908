import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// Hummingbird's HTTP/1.1 child channel (with the Live API's WebSocket upgrade) with the fast path in
/// front of it: ``FastPathHandler`` first in the pipeline (raw bytes, after TLS when the listener has
/// it), then Hummingbird's own handlers as `HTTP1WebSocketUpgradeChannel` sets them up,
/// ``FastPathResponseCounter`` behind NIO's response encoder and ``FastPathRequestObserver`` behind
/// its request decoder.
///
/// Why inside Hummingbird's server rather than a second NIO server: one port, one listener and one
/// graceful shutdown, and every request the fast path does not answer reaches the unchanged
/// Hummingbird pipeline on the same connection.
struct FastPathChannel: ServerChildChannel {
    typealias Value = HTTP1WebSocketUpgradeChannel.Value

    let http1: HTTP1WebSocketUpgradeChannel
    let fastPath: FastPath

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            let handler = FastPathHandler(fastPath: fastPath)
            try channel.pipeline.syncOperations.addHandler(handler)
            // The HTTP/1.1 pipeline is configured synchronously (the future is already complete).
            let value = http1.setup(channel: channel, logger: logger)
            let encoder = try channel.pipeline.syncOperations.handler(type: HTTPResponseEncoder.self)
            try channel.pipeline.syncOperations.addHandler(FastPathResponseCounter(handler), position: .after(encoder))
            let decoder = try channel.pipeline.syncOperations.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try channel.pipeline.syncOperations.addHandler(FastPathRequestObserver(handler), position: .after(decoder))
            return value
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// An HTTP/1.1 server, over TLS when `tls` is set, whose hits of byte-identical repeats are
    /// answered by `fastPath` and whose Live API upgrades go to `live`.
    static func gemcache(fastPath: FastPath, live: LiveRelay, tls: TLSConfiguration?) -> HTTPServerBuilder {
        .init { responder in
            let http1 = HTTP1WebSocketUpgradeChannel(
                responder: responder,
                configuration: .init(ws: .init(maxFrameSize: LiveRelay.maxFrameSize, autoPing: .disabled))
            ) { request, _, _ in live.shouldUpgrade(request) }
            let channel = FastPathChannel(http1: http1, fastPath: fastPath)
            guard let tls else { return channel }
            return try TLSChannel(channel, tlsConfiguration: tls)
        }
    }
}
