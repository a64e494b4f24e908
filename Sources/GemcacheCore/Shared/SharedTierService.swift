import AsyncAlgorithms
public import GemcacheStore
public import ServiceLifecycle

/// Keeps the shared tier going while the proxy runs: runs its connection pool, connects (creating the
/// tables) and, while degraded, tries again every `interval`; while healthy, adds the counters every
/// `interval` and sweeps expired rows every `sweepInterval`. On shutdown it hands over this
/// instance's last counts before closing the pool.
public struct SharedTierService: Service {
    let shared: SharedTier
    let store: CacheStore
    let interval: Duration
    let sweepInterval: Duration

    public init(shared: SharedTier, store: CacheStore, interval: Duration = .seconds(1), sweepInterval: Duration = .seconds(60)) {
        self.shared = shared
        self.store = store
        self.interval = interval
        self.sweepInterval = sweepInterval
    }

    public func run() async throws {
        // Detached: the pool must outlive this service's graceful shutdown until the last counts are in.
        let pool = Task.detached { [shared] in await shared.run() }
        var sinceSweep = Duration.zero
        if await shared.connect() { await shared.sweepExpired() }
        for await _ in AsyncTimerSequence(interval: interval, clock: .continuous).cancelOnGracefulShutdown() {
            if !shared.status.healthy {
                guard await shared.connect() else { continue }
            }
            await shared.pushCounters()
            sinceSweep += interval
            if sinceSweep >= sweepInterval {
                sinceSweep = .zero
                await shared.sweepExpired()
            }
        }
        shared.enqueueCounters(await store.flushCounters())
        await shared.pushCounters()
        pool.cancel()
        await pool.value
    }
}
