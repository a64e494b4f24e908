import Foundation
public import GemcacheKey
import LMDBKit
public import Logging
import Synchronization

/// The persistent cache: answers by key, their expiry, the shared counters and store metadata, in one
/// LMDB environment (SPEC §9).
///
/// A lookup reads one key on the calling thread and copies the entry out inside the transaction;
/// scans and counts run on the blocking thread pool. Writes go through one lane that batches whatever
/// is queued into a single transaction (group commit), so a storm of misses pays one commit per
/// batch, not one per entry, and one disk sync per batch (`store.durability`). When the map is full, expired and
/// then the oldest entries are evicted and the batch is retried; a write that still does not fit is
/// dropped, never failing the request that produced it.
///
/// One file per job: opening (format, salt, moving aside: `CacheStore+Opening.swift`), the counters
/// (`+Counters`), the write lane (`+WriteLane`), sweeping and eviction (`+Eviction`), the time-index
/// keys (`+Encoding`), the fast path's aliases (`+Aliases`), and the command-line tools' reads and
/// writes (`+Export`, `+Purge`). Records are read and written by ``EntryRecord`` alone.
public final class CacheStore: Sendable {
    /// The on-disk format; a store of another format is never misread (it is moved aside or refused).
    public static let formatVersion: UInt32 = 1

    let environment: LMDBEnvironment
    let entries: LMDBDatabase
    let byExpiry: LMDBDatabase
    let byStored: LMDBDatabase
    let counters: LMDBDatabase
    /// Store metadata: format version, scope salt, when counting began.
    let meta: LMDBDatabase
    /// Raw request key → cache key, for the fast path (`CacheStore+Aliases.swift`).
    let aliases: LMDBDatabase
    /// The folder an unreadable store was moved to at open, if that happened.
    public let recoveredFrom: String?
    /// The salt of per-key scope tags: from the environment, else created once and kept in the store.
    public let scopeSalt: [UInt8]
    let logger: Logger
    let now: @Sendable () -> Int64
    let queue = Mutex(WriteQueue())
    let counterBuffer = Mutex(CounterBuffer())
    /// Aliases waiting for their batch's write (``recordAliasSoon(_:for:)``); nil when none is scheduled.
    let pendingAliases = Mutex<[(rawKey: [UInt8], key: [UInt8])]?>(nil)
    /// The keys whose damaged record this process has logged (each once).
    let damagedKeysLogged = Mutex(Set<CacheKey>())
    /// Called after each commit of the write lane, before its writers learn it is done (crash-image tests).
    let commitObserver = Mutex<(@Sendable () -> Void)?>(nil)

    init(
        environment: LMDBEnvironment,
        recoveredFrom: String?,
        scopeSalt: [UInt8],
        logger: Logger,
        now: @escaping @Sendable () -> Int64
    ) throws {
        self.environment = environment
        self.entries = try environment.openDatabase("entries", create: true)
        self.byExpiry = try environment.openDatabase("by_expiry", create: true)
        self.byStored = try environment.openDatabase("by_stored", create: true)
        self.counters = try environment.openDatabase("counters", create: true)
        self.meta = try environment.openDatabase("meta", create: true)
        self.aliases = try environment.openDatabase("aliases", create: true)
        self.recoveredFrom = recoveredFrom
        self.scopeSalt = scopeSalt
        self.logger = logger
        self.now = now
    }

    /// Current Unix time in milliseconds.
    public static let wallClock: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Closes the environment; call once, after the last request.
    public func close() async {
        await flushCounters()
        await syncDeferredWrites()
        environment.close()
    }

    /// Clears the reader slots of processes that ended without closing their transactions.
    /// - Returns: How many were cleared.
    public func clearStaleReaders() throws -> Int {
        try environment.checkReaders()
    }

    /// Syncs the commits that skipped the disk sync (`store.sync_interval`), if any process left some.
    public func syncDeferredWrites() async {
        do {
            try await environment.syncDeferredWrites()
        } catch {
            logger.error("store sync failed", metadata: ["store.error": "\(error)"])
        }
    }

    // MARK: - Entries

    /// The entry under `key`, expired or not (the caller decides what an expired entry may still do);
    /// nil also for a record that does not validate. A record that fails its checksum is counted as
    /// ``Counter/damaged`` and logged, once per key in each process; the answer stored on the miss
    /// replaces it.
    ///
    /// Reads on the calling thread, as the fast path does: one key's pages, found in memory but for a
    /// cold store, where the thread waits for the disk read. The fast path does not count damaged
    /// records: it leaves their requests to the slow path, whose lookup here counts them.
    public func lookup(_ key: CacheKey) throws -> CacheEntry? {
        let read = try environment.withReadTransaction { txn in
            try txn.withValue(entries, key: key.bytes) { EntryRecord.read($0) }
        }
        switch read {
        case .success(let entry): return entry
        case .failure(.checksum): noteDamagedRecord(key, in: "store")
        case .failure, nil: break
        }
        return nil
    }

    /// Counts (``Counter/damaged``) and logs `key`'s record that failed its checksum in `tier` (`store`,
    /// `shared tier`) the first time this process reads it (a miss reads it twice: before and inside its
    /// flight).
    package func noteDamagedRecord(_ key: CacheKey, in tier: String) {
        guard damagedKeysLogged.withLock({ $0.insert(key).inserted }) else { return }
        increment([Counter.total(.damaged)], by: 1, copiesUnder: Counter.periods(at: now()))
        logger.warning(
            "stored record failed its checksum (damaged): served as a miss, replaced by the next answer",
            metadata: ["store.key": "\(key.hex)", "store.tier": "\(tier)"]
        )
    }

    /// Stores `entry` under `key` through the write lane, with the raw request key that led to it, if any
    /// (in the same transaction, so that the next byte-identical request finds it on the fast path).
    /// - Returns: Whether it was committed (false when it could not fit even after eviction).
    @discardableResult
    public func store(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]? = nil) async -> Bool {
        await submit(.put(entry, for: key, alias: alias))
    }

    /// Records that requests with the raw key `rawKey` have the cache key `key`, in a batch with the
    /// other aliases recorded within ``aliasDelay``: an alias only spares the next repeat a
    /// normalization, so it need not cost a commit (and a disk sync) of its own.
    /// - Returns: The batch's write when this alias scheduled it (nil when it joined one), so that a
    ///   caller can await it.
    package func recordAliasSoon(_ rawKey: [UInt8], for key: CacheKey) -> Task<Void, Never>? {
        let schedules = pendingAliases.withLock { pending -> Bool in
            guard pending != nil else {
                pending = [(rawKey, key.bytes)]
                return true
            }
            if pending!.count < Self.maxPendingAliases { pending!.append((rawKey, key.bytes)) }
            return false
        }
        guard schedules else { return nil }
        return Task {
            try? await Task.sleep(for: Self.aliasDelay)
            let batch = pendingAliases.withLock { pending in
                defer { pending = nil }
                return pending ?? []
            }
            await submit(.aliases(batch))
        }
    }

    /// How long an alias waits for others to share its write.
    static let aliasDelay = Duration.milliseconds(100)
    /// Aliases beyond this many in one batch are dropped (their requests stay canonical hits).
    static let maxPendingAliases = 4096

    /// The number of entries.
    public func entryCount() async throws -> Int {
        let entries = self.entries
        return try await environment.read { txn in try txn.count(entries) }
    }

    /// Bytes of the map in use.
    public var storeBytes: Int { (try? environment.usedBytes) ?? 0 }

    /// True when a write transaction can be committed (for `/healthz`).
    public func isWritable() async -> Bool {
        await submit(.setMeta(key: Array("health".utf8), value: Self.bigEndian(UInt64(bitPattern: now()))))
    }
}
