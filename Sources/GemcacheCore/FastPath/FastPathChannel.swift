import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// Hummingbird's HTTP/1.1 child channel with the fast path in front of it: ``FastPathHandler`` first
/// in the pipeline (raw bytes), then Hummingbird's own handlers as `HTTP1Channel` sets them up,
/// ``FastPathResponseCounter`` behind NIO's response encoder and ``FastPathRequestObserver`` behind
/// its request decoder.
///
/// Why inside Hummingbird's server rather than a second NIO server: one port, one listener and one
/// graceful shutdown, and every request the fast path does not answer reaches the unchanged
/// Hummingbird pipeline on the same connection.
struct FastPathChannel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let http1: HTTP1Channel
    let fastPath: FastPath

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            let handler = FastPathHandler(fastPath: fastPath)
            try channel.pipeline.syncOperations.addHandler(handler)
            // HTTP1Channel configures the pipeline synchronously (the future is already complete).
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
    /// An HTTP/1.1 server whose hits of byte-identical repeats are answered by `fastPath`.
    static func http1(fastPath: FastPath) -> HTTPServerBuilder {
        .init { responder in FastPathChannel(http1: HTTP1Channel(responder: responder), fastPath: fastPath) }
    }
}
