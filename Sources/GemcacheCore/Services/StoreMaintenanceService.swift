import AsyncAlgorithms
public import GemcacheStore
public import Logging
public import ServiceLifecycle

/// Keeps the store healthy while the proxy runs and closes it last: flushes counters every
/// `flushInterval` (handing them on to the shared tier, when there is one), syncs commits that skipped
/// the disk sync every `syncInterval` (`store.sync_interval` with `store.durability: deferred`; when zero,
/// only what killed deferred processes left, checked every `flushInterval`),
/// sweeps expired entries and clears stale reader slots every `sweepInterval`.
public struct StoreMaintenanceService: Service {
    let store: CacheStore
    let shared: SharedTier?
    let flushInterval: Duration
    let syncInterval: Duration
    let sweepInterval: Duration
    let logger: Logger

    public init(
        store: CacheStore,
        shared: SharedTier? = nil,
        flushInterval: Duration = .seconds(1),
        syncInterval: Duration,
        sweepInterval: Duration = .seconds(60),
        logger: Logger
    ) {
        self.store = store
        self.shared = shared
        self.flushInterval = flushInterval
        self.syncInterval = syncInterval
        self.sweepInterval = sweepInterval
        self.logger = logger
    }

    public func run() async throws {
        let tick = syncInterval > .zero ? min(flushInterval, syncInterval) : flushInterval
        var (sinceFlush, sinceSync, sinceSweep) = (Duration.zero, Duration.zero, Duration.zero)
        for await _ in AsyncTimerSequence(interval: tick, clock: .continuous).cancelOnGracefulShutdown() {
            sinceFlush += tick
            sinceSync += tick
            sinceSweep += tick
            if sinceFlush >= flushInterval {
                sinceFlush = .zero
                let flushed = await store.flushCounters()
                shared?.enqueueCounters(flushed)
            }
            if sinceSync >= syncInterval {
                sinceSync = .zero
                await store.syncDeferredWrites()
            }
            guard sinceSweep >= sweepInterval else { continue }
            sinceSweep = .zero
            do {
                let swept = try await store.sweepExpired()
                try await store.sweepAliases()
                let cleared = try store.clearStaleReaders()
                if swept > 0 || cleared > 0 {
                    logger.info("store maintenance", metadata: ["store.swept": "\(swept)", "store.readers_cleared": "\(cleared)"])
                }
            } catch {
                logger.error("store maintenance failed", metadata: ["store.error": "\(error)"])
            }
        }
        await store.close()
    }
}

/// Shuts the upstream clients down once the server has stopped.
public struct UpstreamClientService: Service {
    let client: UpstreamClient

    public init(client: UpstreamClient) {
        self.client = client
    }

    public func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
