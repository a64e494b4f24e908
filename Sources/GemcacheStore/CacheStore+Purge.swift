import Foundation
public import GemcacheKey
import LMDBKit

/// Which entries a purge deletes: all of them, or those matching every given field.
public struct PurgeFilter: Sendable, Equatable {
    public var all = false
    public var model: String?
    public var namespace: String?
    public var key: CacheKey?
    /// Entries stored longer ago than this.
    public var olderThan: Duration?

    public init(all: Bool = false, model: String? = nil, namespace: String? = nil, key: CacheKey? = nil, olderThan: Duration? = nil) {
        self.all = all
        self.model = model
        self.namespace = namespace
        self.key = key
        self.olderThan = olderThan
    }

    /// True when the filter names nothing (a purge must say what it deletes).
    public var isEmpty: Bool { !all && model == nil && namespace == nil && key == nil && olderThan == nil }
}

extension CacheStore {
    /// Deletes (or, with `dryRun`, counts) the entries matching `filter`.
    /// - Returns: How many entries were (or would be) deleted.
    public func purge(_ filter: PurgeFilter, dryRun: Bool = false) async throws -> Int {
        let (entries, byExpiry, byStored) = (self.entries, self.byExpiry, self.byStored)
        let cutoff = filter.olderThan.map { now() - $0.milliseconds }
        let matches: @Sendable (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Bool = { key, value in
            if filter.all { return true }
            if let wanted = filter.key, !wanted.bytes.elementsEqual(key) { return false }
            guard filter.model != nil || filter.namespace != nil || cutoff != nil else { return true }
            guard let entry = EntryRecord.decode(value) else { return false }
            if let model = filter.model, entry.model != model { return false }
            if let namespace = filter.namespace, entry.namespace != namespace { return false }
            if let cutoff, entry.storedAt >= cutoff { return false }
            return true
        }
        if dryRun {
            return try await environment.read { txn in
                var count = 0
                try txn.forEach(entries) { key, value in
                    if matches(key, value) { count += 1 }
                    return true
                }
                return count
            }
        }
        return try await environment.write { txn in
            var deleted = 0
            try txn.forEachDeleting(entries) { key, value in
                guard matches(key, value) else { return .keep }
                if let times = EntryRecord.times(value) {
                    let entryKey = Array(key)
                    try txn.delete(byExpiry, key: CacheStore.indexKey(times.expiresAt, entryKey))
                    try txn.delete(byStored, key: CacheStore.indexKey(times.storedAt, entryKey))
                }
                deleted += 1
                return .delete
            }
            return deleted
        }
    }
}
