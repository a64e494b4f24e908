import Foundation
package import GemcacheKey
import LMDBKit
import Logging

/// What the command-line tools (`gemcache purge`, `export`, `import`) need of a store: opening it
/// beside running proxies, reading entries in batches, writing them back, and its scope salt.
extension CacheStore {
    /// Opens the store in `configuration.path` for a command-line tool, also while proxies run on it.
    ///
    /// Like `gemcache stats`, this never moves a store aside and never gives it a salt: an unreadable
    /// store is an error, and so is a missing one unless `create` is true.
    /// - Throws: ``StoreError`` naming the path and the problem.
    public static func openForCommand(configuration: StoreConfiguration, create: Bool) async throws(StoreError) -> CacheStore {
        var settings = configuration
        settings.onCorrupt = .fail
        guard create || FileManager.default.fileExists(atPath: settings.path + "/data.mdb") else {
            throw StoreError("no gemcache store at \(settings.path)")
        }
        let logger = Logger(label: "gemcache.command", factory: { _ in SwiftLogNoOpLogHandler() })
        return try await open(configuration: settings, scopeSalt: [], logger: logger)
    }

    /// The salt kept in the store, or nil when no proxy has created one yet.
    public func storedScopeSalt() async throws -> [UInt8]? {
        let meta = self.meta
        return try await environment.read { txn in try txn.get(meta, key: Self.scopeSaltKey) }
    }

    /// Compares the salt of an export with the one this store's proxies use (`fromEnvironment` when
    /// the variable named by `cache.scope_salt_env` is set, else the stored one). An empty store
    /// without a salt from the environment adopts the exported salt.
    public func reconcileScopeSalt(exported: [UInt8]?, fromEnvironment: [UInt8]?) async throws -> ScopeSaltMatch {
        if let fromEnvironment {
            return fromEnvironment == exported ? .matches : .differs
        }
        guard let exported else { return .differs }
        let (entries, meta) = (self.entries, self.meta)
        return try await environment.write { txn in
            if try txn.get(meta, key: Self.scopeSaltKey) == exported { return .matches }
            guard try txn.count(entries) == 0 else { return .differs }
            try txn.put(meta, key: Self.scopeSaltKey, value: exported)
            return .adopted
        }
    }

    /// Up to `maxCount` entries (or about `maxBytes` of bodies) in key order, after `key` (from the
    /// first entry when nil), read in one short transaction.
    func entryBatch(after key: [UInt8]?, maxCount: Int, maxBytes: Int) async throws -> EntryBatch {
        let entries = self.entries
        return try await environment.read { txn in
            var batch = EntryBatch()
            var bytes = 0
            try txn.forEach(entries, startingAt: key) { entryKey, value in
                if let key, entryKey.elementsEqual(key) { return true }
                guard batch.entries.count < maxCount, bytes < maxBytes else { return false }
                batch.lastKey = Array(entryKey)
                bytes += value.count
                if let cacheKey = CacheKey(bytes: Array(entryKey)), let entry = EntryRecord.decode(value) {
                    batch.entries.append((cacheKey, entry))
                } else {
                    batch.unreadable += 1
                }
                return true
            }
            return batch
        }
    }

    /// Calls `body` with every entry in key order, read in batches (never the whole store in memory).
    /// - Returns: How many records could not be decoded (left out).
    @discardableResult
    package func forEachEntry(_ body: (CacheKey, CacheEntry) throws -> Void) async throws -> Int {
        var unreadable = 0
        var after: [UInt8]?
        while true {
            let batch = try await entryBatch(after: after, maxCount: 512, maxBytes: 8 << 20)
            for (key, entry) in batch.entries { try body(key, entry) }
            unreadable += batch.unreadable
            guard let last = batch.lastKey else { return unreadable }
            after = last
        }
    }

    /// Stores `entries` through the write lane (queued together, so they share commits).
    /// - Parameter keepingNewer: Leave an entry the store holds with a later `storedAt` as it is.
    /// - Returns: How many were committed (the rest did not fit even after eviction).
    func storeAll(_ entries: [(CacheKey, CacheEntry)], keepingNewer: Bool = false) async -> Int {
        await withTaskGroup(of: Bool.self) { group in
            for (key, entry) in entries {
                group.addTask { await self.submit(.put(entry, for: key, keepingNewer: keepingNewer)) }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
    }

    private static let scopeSaltKey = Array("scope_salt".utf8)
}

/// How an export's scope salt relates to the salt of the store it is imported into.
public enum ScopeSaltMatch: String, Sendable, Equatable, Codable {
    /// The same salt: per-key entries keep working.
    case matches
    /// The store was empty and took the export's salt.
    case adopted
    /// Another salt: per-key entries of the export would never be found.
    case differs
}

/// A run of entries read in key order, for streaming an export.
struct EntryBatch: Sendable {
    var entries: [(CacheKey, CacheEntry)] = []
    /// The last key visited (readable or not): the next batch starts after it; nil at the end.
    var lastKey: [UInt8]?
    /// Records this gemcache cannot decode (skipped).
    var unreadable = 0
}
