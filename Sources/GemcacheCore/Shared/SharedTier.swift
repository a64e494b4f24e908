import Foundation
import GemcacheKey
import GemcacheStore
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The shared second tier on PostgreSQL (`store.shared`): entries every instance answers from, claims
/// that let one instance of a cluster call upstream for a key while the others wait, and counters
/// summed over every instance.
///
/// The tier is an optimisation, never a dependency: every operation is bounded by
/// ``operationTimeout``, and the first failure marks the tier degraded. While degraded no request
/// touches PostgreSQL (lookups miss, writes are skipped, counters queue up in memory) until
/// ``SharedTierService`` finds the server answering again.
public final class SharedTier: Sendable {
    /// The longest any one PostgreSQL operation may take before the tier counts as degraded.
    static let operationTimeout: Duration = .seconds(1)
    /// How often a waiter looks whether the instance holding the claim has stored the answer.
    static let claimPollInterval: Duration = .milliseconds(20)

    let client: PostgresClient
    /// `host:port/database`, for logs and stats.
    let target: String
    let logger: Logger
    let now: @Sendable () -> Int64
    /// Called with the key of a row whose record fails its checksum (damaged in PostgreSQL or on the way).
    let onDamagedRecord: @Sendable (CacheKey) -> Void
    let state = Mutex(State())

    struct State {
        var healthy = false
        var problem: String? = "not connected yet"
        /// Counter deltas handed over by the store and not yet added in PostgreSQL.
        var pendingCounters: [String: Int64] = [:]
        var hits = 0
        var writes = 0
        var failures = 0
    }

    init(
        settings: SharedTierSettings,
        logger: Logger,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock,
        onDamagedRecord: @escaping @Sendable (CacheKey) -> Void = { _ in }
    ) {
        self.client = PostgresClient(configuration: settings.client, backgroundLogger: logger)
        self.target = settings.displayName
        self.logger = logger
        self.now = now
        self.onDamagedRecord = onDamagedRecord
    }

    /// What stats and `/healthz` say about the tier.
    public struct Status: Sendable, Equatable {
        public let healthy: Bool
        /// Why it is degraded (never credentials).
        public let problem: String?
        public let target: String
        /// This instance's answers from the tier, entries written to it, and failed operations.
        public let hits: Int
        public let writes: Int
        public let failures: Int
    }

    public var status: Status {
        state.withLock { Status(healthy: $0.healthy, problem: $0.problem, target: target, hits: $0.hits, writes: $0.writes, failures: $0.failures) }
    }

    /// Runs the connection pool; returns when the task is cancelled.
    func run() async {
        await client.run()
    }

    // MARK: - Entries

    /// The fresh entry under `key`, or nil (also when the tier is degraded).
    func lookup(_ key: CacheKey) async -> CacheEntry? {
        let (keyBytes, time) = (ByteBuffer(bytes: key.bytes), now())
        let entry =
            await perform("lookup") { client in
                let rows = try await client.query("SELECT record FROM gemcache_entries WHERE key = \(keyBytes) AND expires_at > \(time)")
                for try await record in rows.decode(ByteBuffer.self) {
                    return self.entry(record, for: key)
                }
                return nil
            } ?? nil
        if entry != nil { state.withLock { $0.hits += 1 } }
        return entry
    }

    /// The entry a row's `record` holds, if it validates; a record that fails its checksum is reported
    /// to ``onDamagedRecord`` (the stats' `damaged`), and the fresh answer a miss stores replaces it.
    func entry(_ record: ByteBuffer, for key: CacheKey) -> CacheEntry? {
        switch record.withUnsafeReadableBytes({ EntryRecord.read($0) }) {
        case .success(let entry): return entry
        case .failure(.checksum): onDamagedRecord(key)
        case .failure: break
        }
        return nil
    }

    /// Writes `entry` under `key` (replacing an older one). Returns whether it was written.
    @discardableResult
    func store(_ entry: CacheEntry, for key: CacheKey) async -> Bool {
        let keyBytes = ByteBuffer(bytes: key.bytes)
        let record = ByteBuffer(bytes: EntryRecord.encode(entry))
        let written =
            await perform("write") { client in
                try await client.query(
                    """
                    INSERT INTO gemcache_entries (key, record, model, namespace, stored_at, expires_at)
                    VALUES (\(keyBytes), \(record), \(entry.model), \(entry.namespace), \(entry.storedAt), \(entry.expiresAt))
                    ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, model = EXCLUDED.model,
                        namespace = EXCLUDED.namespace, stored_at = EXCLUDED.stored_at, expires_at = EXCLUDED.expires_at
                    """
                )
                return true
            } ?? false
        if written { state.withLock { $0.writes += 1 } }
        return written
    }

    // MARK: - Counters

    /// Queues counter deltas the store has flushed, for the next ``pushCounters()``.
    func enqueueCounters(_ deltas: [String: Int64]) {
        guard !deltas.isEmpty else { return }
        state.withLock { state in
            state.pendingCounters.merge(deltas, uniquingKeysWith: Counter.sum)
        }
    }

    /// Adds the queued deltas to the cluster's counters; on failure they stay queued.
    func pushCounters() async {
        let deltas = state.withLock { state in
            guard state.healthy else { return [String: Int64]() }
            defer { state.pendingCounters.removeAll(keepingCapacity: true) }
            return state.pendingCounters
        }
        guard !deltas.isEmpty else { return }
        let names = Array(deltas.keys)
        let values = names.map { deltas[$0] ?? 0 }
        let pushed =
            await perform("counters") { client in
                try await client.query(
                    """
                    INSERT INTO gemcache_counters (name, value) SELECT * FROM unnest(\(names)::text[], \(values)::bigint[])
                    ON CONFLICT (name) DO UPDATE
                        SET value = LEAST(GREATEST(gemcache_counters.value, 0)::numeric + EXCLUDED.value, 9223372036854775807)::bigint
                    """
                )
                return true
            } ?? false
        if !pushed { enqueueCounters(deltas) }
    }

    /// The cluster's counters whose names start with any of `prefixes`, plus this instance's queued
    /// deltas; nil when the tier is degraded.
    func counterValues(prefixes: [String]) async -> [String: Int64]? {
        await counterValues(prefixes.map(CounterRange.init(prefix:)))
    }

    /// The cluster's counters named in any of `ranges`, plus this instance's queued deltas; nil when the
    /// tier is degraded.
    func counterValues(_ ranges: [CounterRange]) async -> [String: Int64]? {
        let starts = ranges.map { String(decoding: $0.start, as: UTF8.self) }
        let ends = ranges.map { $0.end.map { String(decoding: $0, as: UTF8.self) } ?? "" }  // "": to the last name
        guard
            var values = await perform(
                "read counters",
                { client -> [String: Int64] in
                    let rows = try await client.query(
                        """
                        SELECT name, value FROM gemcache_counters
                        WHERE EXISTS (SELECT 1 FROM unnest(\(starts)::text[], \(ends)::text[]) AS wanted(first, after)
                                      WHERE name >= wanted.first AND (wanted.after = '' OR name < wanted.after))
                        """
                    )
                    var values: [String: Int64] = [:]
                    for try await (name, value) in rows.decode((String, Int64).self) { values[name] = Counter.sum(value, 0) }  // never below 0
                    return values
                }
            )
        else { return nil }
        state.withLock { state in
            for (name, delta) in state.pendingCounters where ranges.contains(where: { $0.contains(name) }) {
                values[name] = Counter.sum(values[name] ?? 0, delta)
            }
        }
        return values
    }

    /// Deletes the cluster's counters named from `start` up to (not including) `end`.
    func deleteCounters(from start: String, upTo end: String) async {
        _ = await perform("prune counters") { client in
            try await client.query("DELETE FROM gemcache_counters WHERE name >= \(start) AND name < \(end)")
        }
    }

    // MARK: - Upkeep

    /// Creates the tables when missing and checks the tier's format; marks the tier healthy when that
    /// works and degraded when it does not. Returns whether it is healthy.
    @discardableResult
    func connect() async -> Bool {
        do {
            let format = try await withTimeout { [client, logger] in
                try await client.withTransaction(logger: logger) { connection in
                    // One instance at a time creates the tables (concurrent CREATE IF NOT EXISTS can collide).
                    try await connection.query("SELECT pg_advisory_xact_lock(\(Self.schemaLock))", logger: logger)
                    for statement in Self.schema { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                    try await connection.query(
                        "INSERT INTO gemcache_meta (name, value) VALUES ('format', \(String(CacheStore.formatVersion))) ON CONFLICT DO NOTHING",
                        logger: logger
                    )
                    let rows = try await connection.query("SELECT value FROM gemcache_meta WHERE name = 'format'", logger: logger)
                    for try await value in rows.decode(String.self) { return value }
                    return ""
                }
            }
            guard format == String(CacheStore.formatVersion) else {
                markDegraded("tables of format \(format), this gemcache writes \(CacheStore.formatVersion)")
                return false
            }
            let recovered = state.withLock { state in
                defer { (state.healthy, state.problem) = (true, nil) }
                return !state.healthy
            }
            if recovered { logger.notice("shared tier connected", metadata: ["shared.target": "\(target)"]) }
            return true
        } catch {
            markDegraded(Self.describe(error))
            return false
        }
    }

    /// Deletes expired entries and expired claims in batches. Returns how many entries went.
    @discardableResult
    func sweepExpired() async -> Int {
        let time = now()
        var total = 0
        while true {
            let deleted =
                await perform("sweep") { client in
                    let rows = try await client.query(
                        """
                        WITH doomed AS (
                            DELETE FROM gemcache_entries WHERE key IN
                                (SELECT key FROM gemcache_entries WHERE expires_at <= \(time) LIMIT \(Self.sweepBatch))
                            RETURNING 1)
                        SELECT count(*)::bigint FROM doomed
                        """
                    )
                    for try await count in rows.decode(Int64.self) { return Int(count) }
                    return 0
                } ?? 0
            total += deleted
            if deleted < Self.sweepBatch { break }
        }
        _ = await perform("sweep claims") { client in
            try await client.query("DELETE FROM gemcache_claims WHERE claimed_until < \(time)")
        }
        return total
    }

    /// Deletes the entries matching `filter`. Returns how many, or nil when the tier is degraded.
    func purge(_ filter: PurgeFilter) async -> Int? {
        let key = filter.key.map { ByteBuffer(bytes: $0.bytes) }
        let cutoff = filter.olderThan.map { now() - $0.milliseconds }
        return await perform("purge") { client in
            let rows = try await client.query(
                """
                WITH doomed AS (
                    DELETE FROM gemcache_entries
                    WHERE \(filter.all) OR ((\(key)::bytea IS NULL OR key = \(key)) AND (\(filter.model)::text IS NULL OR model = \(filter.model))
                        AND (\(filter.namespace)::text IS NULL OR namespace = \(filter.namespace)) AND (\(cutoff)::bigint IS NULL OR stored_at < \(cutoff)))
                    RETURNING 1)
                SELECT count(*)::bigint FROM doomed
                """
            )
            for try await count in rows.decode(Int64.self) { return Int(count) }
            return 0
        }
    }

    // MARK: - Internals

    static let sweepBatch = 1000
    /// The advisory lock id under which instances create the tables.
    static let schemaLock: Int64 = 0x6765_6d63_6163_6865  // "gemcache"
    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS gemcache_entries (
            key bytea PRIMARY KEY, record bytea NOT NULL, model text NOT NULL, namespace text,
            stored_at bigint NOT NULL, expires_at bigint NOT NULL)
        """,
        "CREATE INDEX IF NOT EXISTS gemcache_entries_expires_at ON gemcache_entries (expires_at)",
        // Claims last seconds: not worth the write-ahead log.
        "CREATE UNLOGGED TABLE IF NOT EXISTS gemcache_claims (key bytea PRIMARY KEY, token bigint NOT NULL, claimed_until bigint NOT NULL)",
        // Byte order ("C"), so that a range of names is a range of time (see `Counter`).
        #"CREATE TABLE IF NOT EXISTS gemcache_counters (name text COLLATE "C" PRIMARY KEY, value bigint NOT NULL)"#,
        "CREATE TABLE IF NOT EXISTS gemcache_meta (name text PRIMARY KEY, value text NOT NULL)",
    ]

    /// Runs `operation` against the pool when the tier is healthy, bounded by ``operationTimeout``; a
    /// failure marks the tier degraded. Returns nil when degraded or failed.
    func perform<R: Sendable>(_ what: String, _ operation: @escaping @Sendable (PostgresClient) async throws -> R) async -> R? {
        guard state.withLock({ $0.healthy }) else { return nil }
        do {
            return try await withTimeout { [client] in try await operation(client) }
        } catch {
            markDegraded("\(what): \(Self.describe(error))")
            return nil
        }
    }

    private func withTimeout<R: Sendable>(_ operation: @escaping @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: Self.operationTimeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else { throw TimedOut() }
            return result
        }
    }

    private struct TimedOut: Error {}

    private func markDegraded(_ problem: String) {
        let newlyDegraded = state.withLock { state in
            defer { (state.healthy, state.problem, state.failures) = (false, problem, state.failures + 1) }
            return state.healthy || state.problem == "not connected yet"
        }
        if newlyDegraded {
            logger.warning(
                "shared tier degraded: serving from the local store and upstream",
                metadata: ["shared.target": "\(target)", "shared.problem": "\(problem)"]
            )
        }
    }

    /// A short, credential-free description (PSQLError's own description hides everything on purpose).
    static func describe(_ error: any Error) -> String {
        switch error {
        case is TimedOut: "no answer within \(operationTimeout)"
        case let error as PSQLError:
            error.serverInfo?[.message].map { "\(error.code): \($0)" } ?? "\(error.code)"
        default: "\(error)"
        }
    }
}
