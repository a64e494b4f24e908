import NIOCore
import NIOPosix

/// Where the keying of a large request body runs: off the event loops, a few bodies at a time.
///
/// The `gemcache` binary makes NIO's event loops Swift concurrency's global executor, so a route
/// handler runs on a thread that also serves that loop's other connections, fast-path hits included.
/// Keying costs time linear in the body, yet a body of megabytes still holds a thread for tens to
/// hundreds of milliseconds: on the loops, a few such requests at once would stall every connection.
/// So bodies above ``inlineLimit`` are keyed on a pool of half the cores, where heavy requests wait
/// for each other instead of taking every core; smaller bodies, the common case, are keyed where
/// they are, since the hop would cost more than the work.
enum KeyingPool {
    /// Bodies up to this many bytes are keyed inline (well under a millisecond of work).
    static let inlineLimit = 64 << 10

    /// How many large bodies are keyed at once: half the cores, at least one.
    static let threads = max(1, System.coreCount / 2)

    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        return pool
    }()

    /// The result of `work`, which keys a body of `bodySize` bytes: run inline up to ``inlineLimit``,
    /// on the pool above it.
    static func run<Value, Failure: Error>(
        bodySize: Int,
        _ work: @escaping @Sendable () throws(Failure) -> sending Value
    ) async throws(Failure) -> sending Value {
        guard bodySize > inlineLimit else {
            return try work()
        }
        let result: Result<Value, Failure> = await withCheckedContinuation { continuation in
            // The pool lives as long as the process, so a work item is never cancelled.
            pool.submit { _ in
                continuation.resume(returning: Result { () throws(Failure) -> Value in try work() })
            }
        }
        return try result.get()
    }
}
