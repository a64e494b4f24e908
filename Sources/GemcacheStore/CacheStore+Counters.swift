import LMDBKit
import Synchronization

/// The counters: buffered in memory per process, flushed through the write lane, summed with what
/// every other process on the store has flushed (SPEC §7).
extension CacheStore {
    /// Adds to a persistent counter. Cheap: it only touches memory; ``flushCounters()`` persists.
    public func increment(_ counter: String, by amount: Int64 = 1) {
        counterBuffer.withLock { $0.pending[counter] = Counter.sum($0.pending[counter] ?? 0, amount) }
    }

    /// Adds `amount` to each of the all-time counters `names` and to their copies under each of
    /// `periods` (`minute/<epoch minute>/`, `hour/<epoch hour>/`), which the stats of a window add up.
    public func increment(_ names: [String], by amount: Int64, copiesUnder periods: [String]) {
        counterBuffer.withLock { buffer in
            for name in names {
                buffer.pending[name] = Counter.sum(buffer.pending[name] ?? 0, amount)
                for period in periods { buffer.pending[period + name] = Counter.sum(buffer.pending[period + name] ?? 0, amount) }
            }
        }
    }

    /// Counts of this process not in the store yet.
    struct CounterBuffer {
        var pending: [String: Int64] = [:]
        /// The deltas ``flushCounters()`` is committing.
        var flushing: [String: Int64] = [:]
        /// Bumped when a flush starts and when it ends: odd while one is under way.
        var generation = 0

        func unflushed(_ ranges: [CounterRange]) -> [String: Int64] {
            pending.merging(flushing, uniquingKeysWith: Counter.sum).filter { name, _ in ranges.contains { $0.contains(name) } }
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

    /// This process's counts not in the store yet, for the counters named in any of `ranges`.
    package func unflushedCounters(_ ranges: [CounterRange]) -> [String: Int64] {
        counterBuffer.withLock { $0.unflushed(ranges) }
    }

    /// Every counter: what the store holds plus what this process has not flushed yet.
    public func counterValues() async throws -> [String: Int64] {
        try await counterValues(prefixes: [""])  // every name starts with ""
    }

    /// The counters whose names start with any of `prefixes` (stored plus not yet flushed), read in one
    /// transaction without walking the rest.
    public func counterValues(prefixes: [String]) async throws -> [String: Int64] {
        try await counterValues(prefixes.map(CounterRange.init(prefix:)))
    }

    /// The counters named in any of `ranges` (stored plus not yet flushed), read in one transaction
    /// without walking the rest.
    public func counterValues(_ ranges: [CounterRange]) async throws -> [String: Int64] {
        let counters = self.counters
        return try await withUnflushedCounters(ranges) {
            try await self.environment.read { txn in
                var values: [String: Int64] = [:]
                for range in ranges {
                    try txn.forEach(counters, startingAt: range.start.isEmpty ? nil : range.start) { key, value in
                        guard range.end.map({ key.lexicographicallyPrecedes($0) }) ?? true else { return false }
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
    private func withUnflushedCounters(_ ranges: [CounterRange], _ readStored: () async throws -> [String: Int64]) async throws -> [String: Int64] {
        for _ in 0..<50 {
            let (generation, unflushed) = counterBuffer.withLock { ($0.generation, $0.unflushed(ranges)) }
            if generation % 2 == 0 {
                let values = try await readStored()
                if counterBuffer.withLock({ $0.generation }) == generation { return values.merging(unflushed, uniquingKeysWith: Counter.sum) }
            }
            try await Task.sleep(for: .milliseconds(1))
        }
        return try await readStored().merging(counterBuffer.withLock { $0.unflushed(ranges) }, uniquingKeysWith: Counter.sum)
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
}

/// Counter names from `start` up to, not including, `end` (none: to the last), in the byte order of
/// their UTF-8, the order of the `counters` table and of the shared tier's `COLLATE "C"`.
public struct CounterRange: Sendable, Equatable {
    public let start: [UInt8]
    public let end: [UInt8]?

    public init(from start: String, upTo end: String) {
        self.start = Array(start.utf8)
        self.end = Array(end.utf8)
    }

    /// Every name that starts with `prefix`.
    public init(prefix: String) {
        start = Array(prefix.utf8)
        // The names after every name with the prefix: the prefix with its last byte below 0xFF raised by one.
        var end = start
        while let last = end.last, last == 0xFF { end.removeLast() }
        if !end.isEmpty { end[end.count - 1] += 1 }
        self.end = end.isEmpty ? nil : end
    }

    public func contains(_ name: String) -> Bool {
        let bytes = name.utf8
        return !bytes.lexicographicallyPrecedes(start) && (end.map { bytes.lexicographicallyPrecedes($0) } ?? true)
    }
}
