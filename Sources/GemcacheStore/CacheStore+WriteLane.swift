import GemcacheKey
import LMDBKit
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The write lane: every write is queued and committed with whatever else is queued, in one transaction
/// (group commit) on LMDB's writer thread, which answers the writers itself; a full map evicts and retries.
extension CacheStore {
    enum WriteOperation: Sendable {
        /// `keepingNewer`: leave an entry stored later than `storedAt` as it is (a salvage of older copies).
        case put(key: [UInt8], record: [UInt8], storedAt: Int64, expiresAt: Int64, alias: [UInt8]?, keepingNewer: Bool)
        case aliases([(rawKey: [UInt8], key: [UInt8])])
        case addCounters([String: Int64])
        case setMeta(key: [UInt8], value: [UInt8])
        case setMetaIfAbsent(key: [UInt8], value: [UInt8])
        case deleteCounters(from: [UInt8], upTo: [UInt8])

        /// Stores `entry` under `key`, and `alias` as a raw key of it.
        static func put(_ entry: CacheEntry, for key: CacheKey, alias: [UInt8]? = nil, keepingNewer: Bool = false) -> WriteOperation {
            .put(
                key: key.bytes,
                record: EntryRecord.encode(entry),
                storedAt: entry.storedAt,
                expiresAt: entry.expiresAt,
                alias: alias,
                keepingNewer: keepingNewer
            )
        }

        var isPut: Bool {
            if case .put = self { true } else { false }
        }

        var isAliases: Bool {
            if case .aliases = self { true } else { false }
        }

        /// Whether it adds entries or aliases, the writes that fill the map.
        var grows: Bool {
            switch self {
            case .put, .aliases: true
            default: false
            }
        }
    }

    struct WriteQueue {
        var waiting: [(WriteOperation, CheckedContinuation<Bool, Never>)] = []
        var draining = false
    }

    /// Queues `operation` and waits for its commit: the writer thread commits it and resumes the caller
    /// itself, one thread switch there and one back.
    func submit(_ operation: WriteOperation) async -> Bool {
        await withCheckedContinuation { continuation in
            let startDrain = queue.withLock { queue in
                queue.waiting.append((operation, continuation))
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            if startDrain { self.startDrain() }
        }
    }

    /// Has the writer thread commit everything queued as one batch and answer its writers. Writes queued
    /// meanwhile make the next batch, in a job of its own behind any other work waiting for the writer
    /// thread (a sweep, a deferred sync), so a storm of misses does not hold that work off.
    func startDrain() {
        environment.onWriterThread { writer in
            let batch = self.queue.withLock { queue in
                defer { queue.waiting.removeAll(keepingCapacity: true) }
                return queue.waiting
            }
            let results = self.commit(batch.map(\.0), writer)
            for (index, (_, continuation)) in batch.enumerated() {
                continuation.resume(returning: results[index])
            }
            let more = self.queue.withLock { queue in
                queue.draining = !queue.waiting.isEmpty
                return queue.draining
            }
            if more { self.startDrain() }
        }
    }

    /// Commits `operations` in one transaction; on a full map evicts and retries, finally without the puts.
    ///
    /// Eviction starts before the map is full: LMDB copies every page a transaction changes, deletions
    /// included, so a map without free pages cannot even delete (`mdb_del` fails with MDB_MAP_FULL)
    /// and would stop storing for good. ``evictionReserve`` bytes are kept free for evicting. A batch
    /// of aliases alone never evicts an entry: it drops the aliases, itself included.
    private func commit(_ operations: [WriteOperation], _ writer: borrowing LMDBWriter) -> [Bool] {
        let nearlyFull = operations.contains(where: \.grows) && (try? environment.freeBytes).map { $0 < evictionReserve } == true
        for evictFraction in nearlyFull ? [0.1, 0.3] : [0.0, 0.1, 0.3] {
            if evictFraction > 0 {
                guard !operations.allSatisfy(\.isAliases) else {
                    do { try dropAliases(writer) } catch { logger.error("dropping the aliases failed", metadata: ["store.error": "\(error)"]) }
                    return Array(repeating: false, count: operations.count)
                }
                do {
                    let evicted = try evict(fraction: evictFraction, writer)
                    increment(Counter.total(.evictions), by: Int64(evicted))
                    if evicted > 0 { logger.warning("store full: evicted entries", metadata: ["store.evicted": "\(evicted)"]) }
                } catch {
                    logger.error("eviction failed", metadata: ["store.error": "\(error)"])
                }
            }
            do {
                if evictFraction > 0 {
                    try waitingForReaders { try apply(operations, writer) }
                } else {
                    try apply(operations, writer)
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
        let committed = (try? apply(withoutPuts, writer)) != nil
        logger.warning("store full: answers not stored", metadata: ["store.dropped": "\(operations.count - withoutPuts.count)"])
        return operations.map { !$0.isPut && committed }
    }

    /// Adds `delta` to the stored counter `name` in `txn`.
    static func add(_ delta: Int64, to name: String, _ txn: borrowing LMDBTransaction, counters: LMDBDatabase) throws {
        let key = Array(name.utf8)
        let current = try txn.get(counters, key: key).map { $0.withUnsafeBytes { Self.int64($0) } } ?? 0
        try txn.put(counters, key: key, value: Self.bigEndian(UInt64(bitPattern: Counter.sum(current, delta))))
    }

    /// Calls `observer` after each commit of the write lane, on the writer thread, before the commit's
    /// writers learn it is done: what the data file holds then is what a crash after that point can find.
    package func observeCommits(_ observer: @escaping @Sendable () -> Void) {
        commitObserver.withLock { $0 = observer }
    }

    private func apply(_ operations: [WriteOperation], _ writer: borrowing LMDBWriter) throws {
        let (entries, byExpiry, byStored, counters, meta) = (self.entries, self.byExpiry, self.byStored, self.counters, self.meta)
        let aliases = self.aliases
        try writer.write { txn in
            for operation in operations {
                switch operation {
                case .put(let key, let record, let storedAt, let expiresAt, let alias, let keepingNewer):
                    let old = try txn.withValue(entries, key: key, { EntryRecord.times($0) }) ?? nil
                    if keepingNewer, let old, old.storedAt > storedAt { continue }
                    if let alias { try txn.put(aliases, key: alias, value: key) }
                    if let old {
                        _ = try txn.delete(byExpiry, key: Self.indexKey(old.expiresAt, key))
                        _ = try txn.delete(byStored, key: Self.indexKey(old.storedAt, key))
                    }
                    try txn.put(entries, key: key, value: record)
                    try txn.put(byExpiry, key: Self.indexKey(expiresAt, key), value: [])
                    try txn.put(byStored, key: Self.indexKey(storedAt, key), value: [])
                case .addCounters(let deltas):
                    for (name, delta) in deltas { try Self.add(delta, to: name, txn, counters: counters) }
                case .setMeta(let key, let value):
                    try txn.put(meta, key: key, value: value)
                case .aliases(let batch):
                    for (rawKey, key) in batch { try txn.put(aliases, key: rawKey, value: key) }
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
        commitObserver.withLock { $0 }?()
    }

    /// Runs `write` and, while it fails with MDB_MAP_FULL, again after short pauses. LMDB reuses pages
    /// freed by a commit only once no read transaction still sees an older snapshot; lookups under a
    /// miss storm hold such snapshots for a moment, longer on a loaded machine. Without the pauses the
    /// pages just evicted (or the free list an eviction needs to delete at all) stay out of reach and
    /// answers are dropped (seen in StoreReliabilityTests on a busy CI machine). The pauses hold the
    /// writer thread, and every other write with it, for 130 ms at most, and only when the map is full.
    func waitingForReaders<R>(_ write: () throws -> R) throws -> R {
        for pause in Self.readerPauses {
            do {
                return try write()
            } catch let error as LMDBError where error == .mapFull {
                usleep(pause)
            }
        }
        return try write()
    }

    /// The pauses of ``waitingForReaders(_:)`` before each retry, in microseconds.
    private static let readerPauses: [UInt32] = [5_000, 25_000, 100_000]
}
