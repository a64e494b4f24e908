import HTTPTypes
import NIOCore
import Synchronization

/// One upstream stream being read: every client of the same stream (the leader and coalesced waiters)
/// subscribes and receives the chunks already read, then the rest as they arrive (SPEC §5).
///
/// The upstream is read by its own task, not by any client, so a client that goes away neither stops
/// the others nor (with `cache.finish_aborted_streams`) the recording.
final class StreamRecording: Sendable {
    /// Status and replayable headers of the upstream answer.
    struct Head: Sendable {
        let status: Int
        let headers: [(name: String, value: String)]
    }

    private struct State {
        var head: Head?
        var headWaiters: [CheckedContinuation<Head, any Error>] = []
        var chunks: [ByteBuffer] = []
        var subscribers: [Int: AsyncThrowingStream<ByteBuffer, any Error>.Continuation] = [:]
        var nextSubscriber = 0
        var everSubscribed = false
        var failure: ProxyError?
        var ended = false
        var usage = TokenUsage.zero
    }

    private let state = Mutex(State())

    /// Waits for the upstream's status and headers.
    /// - Throws: The upstream failure, as a ``ProxyError``, if it failed before answering.
    func head() async throws -> Head {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Head, ProxyError>? = state.withLock { state in
                if let head = state.head { return .success(head) }
                if let failure = state.failure { return .failure(failure) }
                state.headWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// The stream's chunks from the first one on; ends when the upstream stream ends.
    func subscribe() -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let finished: ProxyError?? = state.withLock { state in
            // Yield under the lock so that replayed chunks cannot interleave with live ones.
            for chunk in state.chunks { continuation.yield(chunk) }
            if state.ended { return .some(state.failure) }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.everSubscribed = true
            state.subscribers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
            }
            return nil
        }
        if let finished {
            continuation.finish(throwing: finished)
        }
        return stream
    }

    /// True once every client that subscribed has gone away.
    var isAbandoned: Bool { state.withLock { $0.everSubscribed && $0.subscribers.isEmpty } }

    /// The token usage of the finished stream (its last chunk's).
    var usage: TokenUsage { state.withLock { $0.usage } }

    // MARK: - The reading task's side

    func begin(_ head: Head) {
        let waiters = state.withLock { state in
            state.head = head
            defer { state.headWaiters = [] }
            return state.headWaiters
        }
        for waiter in waiters { waiter.resume(returning: head) }
    }

    func append(_ chunk: ByteBuffer) {
        state.withLock { state in
            state.chunks.append(chunk)
            for subscriber in state.subscribers.values { subscriber.yield(chunk) }
        }
    }

    /// Ends the stream for every subscriber; a failure before the head reaches the head waiters instead.
    func end(failure: ProxyError? = nil, usage: TokenUsage = .zero) {
        let (waiters, subscribers) = state.withLock { state in
            state.ended = true
            state.failure = failure
            state.usage = usage
            defer {
                state.headWaiters = []
                state.subscribers = [:]
            }
            return (state.headWaiters, Array(state.subscribers.values))
        }
        for waiter in waiters { waiter.resume(throwing: failure ?? ProxyError(.badGateway, "UNAVAILABLE", "The upstream stream ended without an answer.")) }
        for subscriber in subscribers { subscriber.finish(throwing: failure) }
    }
}
