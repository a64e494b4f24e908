import GemcacheKey
import GemcacheStore
import Logging

/// A place where answers are kept: the store on this machine, and the shared tier when `store.shared`
/// names one.
protocol CacheTier: Sendable {
    /// The entry under `key` (a tier may leave out expired ones); nil when there is none.
    func lookup(_ key: CacheKey) async throws -> CacheEntry?
    /// Keeps `entry` under `key`, with the raw request key that led to it when the tier answers raw
    /// repeats (the store's fast path). Returns whether it was kept.
    func keep(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]?) async -> Bool
}

extension CacheStore: CacheTier {
    func keep(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]?) async -> Bool {
        await store(entry, for: key, alias: alias)
    }
}

extension SharedTier: CacheTier {
    /// The shared tier keeps no aliases: the fast path reads the store of its own instance.
    func keep(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]?) async -> Bool {
        await store(entry, for: key)
    }
}

/// The cache's tiers, nearest first: a lookup asks each in turn, and an entry found in a farther one
/// is copied into the nearer ones for the next time.
struct CacheTiers: Sendable {
    let tiers: [any CacheTier]
    let now: @Sendable () -> Int64

    /// The first fresh entry under `key` (no older than `maxAge` seconds when given), asking the first
    /// `depth` tiers (all by default).
    func fresh(_ key: CacheKey, maxAge: Int64?, depth: Int? = nil, logger: Logger) async -> CacheEntry? {
        for (index, tier) in tiers.prefix(depth ?? tiers.count).enumerated() {
            let entry: CacheEntry?
            do {
                entry = try await tier.lookup(key)
            } catch {
                logger.error("store lookup failed", metadata: ["store.error": "\(error)"])
                continue
            }
            guard let entry, isFresh(entry, maxAge: maxAge) else { continue }
            if index > 0 { keepNearer(entry, for: key, than: index) }
            return entry
        }
        return nil
    }

    /// Not expired, and no older than `maxAge` seconds when given.
    func isFresh(_ entry: CacheEntry, maxAge: Int64?) -> Bool {
        let now = now()
        return now < entry.expiresAt && maxAge.map { now - entry.storedAt <= $0 * 1000 } != false
    }

    /// Copies an entry found in tier `index` into the tiers before it, without holding up the answer.
    func keepNearer(_ entry: CacheEntry, for key: CacheKey, than index: Int) {
        let nearer = tiers.prefix(index)
        Task {
            for tier in nearer { _ = await tier.keep(entry, for: key, alias: nil) }
        }
    }

    /// Keeps `entry` in every tier. Returns whether the nearest kept it.
    func keep(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]?) async -> Bool {
        var kept = false
        for (index, tier) in tiers.enumerated() {
            let done = await tier.keep(entry, for: key, alias: alias)
            if index == 0 { kept = done }
        }
        return kept
    }
}
