import GemcacheStore
import HTTPTypes
import NIOCore
import Synchronization

/// One miss being answered: the upstream call that fills it (or the stored entry it finds after all),
/// shared by every client of the same key (the leader and coalesced waiters, SPEC §5). Each subscribes
/// and receives the answer's chunks from the first one on, as they arrive: a stream chunk by chunk, a
/// whole answer as one chunk.
///
/// It is filled by its own task (``Coalescer``), not by any client, so a client that goes away neither
/// stops the others nor (for whole answers, and streams with `cache.finish_aborted_streams`) the
/// recording. Once every client has gone and the answer is not to be finished and stored, the reading
/// stops at once (``stopped()``), and nobody can join any more. What it holds is bounded (SPEC §8):
/// - the stream is kept whole, for storing and for clients that join late, only up to `limit` bytes
///   (`cache.max_entry_size`); past that it is no longer recorded: chunks every subscriber has received
///   are released, and ``subscribe()`` refuses new clients, whose beginning is gone;
/// - ``append(_:)`` waits while every subscriber is more than ``window`` bytes behind, so the clients set
///   the pace instead of the proxy buffering the stream for them;
/// - past the limit, a subscriber more than ``maxLag`` bytes behind the fastest one is cut off (its stream
///   fails), so that a client that stops reading neither holds back the others sharing the stream nor
///   keeps its chunks.
final class Flight: Sendable {
    /// How the answer starts.
    enum Start: Sendable {
        /// The upstream answered with this status and these replayable headers; the body follows as chunks.
        case upstream(status: Int, headers: [(name: String, value: String)])
        /// A fresh stored entry answers after all: it landed while the request waited, in this instance or
        /// (`inCluster`) in another that held the shared tier's claim on the key.
        case stored(CacheEntry, inCluster: Bool)
    }

    /// How the flight ended, once its chunks are all out.
    struct Ending: Sendable {
        var failure: ProxyError?
        var usage = TokenUsage.zero
        /// Whether the answer was committed to the store.
        var stored = false
    }

    /// How far the reading task may run ahead of the fastest subscriber.
    static let window = 1 << 20
    /// How far a subscriber may fall behind the fastest one once the stream is no longer kept whole.
    static let maxLag = 4 << 20

    private struct Subscriber {
        /// The index (from the stream's start) of the next chunk to receive.
        var position = 0
        var received = 0
        var waiting: CheckedContinuation<ByteBuffer?, any Error>?
    }

    private struct State {
        var start: Start?
        var startWaiters: [CheckedContinuation<Start, any Error>] = []
        /// The chunks from index `released` on.
        var chunks: [ByteBuffer] = []
        var released = 0
        var bytes = 0
        /// Set once `bytes` passed the limit: the stream is relayed, no longer recorded.
        var overflowed = false
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriber = 0
        var everSubscribed = false
        /// The reading task, waiting for a subscriber to catch up.
        var reader: CheckedContinuation<Void, Never>?
        /// Set once the flight ended.
        var ending: Ending?
        /// Set once every client has gone and the stream is not to be finished: the reading stops and
        /// nobody may join any more.
        var stopped = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []

        /// Whether every subscriber (there is one) is more than a window behind.
        var readerMustWait: Bool {
            !subscribers.isEmpty && subscribers.values.allSatisfy { bytes - $0.received > Flight.window }
        }

        /// The waiting reading task, taken, once a subscriber has caught up (looked at only while it waits).
        mutating func takeReaderIfCaughtUp() -> CheckedContinuation<Void, Never>? {
            guard reader != nil, !readerMustWait else { return nil }
            defer { reader = nil }
            return reader
        }

        /// Stops the reading once every client has gone, unless the stream is to be finished and stored
        /// (`finishesAbandoned`, while it is still recorded whole).
        /// - Returns: The tasks waiting for the stop, to resume.
        mutating func stopIfAbandoned(finishesAbandoned: Bool) -> [CheckedContinuation<Void, Never>] {
            guard !stopped, everSubscribed, subscribers.isEmpty, !(finishesAbandoned && !overflowed) else { return [] }
            stopped = true
            defer { stopWaiters = [] }
            return stopWaiters
        }

        /// Cuts off the subscribers more than ``maxLag`` behind the fastest, then drops the chunks every
        /// remaining subscriber has received.
        mutating func releaseReceived() {
            let fastest = subscribers.values.lazy.map(\.received).max() ?? 0
            subscribers = subscribers.filter { fastest - $0.value.received <= Flight.maxLag }
            let end = released + chunks.count
            let lowest = subscribers.values.lazy.map(\.position).min() ?? end
            chunks.removeFirst(lowest - released)
            released = lowest
        }
    }

    private let limit: Int
    /// Whether a stream every client has left is read on to be stored (`cache.finish_aborted_streams`).
    private let finishesAbandoned: Bool
    private let state = Mutex(State())

    /// A flight that keeps at most `limit` bytes, and its first subscriber (the client that leads it).
    static func started(limit: Int, finishingAbandoned: Bool) -> (Flight, Subscription) {
        let flight = Flight(limit: limit, finishesAbandoned: finishingAbandoned)
        // A new flight is neither past its limit nor stopped: its first client always joins.
        return (flight, flight.subscribe()!)
    }

    private init(limit: Int, finishesAbandoned: Bool) {
        self.limit = limit
        self.finishesAbandoned = finishesAbandoned
    }

    /// Waits for the answer to start.
    /// - Throws: The upstream failure, as a ``ProxyError``, if it failed before answering.
    func start() async throws -> Start {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Start, ProxyError>? = state.withLock { state in
                if let start = state.start { return .success(start) }
                if let ending = state.ending { return .failure(ending.failure ?? .upstreamStreamEndedEarly) }
                state.startWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// The stream's chunks from the first one on, or nil when its beginning is no longer kept or its
    /// reading stopped.
    func subscribe() -> Subscription? {
        let id: Int? = state.withLock { state in
            if state.overflowed || state.stopped { return nil }
            defer { state.nextSubscriber += 1 }
            state.subscribers[state.nextSubscriber] = Subscriber()
            state.everSubscribed = true
            return state.nextSubscriber
        }
        return id.map { Subscription(Token(recording: self, id: $0)) }
    }

    /// The whole stream as read so far, or nil once it grew past the limit.
    var recorded: [UInt8]? {
        state.withLock { state in
            state.overflowed ? nil : state.chunks.reduce(into: [UInt8]()) { $0.append(contentsOf: $1.readableBytesView) }
        }
    }

    /// How the flight ended; nil while it runs.
    var ending: Ending? { state.withLock { $0.ending } }

    // MARK: - The reading task's side

    /// True once the reading must stop: every client has gone, and the stream is not to be finished
    /// (`cache.finish_aborted_streams` is off, or it grew past the limit).
    var hasStopped: Bool { state.withLock { $0.stopped } }

    /// Returns once the reading must stop (at once if it must already), or when the task is cancelled.
    /// The reading task is the one waiter.
    func stopped() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let waits = state.withLock { state in
                    guard !state.stopped, !Task.isCancelled else { return false }
                    state.stopWaiters.append(continuation)
                    return true
                }
                if !waits { continuation.resume() }
            }
        } onCancel: {
            let waiters = state.withLock { state in
                defer { state.stopWaiters = [] }
                return state.stopWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    func begin(_ start: Start) {
        let waiters = state.withLock { state in
            state.start = start
            defer { state.startWaiters = [] }
            return state.startWaiters
        }
        for waiter in waiters { waiter.resume(returning: start) }
    }

    /// Passes `chunk` to every subscriber, then waits (unless the task is cancelled) until one is at most
    /// ``window`` bytes behind.
    func append(_ chunk: ByteBuffer) async {
        let (waiting, stops) = state.withLock { state in
            state.chunks.append(chunk)
            state.bytes += chunk.readableBytes
            if state.bytes > limit { state.overflowed = true }
            var waiting: [CheckedContinuation<ByteBuffer?, any Error>] = []
            for (id, subscriber) in state.subscribers {
                guard let continuation = subscriber.waiting else { continue }
                state.subscribers[id] = Subscriber(position: subscriber.position + 1, received: subscriber.received + chunk.readableBytes)
                waiting.append(continuation)
            }
            if state.overflowed { state.releaseReceived() }
            return (waiting, state.stopIfAbandoned(finishesAbandoned: finishesAbandoned))
        }
        for continuation in waiting { continuation.resume(returning: chunk) }
        for stop in stops { stop.resume() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let waits = state.withLock { state in
                    guard state.readerMustWait, !Task.isCancelled else { return false }
                    state.reader = continuation
                    return true
                }
                if !waits { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.reader = nil }
                return state.reader
            }?.resume()
        }
    }

    /// Ends the flight for every subscriber once it has received what was read; a failure before the
    /// start reaches the start waiters instead.
    func end(_ ending: Ending) {
        let failure = ending.failure
        let (startWaiters, waiting) = state.withLock { state in
            state.ending = ending
            var waiting: [CheckedContinuation<ByteBuffer?, any Error>] = []
            for (id, subscriber) in state.subscribers {
                guard let continuation = subscriber.waiting else { continue }
                state.subscribers[id]?.waiting = nil
                waiting.append(continuation)
            }
            defer { state.startWaiters = [] }
            return (state.startWaiters, waiting)
        }
        for waiter in startWaiters { waiter.resume(throwing: failure ?? ProxyError.upstreamStreamEndedEarly) }
        for continuation in waiting {
            if let failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: nil) }
        }
    }

    // MARK: - The subscribers' side

    /// The next chunk for subscriber `id`; nil at the end of the stream.
    fileprivate func next(_ id: Int) async throws -> ByteBuffer? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Next {
                    case chunk(ByteBuffer)
                    case end(ProxyError?)
                    case cancelled, wait
                }
                let (next, reader): (Next, CheckedContinuation<Void, Never>?) = state.withLock { state in
                    // A subscriber still reading that is gone was cut off.
                    guard var subscriber = state.subscribers[id] else { return (.end(.fellBehindSharedStream), nil) }
                    if subscriber.position < state.released + state.chunks.count {
                        let chunk = state.chunks[subscriber.position - state.released]
                        subscriber.position += 1
                        subscriber.received += chunk.readableBytes
                        state.subscribers[id] = subscriber
                        return (.chunk(chunk), state.takeReaderIfCaughtUp())
                    }
                    if let ending = state.ending { return (.end(ending.failure), nil) }
                    // Checked under the lock, so that a cancellation either sees the waiter or is seen here.
                    if Task.isCancelled { return (.cancelled, nil) }
                    state.subscribers[id]?.waiting = continuation
                    return (.wait, nil)
                }
                reader?.resume()
                switch next {
                case .chunk(let chunk): continuation.resume(returning: chunk)
                case .end(let failure?): continuation.resume(throwing: failure)
                case .end(nil): continuation.resume(returning: nil)
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.subscribers[id]?.waiting = nil }
                return state.subscribers[id]?.waiting
            }?.resume(throwing: CancellationError())
        }
    }

    /// Removes subscriber `id`, which may let the reading task go on, or stop; a `next()` it is waiting
    /// in ends with `CancellationError`.
    fileprivate func leave(_ id: Int) {
        let (waiting, reader, stops) = state.withLock { state in
            let waiting = state.subscribers.removeValue(forKey: id)?.waiting
            return (waiting, state.takeReaderIfCaughtUp(), state.stopIfAbandoned(finishesAbandoned: finishesAbandoned))
        }
        waiting?.resume(throwing: CancellationError())
        reader?.resume()
        for stop in stops { stop.resume() }
    }

    /// One client's view of the stream; it leaves the recording when released, or when its client
    /// goes away (``leaving``).
    struct Subscription: AsyncSequence, Sendable {
        fileprivate let token: Token

        fileprivate init(_ token: Token) {
            self.token = token
        }

        func makeAsyncIterator() -> Iterator { Iterator(token: token) }

        /// Leaves the recording at once (the client went away), as the subscription's release would:
        /// a `next()` waiting ends with `CancellationError`. Holds the subscription weakly, so a callback
        /// that outlives the stream keeps nothing alive.
        var leaving: @Sendable () -> Void {
            { [weak token] in token.map { $0.recording.leave($0.id) } }
        }

        struct Iterator: AsyncIteratorProtocol {
            fileprivate let token: Token

            mutating func next() async throws -> ByteBuffer? {
                try await token.recording.next(token.id)
            }
        }
    }

    /// Holds a subscriber's place in the recording for as long as its ``Subscription`` lives.
    fileprivate final class Token: Sendable {
        let recording: Flight
        let id: Int

        init(recording: Flight, id: Int) {
            self.recording = recording
            self.id = id
        }

        deinit { recording.leave(id) }
    }
}
