import LMDBKit
import Logging

/// Sweeping expired entries and evicting the oldest when the map is full (SPEC §9).
extension CacheStore {
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

    /// Free bytes below which a batch with answers evicts first: a 16th of the map, at least 256 KiB
    /// (enough for one ``evictionStep`` of copied pages with small entries).
    var evictionReserve: Int {
        max(((try? environment.mapSize) ?? 0) / 16, 256 << 10)
    }

    /// Entries deleted per eviction transaction: each one's pages are free for the next.
    private static let evictionStep = 16

    /// Deletes every alias, then expired entries, then the oldest-stored `fraction` of the rest,
    /// ``evictionStep`` per transaction, with the write lane's `writer`; stops after the aliases when
    /// that leaves ``evictionReserve`` free. Returns how many entries went.
    ///
    /// Aliases go first because they are disposable and entries are not: a request whose alias is
    /// gone is keyed again from its body and its alias recorded again. Otherwise a client sending
    /// ever-new variants of one stored request (no upstream call, one alias each) would fill the map
    /// with aliases and have the team's answers evicted for them (SECURITY.md C17).
    func evict(fraction: Double, _ writer: borrowing LMDBWriter) throws -> Int {
        if try dropAliases(writer), try environment.freeBytes >= evictionReserve { return 0 }
        let (entries, byExpiry, byStored) = (self.entries, self.byExpiry, self.byStored)
        let cutoff = now()
        let step = Self.evictionStep
        var expired = 0
        while true {
            let deleted = try waitingForReaders {
                try writer.write { txn in
                    try Self.deleteExpired(txn, entries: entries, byExpiry: byExpiry, byStored: byStored, cutoff: cutoff, limit: step)
                }
            }
            expired += deleted
            if deleted < step { break }
        }
        let quota = max(1, Int(Double(try environment.entryCount(entries)) * fraction))
        var oldest = 0
        while oldest < quota {
            let deleted = try waitingForReaders { [oldest] in
                try writer.write { txn in
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

    /// Empties the `aliases` table when it holds any, counting the drop in a second commit: LMDB
    /// reuses the pages a commit frees only once a later one has landed. Returns whether it dropped.
    @discardableResult
    func dropAliases(_ writer: borrowing LMDBWriter) throws -> Bool {
        let (aliases, counters) = (self.aliases, self.counters)
        guard try environment.entryCount(aliases) > 0 else { return false }
        try waitingForReaders { try writer.write { txn in try txn.drop(aliases) } }
        try waitingForReaders { try writer.write { txn in try Self.add(1, to: Counter.total(.aliasDrops), txn, counters: counters) } }
        logger.warning("store full: dropped the aliases before evicting entries")
        return true
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
