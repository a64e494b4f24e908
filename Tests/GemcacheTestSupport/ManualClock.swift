public import GemcacheCore
public import GemcacheStore
import Synchronization

/// Unix time in milliseconds that stands still until a test advances it: pass ``now`` to
/// `buildApplication(clock:)` and test expiry without waiting.
public final class ManualClock: Sendable {
    private let milliseconds: Mutex<Int64>

    /// Starts at `milliseconds`, the wall clock's reading by default.
    public init(milliseconds: Int64 = CacheStore.wallClock()) {
        self.milliseconds = Mutex(milliseconds)
    }

    /// The current reading, as the proxy reads it.
    public var now: @Sendable () -> Int64 { { self.milliseconds.withLock { $0 } } }

    /// Moves time forward by `duration`.
    public func advance(by duration: Duration) {
        let (seconds, attoseconds) = duration.components
        milliseconds.withLock { $0 += seconds * 1000 + attoseconds / 1_000_000_000_000_000 }
    }
}
