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
/// batch, not one per entry; their disk sync comes within `store.sync_interval`. When the map is full, expired and
/// then the oldest entries are evicted and the batch is retried; a write that still does not fit is
/// dropped, never failing the request that produced it.
public final class CacheStore: Sendable {
    /// The on-disk format; a store of another format is never misread (it is moved aside or refused).
    public static let formatVersion: UInt32 = 1

    let environment: LMDBEnvironment
    let entries: LMDBDatabase
    let byExpiry: LMDBDatabase
    let byStored: LMDBDatabase
    private let counters: LMDBDatabase
    /// Store metadata: format version, scope salt, when counting began.
    let meta: LMDBDatabase
    /// Raw request key → cache key, for the fast path (`CacheStore+Aliases.swift`).
    let aliases: LMDBDatabase
    /// The folder an unreadable store was moved to at open, if that happened.
    public let recoveredFrom: String?
    /// The salt of per-key scope tags: from the environment, else created once and kept in the store.
    public let scopeSalt: [UInt8]
    private let logger: Logger
    let now: @Sendable () -> Int64
    private let queue = Mutex(WriteQueue())
    private let counterBuffer = Mutex(CounterBuffer())

    private init(
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

    /// Opens (or creates) the store at `configuration.path`.
    ///
    /// A store that cannot be opened or is of another format is never deleted: with
    /// `on_corrupt: move_aside` it is renamed to `<path>.corrupt-<UTC time>` and an empty store is
    /// created; with `fail` this throws. An existing store that other users may read or write is used,
    /// with a warning naming its path and modes (``warnIfShared(_:logger:)``).
    /// - Parameters:
    ///   - scopeSalt: The salt from the environment, or nil to use (or create) the one kept in the store.
    ///   - now: Unix time in milliseconds; tests inject their own.
    public static func open(
        configuration: ProxyConfiguration.Store,
        scopeSalt: [UInt8]?,
        logger: Logger,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock
    ) async throws(StoreError) -> CacheStore {
        do {
            let store = try await openChecked(configuration: configuration, scopeSalt: scopeSalt, recoveredFrom: nil, logger: logger, now: now)
            warnIfShared(configuration.path, logger: logger)
            return store
        } catch let failure {
            guard configuration.onCorrupt == .moveAside else {
                throw StoreError("store at \(configuration.path) cannot be opened (\(failure.reason)); store.on_corrupt is fail")
            }
            let stamp = Self.utcStamp(now())
            let aside = "\(configuration.path).corrupt-\(stamp)"
            do {
                try FileManager.default.moveItem(atPath: configuration.path, toPath: aside)
            } catch {
                throw StoreError(
                    "store at \(configuration.path) cannot be opened (\(failure.reason)) and cannot be moved aside: \(error.localizedDescription)"
                )
            }
            logger.error(
                "store could not be opened; moved aside and starting empty",
                metadata: ["store.path": "\(configuration.path)", "store.moved_to": "\(aside)", "store.reason": "\(failure.reason)"]
            )
            do {
                return try await openChecked(configuration: configuration, scopeSalt: scopeSalt, recoveredFrom: aside, logger: logger, now: now)
            } catch {
                throw StoreError("store at \(configuration.path) cannot be created: \(error.reason)")
            }
        }
    }

    /// Logs a warning when the store's folder or files are open to other users (any group or other
    /// permission bit): a store holds every client's answers (SPEC §8). A new store is created 0700/0600;
    /// an existing one keeps the modes it has (made by hand, copied in, a loose umask elsewhere).
    static func warnIfShared(_ path: String, logger: Logger) {
        let loose = [path, path + "/data.mdb", path + "/lock.mdb"].compactMap { file -> String? in
            guard let mode = (try? FileManager.default.attributesOfItem(atPath: file))?[.posixPermissions] as? Int,
                mode & 0o077 != 0
            else { return nil }
            return "\(file) 0\(String(mode & 0o777, radix: 8))"
        }
        guard !loose.isEmpty else { return }
        logger.warning(
            "store is open to other users (it holds every client's answers): chmod 700 the folder and 600 its files",
            metadata: ["store.path": "\(path)", "store.modes": "\(loose.joined(separator: ", "))"]
        )
    }

    private struct OpenFailure: Error {
        let reason: String
    }

    private static func openChecked(
        configuration: ProxyConfiguration.Store,
        scopeSalt: [UInt8]?,
        recoveredFrom: String?,
        logger: Logger,
        now: @escaping @Sendable () -> Int64
    ) async throws(OpenFailure) -> CacheStore {
        let environment: LMDBEnvironment
        do {
            environment = try LMDBEnvironment(
                path: configuration.path,
                mapSize: configuration.maxSize,
                maxDatabases: 8,
                deferSync: configuration.syncInterval > .zero
            )
        } catch {
            throw OpenFailure(reason: "\(error)")
        }
        // A store of another format is refused before anything is created or written in it.
        if let format = existingFormat(environment), format != formatVersion {
            environment.close()
            throw OpenFailure(reason: "store format \(format), this gemcache reads \(formatVersion)")
        }
        do {
            let store = try CacheStore(environment: environment, recoveredFrom: recoveredFrom, scopeSalt: [], logger: logger, now: now)
            let (format, salt) = try await store.checkFormat(saltFromEnvironment: scopeSalt)
            guard format == formatVersion else {
                environment.close()
                throw OpenFailure(reason: format.map { "store format \($0), this gemcache reads \(formatVersion)" } ?? "not a gemcache store")
            }
            if environment.staleReadersClearedAtOpen > 0 {
                logger.notice("cleared stale LMDB reader slots", metadata: ["store.readers_cleared": "\(environment.staleReadersClearedAtOpen)"])
            }
            return try CacheStore(environment: environment, recoveredFrom: recoveredFrom, scopeSalt: salt, logger: logger, now: now)
        } catch let error as OpenFailure {
            throw error
        } catch {
            environment.close()
            throw OpenFailure(reason: "\(error)")
        }
    }

    /// The format recorded in an existing store, read without writing; nil when none is recorded.
    private static func existingFormat(_ environment: LMDBEnvironment) -> UInt32? {
        guard let meta = try? environment.openDatabase("meta", create: false),
            let stored = try? environment.withReadTransaction({ try $0.get(meta, key: Array("format".utf8)) })
        else { return nil }
        return stored.count == 4 ? stored.reduce(0) { $0 << 8 | UInt32($1) } : 0
    }

    /// Reads (or, in an empty store, writes) the format version and the scope salt.
    private func checkFormat(saltFromEnvironment: [UInt8]?) async throws -> (UInt32?, [UInt8]) {
        let (entries, meta) = (self.entries, self.meta)
        return try await environment.write { txn in
            let stored = try txn.get(meta, key: Array("format".utf8))
            let format: UInt32?
            if let stored {
                format = stored.count == 4 ? stored.reduce(0) { $0 << 8 | UInt32($1) } : 0
            } else if try txn.count(entries) == 0 {
                try txn.put(meta, key: Array("format".utf8), value: Self.bigEndian(UInt64(Self.formatVersion)).suffix(4))
                format = Self.formatVersion
            } else {
                format = nil
            }
            if let saltFromEnvironment {
                return (format, saltFromEnvironment)
            }
            if let salt = try txn.get(meta, key: Array("scope_salt".utf8)) {
                return (format, salt)
            }
            let salt = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
            try txn.put(meta, key: Array("scope_salt".utf8), value: salt)
            return (format, salt)
        }
    }

    /// Current Unix time in milliseconds.
    public static let wallClock: @Sendable () -> Int64 = { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    static func utcStamp(_ milliseconds: Int64) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000))
    }

    /// Closes the environment; call once, after the last request.
    public func close() async {
        await flushCounters()
        await syncDeferredWrites()
        environment.close()
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

    /// The entry under `key`, expired or not (the caller decides what an expired entry may still do).
    ///
    /// Reads on the calling thread, as the fast path does: one key's pages, found in memory but for a
    /// cold store, where the thread waits for the disk read.
    public func lookup(_ key: CacheKey) throws -> CacheEntry? {
        try environment.withReadTransaction { txn in
            try txn.withValue(entries, key: key.bytes) { EntryRecord.decode($0) } ?? nil
        }
    }

    /// Stores `entry` under `key` through the write lane, with the raw request key that led to it, if any
    /// (in the same transaction, so that the next byte-identical request finds it on the fast path).
    /// - Returns: Whether it was committed (false when it could not fit even after eviction).
    @discardableResult
    public func store(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]? = nil) async -> Bool {
        await submit(.put(key: key.bytes, record: EntryRecord.encode(entry), storedAt: entry.storedAt, expiresAt: entry.expiresAt, alias: alias))
    }

    /// Records through the write lane that requests with the raw key `rawKey` have the cache key `key`.
    /// - Returns: Whether it was committed.
    @discardableResult
    func recordAlias(_ rawKey: [UInt8], for key: CacheKey) async -> Bool {
        await submit(.alias(rawKey: rawKey, key: key.bytes))
    }

    /// Deletes every entry whose expiry has passed, in batches. Returns how many were deleted.
    @discardableResult
    public func sweepExpired() async throws -> Int {
        let (entries, byExpiry, byStored) = (self.entries, self.byExpiry, self.byStored)
        let cutoff = now()
        var total = 0
        while true {
            let deleted = try await environment.write { txn in
                try Self.deleteExpired(txn, entries: entries, byExpiry: byExpiry, byStored: byStored, cutoff: cutoff, limit: 5000)
            }
            total += deleted
            if deleted < 5000 { return total }
        }
    }

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

    // MARK: - Counters

    /// Adds to a persistent counter. Cheap: it only touches memory; ``flushCounters()`` persists.
    public func increment(_ counter: String, by amount: Int64 = 1) {
        counterBuffer.withLock { $0.pending[counter] = Counter.sum($0.pending[counter] ?? 0, amount) }
    }

    /// Counts of this process not in the store yet.
    private struct CounterBuffer {
        var pending: [String: Int64] = [:]
        /// The deltas ``flushCounters()`` is committing.
        var flushing: [String: Int64] = [:]
        /// Bumped when a flush starts and when it ends: odd while one is under way.
        var generation = 0

        func unflushed(prefixes: [String]) -> [String: Int64] {
            pending.merging(flushing, uniquingKeysWith: Counter.sum).filter { name, _ in prefixes.contains { name.hasPrefix($0) } }
        }
    }

    /// Adds the in-memory counter deltas to the stored counters (shared by every process on the store).
    /// - Returns: The deltas committed (for the shared tier); deltas that failed stay pending. Nothing
    ///   when another flush is under way.
    @discardableResult
    public func flushCounters() async -> [String: Int64] {
        let deltas = counterBuffer.withLock { buffer -> [String: Int64] in
            guard buffer.generation % 2 == 0, !buffer.pending.isEmpty else { return [:] }
            swap(&buffer.flushing, &buffer.pending)
            buffer.generation += 1
            return buffer.flushing
        }
        guard !deltas.isEmpty else { return [:] }
        let committed = await submit(.addCounters(deltas))
        counterBuffer.withLock { buffer in
            if !committed { buffer.pending.merge(buffer.flushing, uniquingKeysWith: Counter.sum) }
            buffer.flushing = [:]
            buffer.generation += 1
        }
        return committed ? deltas : [:]
    }

    /// This process's counts not in the store yet, for the counters whose names start with any of `prefixes`.
    func unflushedCounters(prefixes: [String]) -> [String: Int64] {
        counterBuffer.withLock { $0.unflushed(prefixes: prefixes) }
    }

    /// Every counter: what the store holds plus what this process has not flushed yet.
    public func counterValues() async throws -> [String: Int64] {
        try await counterValues(prefixes: [""])  // every name starts with ""
    }

    /// The counters whose names start with any of `prefixes` (stored plus not yet flushed), read in one
    /// transaction without walking the rest.
    public func counterValues(prefixes: [String]) async throws -> [String: Int64] {
        let counters = self.counters
        return try await withUnflushedCounters(prefixes: prefixes) {
            try await self.environment.read { txn in
                var values: [String: Int64] = [:]
                for prefix in prefixes {
                    let start = Array(prefix.utf8)
                    try txn.forEach(counters, startingAt: start.isEmpty ? nil : start) { key, value in
                        guard key.starts(with: start) else { return false }
                        values[String(decoding: key, as: UTF8.self)] = Counter.sum(Self.int64(value), 0)  // never below 0
                        return true
                    }
                }
                return values
            }
        }
    }

    /// `readStored()` plus this process's unflushed counts, each delta counted once: a read that
    /// overlaps a flush (which might or might not see its commit) is done again.
    private func withUnflushedCounters(prefixes: [String], _ readStored: () async throws -> [String: Int64]) async throws -> [String: Int64] {
        for _ in 0..<50 {
            let (generation, unflushed) = counterBuffer.withLock { ($0.generation, $0.unflushed(prefixes: prefixes)) }
            if generation % 2 == 0 {
                let values = try await readStored()
                if counterBuffer.withLock({ $0.generation }) == generation { return values.merging(unflushed, uniquingKeysWith: Counter.sum) }
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        return try await readStored().merging(counterBuffer.withLock { $0.unflushed(prefixes: prefixes) }, uniquingKeysWith: Counter.sum)
    }

    /// Deletes the stored counters named from `start` up to (not including) `end`, e.g. the per-minute
    /// counters older than a day. Returns whether the write was committed.
    @discardableResult
    public func deleteCounters(from start: String, upTo end: String) async -> Bool {
        await submit(.deleteCounters(from: Array(start.utf8), upTo: Array(end.utf8)))
    }

    /// When counting began in this store (Unix milliseconds): set by the first process that asks, kept
    /// in the store's metadata.
    public func countersSince() async throws -> Int64 {
        let key = Array("counters_since".utf8)
        _ = await submit(.setMetaIfAbsent(key: key, value: Self.bigEndian(UInt64(bitPattern: now()))))
        let meta = self.meta
        let stored = try await environment.read { txn in try txn.withValue(meta, key: key) { Self.int64($0) } }
        return stored ?? now()
    }

    // MARK: - The write lane

    private enum WriteOperation: Sendable {
        case put(key: [UInt8], record: [UInt8], storedAt: Int64, expiresAt: Int64, alias: [UInt8]?)
        case alias(rawKey: [UInt8], key: [UInt8])
        case addCounters([String: Int64])
        case setMeta(key: [UInt8], value: [UInt8])
        case setMetaIfAbsent(key: [UInt8], value: [UInt8])
        case deleteCounters(from: [UInt8], upTo: [UInt8])

        var isPut: Bool {
            if case .put = self { true } else { false }
        }
    }

    private struct WriteQueue {
        var waiting: [(WriteOperation, CheckedContinuation<Bool, Never>)] = []
        var draining = false
    }

    private func submit(_ operation: WriteOperation) async -> Bool {
        await withCheckedContinuation { continuation in
            let startDrain = queue.withLock { queue in
                queue.waiting.append((operation, continuation))
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            if startDrain {
                Task { await self.drain() }
            }
        }
    }

    /// Commits everything queued, batch after batch, until the queue is empty.
    private func drain() async {
        while true {
            let batch = queue.withLock { queue in
                defer { queue.waiting.removeAll(keepingCapacity: true) }
                if queue.waiting.isEmpty { queue.draining = false }
                return queue.waiting
            }
            if batch.isEmpty { return }
            let results = await commit(batch.map(\.0))
            for (index, (_, continuation)) in batch.enumerated() {
                continuation.resume(returning: results[index])
            }
        }
    }

    /// Commits `operations` in one transaction; on a full map evicts and retries, finally without the puts.
    ///
    /// Eviction starts before the map is full: LMDB copies every page a transaction changes, deletions
    /// included, so a map without free pages cannot even delete (`mdb_del` fails with MDB_MAP_FULL)
    /// and would stop storing for good. ``evictionReserve`` bytes are kept free for evicting.
    private func commit(_ operations: [WriteOperation]) async -> [Bool] {
        let nearlyFull = operations.contains(where: \.isPut) && (try? environment.freeBytes).map { $0 < evictionReserve } == true
        for evictFraction in nearlyFull ? [0.1, 0.3] : [0.0, 0.1, 0.3] {
            if evictFraction > 0 {
                do {
                    let evicted = try await evict(fraction: evictFraction)
                    increment(Counter.total(.evictions), by: Int64(evicted))
                    logger.warning("store full: evicted entries", metadata: ["store.evicted": "\(evicted)"])
                } catch {
                    logger.error("eviction failed", metadata: ["store.error": "\(error)"])
                }
            }
            do {
                if evictFraction > 0 {
                    try await waitingForReaders { try await self.apply(operations) }
                } else {
                    try await apply(operations)
                }
                return Array(repeating: true, count: operations.count)
            } catch let error as LMDBError where error == .mapFull {
                continue
            } catch {
                logger.error("store write failed", metadata: ["store.error": "\(error)"])
                return Array(repeating: false, count: operations.count)
            }
        }
        let withoutPuts = operations.filter { !$0.isPut }
        let committed = (try? await apply(withoutPuts)) != nil
        logger.warning("store full: answers not stored", metadata: ["store.dropped": "\(operations.count - withoutPuts.count)"])
        return operations.map { !$0.isPut && committed }
    }

    private func apply(_ operations: [WriteOperation]) async throws {
        let (entries, byExpiry, byStored, counters, meta) = (self.entries, self.byExpiry, self.byStored, self.counters, self.meta)
        let aliases = self.aliases
        try await environment.write { txn in
            for operation in operations {
                switch operation {
                case .put(let key, let record, let storedAt, let expiresAt, let alias):
                    if let alias { try txn.put(aliases, key: alias, value: key) }
                    if let old = try txn.withValue(entries, key: key, { EntryRecord.times($0) }), let old {
                        _ = try txn.delete(byExpiry, key: Self.indexKey(old.expiresAt, key))
                        _ = try txn.delete(byStored, key: Self.indexKey(old.storedAt, key))
                    }
                    try txn.put(entries, key: key, value: record)
                    try txn.put(byExpiry, key: Self.indexKey(expiresAt, key), value: [])
                    try txn.put(byStored, key: Self.indexKey(storedAt, key), value: [])
                case .addCounters(let deltas):
                    for (name, delta) in deltas {
                        let key = Array(name.utf8)
                        let current = try txn.get(counters, key: key).map { $0.withUnsafeBytes { Self.int64($0) } } ?? 0
                        try txn.put(counters, key: key, value: Self.bigEndian(UInt64(bitPattern: Counter.sum(current, delta))))
                    }
                case .setMeta(let key, let value):
                    try txn.put(meta, key: key, value: value)
                case .alias(let rawKey, let key):
                    try txn.put(aliases, key: rawKey, value: key)
                case .setMetaIfAbsent(let key, let value):
                    if try txn.get(meta, key: key) == nil { try txn.put(meta, key: key, value: value) }
                case .deleteCounters(let start, let end):
                    var doomed: [[UInt8]] = []
                    try txn.forEach(counters, startingAt: start) { key, _ in
                        guard key.lexicographicallyPrecedes(end) else { return false }
                        doomed.append(Array(key))
                        return true
                    }
                    for key in doomed { _ = try txn.delete(counters, key: key) }
                }
            }
        }
    }

    /// Free bytes below which a batch with answers evicts first: a 16th of the map, at least 256 KiB
    /// (enough for one ``evictionStep`` of copied pages with small entries).
    private var evictionReserve: Int {
        max(((try? environment.mapSize) ?? 0) / 16, 256 << 10)
    }

    /// Runs `write` and, while it fails with MDB_MAP_FULL, again after short pauses. LMDB reuses pages
    /// freed by a commit only once no read transaction still sees an older snapshot; lookups under a
    /// miss storm hold such snapshots for a moment, longer on a loaded machine. Without the pauses the
    /// pages just evicted (or the free list an eviction needs to delete at all) stay out of reach and
    /// answers are dropped (seen in StoreReliabilityTests on a busy CI machine).
    private func waitingForReaders<R>(_ write: () async throws -> R) async throws -> R {
        for pause in Self.readerPauses {
            do {
                return try await write()
            } catch let error as LMDBError where error == .mapFull {
                try? await Task.sleep(for: pause)
            }
        }
        return try await write()
    }

    /// The pauses of ``waitingForReaders(_:)`` before each retry.
    private static let readerPauses: [Duration] = [.milliseconds(5), .milliseconds(25), .milliseconds(100)]

    /// Entries deleted per eviction transaction: each one's pages are free for the next.
    private static let evictionStep = 16

    /// Deletes expired entries, then the oldest-stored `fraction` of the rest, ``evictionStep`` per
    /// transaction. Returns how many went.
    private func evict(fraction: Double) async throws -> Int {
        let (entries, byExpiry, byStored) = (self.entries, self.byExpiry, self.byStored)
        let cutoff = now()
        let step = Self.evictionStep
        var expired = 0
        while true {
            let deleted = try await waitingForReaders {
                try await environment.write { txn in
                    try Self.deleteExpired(txn, entries: entries, byExpiry: byExpiry, byStored: byStored, cutoff: cutoff, limit: step)
                }
            }
            expired += deleted
            if deleted < step { break }
        }
        let quota = max(1, Int(Double(try await entryCount()) * fraction))
        var oldest = 0
        while oldest < quota {
            let deleted = try await waitingForReaders { [oldest] in
                try await environment.write { txn in
                    try txn.deleteInOrder(of: byStored, keeping: byExpiry, time: \.expiresAt, entries: entries) { _, deleted in
                        deleted < min(step, quota - oldest)
                    }
                }
            }
            oldest += deleted
            if deleted == 0 { break }
        }
        return expired + oldest
    }

    private static func deleteExpired(
        _ txn: borrowing LMDBTransaction,
        entries: LMDBDatabase,
        byExpiry: LMDBDatabase,
        byStored: LMDBDatabase,
        cutoff: Int64,
        limit: Int
    ) throws -> Int {
        try txn.deleteInOrder(of: byExpiry, keeping: byStored, time: \.storedAt, entries: entries) { time, deleted in
            deleted < limit && time <= cutoff
        }
    }

    // MARK: - Encoding helpers

    /// `time` (8 bytes, big-endian, so that byte order is time order) followed by the entry key.
    static func indexKey(_ time: Int64, _ key: [UInt8]) -> [UInt8] {
        bigEndian(UInt64(bitPattern: time)) + key
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> (UInt64($0) * 8)) }
    }

    private static func int64(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        guard bytes.count >= 8 else { return 0 }
        return Int64(bitPattern: bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
    }
}

/// The store could not be opened, named with its path and reason (one line, for start-up).
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension LMDBTransaction {
    /// Walks a time index (`by_expiry` or `by_stored`) from its earliest time and deletes those
    /// entries while `take(time, deletedSoFar)` holds, removing each from the other index too.
    /// - Returns: How many entries were deleted.
    fileprivate func deleteInOrder(
        of index: LMDBDatabase,
        keeping otherIndex: LMDBDatabase,
        time otherTime: KeyPath<(storedAt: Int64, expiresAt: Int64), Int64>,
        entries: LMDBDatabase,
        while take: (Int64, Int) -> Bool
    ) throws -> Int {
        var deleted = 0
        try forEachDeleting(index) { indexKey, _ in
            let time = Int64(bitPattern: indexKey.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
            guard take(time, deleted) else { return .stop }
            let key = Array(indexKey.dropFirst(8))
            if let times = try withValue(entries, key: key, { EntryRecord.times($0) }), let times {
                try delete(otherIndex, key: CacheStore.indexKey(times[keyPath: otherTime], key))
            }
            try delete(entries, key: key)
            deleted += 1
            return .delete
        }
        return deleted
    }
}
