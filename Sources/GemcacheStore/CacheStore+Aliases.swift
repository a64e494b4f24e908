package import GemcacheKey
import LMDBKit

/// The `aliases` database (raw request key → cache key): synchronous reads for the fast path (of
/// entries too), and its upkeep.
extension CacheStore {
    /// Calls `body` with the cache key and the valid stored record (``EntryRecord``) that `rawKey`
    /// leads to, inside one read transaction on the calling thread; `body` is not called when there is
    /// no alias, the entry is gone (aliases of evicted or expired entries dangle), its record does not
    /// validate or the read fails.
    ///
    /// The fast path calls this on the event loop, against the rule of running LMDB reads on the thread
    /// pool: a thread-pool hop costs two context switches and an allocation per request, more than the
    /// whole budget of a hit (about 10 µs of machine time at nginx's rate on 2 cores), while this read
    /// of a hot entry is two B-tree lookups in pages already in memory (well under 1 µs, see
    /// benchmarks/RESULTS.md). A cold page can block the loop on a disk read; the entries a fast path
    /// serves are the ones just read, so their pages are resident. `body` must copy what it needs: the
    /// key and the record's slices point into the memory map and end with the transaction.
    package func withAliasedRecord(
        rawKey: UnsafeRawBufferPointer,
        _ body: (_ key: UnsafeRawBufferPointer, _ record: EntryRecord) -> Void
    ) {
        let (aliases, entries) = (self.aliases, self.entries)
        try? environment.withReadTransaction { txn in
            try txn.withRawValue(aliases, key: rawKey) { key in
                guard let key, key.count == Digest.sha256Length else { return }
                try txn.withRawValue(entries, key: key) { bytes in
                    guard let bytes, let record = try? EntryRecord(bytes) else { return }
                    body(key, record)
                }
            }
        }
    }

    /// Calls `body` with the valid stored record under `key`, read in place like
    /// ``withAliasedRecord(rawKey:_:)`` (for the fast path's requests that have no alias yet); `body`
    /// is not called when there is none, it does not validate or the read fails.
    package func withRecord(key: UnsafeRawBufferPointer, _ body: (_ record: EntryRecord) -> Void) {
        let entries = self.entries
        try? environment.withReadTransaction { txn in
            try txn.withRawValue(entries, key: key) { bytes in
                guard let bytes, let record = try? EntryRecord(bytes) else { return }
                body(record)
            }
        }
    }

    /// The cache key that `rawKey` leads to, if an alias is recorded (a synchronous read, see above).
    package func aliasedKey(_ rawKey: [UInt8]) -> CacheKey? {
        let aliases = self.aliases
        let bytes = try? environment.withReadTransaction { txn in try txn.get(aliases, key: rawKey) }
        return bytes.flatMap { $0 }.flatMap { CacheKey(bytes: $0) }
    }

    /// Deletes aliases whose entry is gone (evicted, expired and swept, or purged), so that the
    /// `aliases` database does not outgrow the entries. Returns how many were deleted.
    @discardableResult
    public func sweepAliases() async throws -> Int {
        let (aliases, entries) = (self.aliases, self.entries)
        return try await environment.write { txn in
            var deleted = 0
            try txn.forEachDeleting(aliases) { _, key in
                guard try txn.withValue(entries, key: key, { _ in true }) == nil else { return .keep }
                deleted += 1
                return .delete
            }
            return deleted
        }
    }
}
