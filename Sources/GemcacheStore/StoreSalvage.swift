import GemcacheKey
import LMDBKit

/// `gemcache salvage` and `store.on_corrupt: salvage`: the intact entries of a store that liblmdb cannot
/// open, copied into a live store.
///
/// The moved-aside data file is read page by page (``LMDBPageScanner``), so entries are found when the
/// B-tree's root, its branch pages or both meta pages are gone. Of the pairs found, entries are those
/// with a 32-byte key and a value longer than one (an alias's value is a 32-byte key; counters and meta
/// values are shorter). An entry is kept only when its record passes ``EntryRecord``'s validation,
/// checksum included, so only version 3 records qualify: versions 1 and 2 carry no checksum, and an
/// intact one cannot be told from a damaged one.
///
/// LMDB leaves freed pages as they were until it reuses them, so the file may hold several copies of an
/// entry (older answers, or entries deleted since: evicted, expired and swept, purged). The newest
/// intact copy of each key is kept. Entries deleted shortly before the damage may come back with it:
/// run `gemcache purge` again after a salvage if a purge must hold.
///
/// The rest follows `gemcache import` (``StoreTransfer``): the store reconciles its scope salt with the
/// salvaged store's (found in the file's meta table; when there is none, its proxies had theirs from the
/// environment, taken to be this one's), per-key entries are skipped when the salts
/// differ, bodies over `cache.max_entry_size` are skipped, and a full store evicts or drops. An entry
/// the live store already holds in a newer version (a proxy answered it again since) is left as it is.
public enum StoreSalvage {
    /// What a salvage found and did, counted per key.
    public struct Summary: Sendable, Equatable, Codable {
        /// Entries copied into the store (or already there in a newer version).
        public var kept = 0
        /// Keys whose every copy fails its record's validation (its checksum, most often).
        public var damaged = 0
        /// Keys found only in records of versions 1 or 2, which have no checksum to verify.
        public var unverifiable = 0
        /// Intact entries whose body is over `cache.max_entry_size`.
        public var tooLarge = 0
        /// Per-key entries (and entries of unknown scope) left out because the scope salts differ.
        public var otherSalt = 0
        /// Entries that did not fit in the store even after eviction.
        public var dropped = 0
        /// How the salvaged store's scope salt relates to the store's.
        public var salt: ScopeSaltMatch = .matches
        /// Pages of the data file read.
        public var pagesRead = 0
        /// Pages and leaf nodes of the data file that could not be read (see ``LMDBPageScanner/Report``).
        public var damagedPages = 0
        public var damagedNodes = 0

        /// Everything found but not kept.
        public var skipped: Int { damaged + unverifiable + tooLarge + otherSalt + dropped }

        public init() {}

        enum CodingKeys: String, CodingKey {
            case kept, damaged, unverifiable, dropped, salt
            case tooLarge = "too_large"
            case otherSalt = "other_salt"
            case pagesRead = "pages_read"
            case damagedPages = "damaged_pages"
            case damagedNodes = "damaged_nodes"
        }
    }

    /// Copies the intact entries of the LMDB data file `dataFile` into `store`.
    ///
    /// Reads the file twice, a few pages at a time, and holds one small record per key found (never the
    /// entries themselves): the first pass finds each key's newest intact copy and the scope salt, the
    /// second stores those copies in batches through the write lane.
    /// - Parameters:
    ///   - maxEntrySize: `cache.max_entry_size`.
    ///   - saltFromEnvironment: The salt from the variable named by `cache.scope_salt_env`, if set.
    ///   - assumeShared: Take entries of unknown scope as shared when the salts differ (as `import`).
    /// - Throws: an LMDBKit error when the file cannot be opened; a store error when the salt cannot be
    ///   reconciled.
    public static func salvage(
        dataFile: String,
        into store: CacheStore,
        maxEntrySize: Int,
        saltFromEnvironment: [UInt8]?,
        assumeShared: Bool
    ) async throws -> Summary {
        var summary = Summary()
        var found: [CacheKey: Found] = [:]
        var salts: Set<[UInt8]> = []
        let survey = try LMDBPageScanner(dataFile: dataFile)
        while !survey.isFinished {
            survey.scan(pages: pagesPerStep) { key, value in
                if key.elementsEqual(scopeSaltKey) { salts.insert(Array(value)) }
                guard let cacheKey = entryKey(key, value) else { return }
                let copy = Found(value, maxEntrySize: maxEntrySize)
                if let known = found[cacheKey], !copy.isBetter(than: known) { return }
                found[cacheKey] = copy
            }
            await Task.yield()
        }
        summary.pagesRead = survey.report.pagesRead
        summary.damagedPages = survey.report.damagedPages
        summary.damagedNodes = survey.report.damagedNodes
        for copy in found.values {
            switch copy {
            case .intact: break
            case .tooLarge: summary.tooLarge += 1
            case .unverifiable: summary.unverifiable += 1
            case .damaged: summary.damaged += 1
            }
        }

        // Proxies given their salt by the environment keep none in the store: the salvaged entries are
        // then taken to have this environment's. Two salts found (damage) are no salt.
        let salvagedSalt = salts.isEmpty ? saltFromEnvironment : salts.count == 1 ? salts.first : nil
        summary.salt = try await store.reconcileScopeSalt(exported: salvagedSalt, fromEnvironment: saltFromEnvironment)
        let saltDiffers = summary.salt == .differs
        let copier = try LMDBPageScanner(dataFile: dataFile)
        var batch: [(CacheKey, CacheEntry)] = []
        var batchBytes = 0
        while !copier.isFinished {
            copier.scan(pages: pagesPerStep) { key, value in
                guard let cacheKey = entryKey(key, value), case .intact(let storedAt) = found[cacheKey],
                    let record = try? EntryRecord(value), record.storedAt == storedAt
                else { return }
                found[cacheKey] = nil  // taken: a second copy with the same time is not stored again
                guard StoreTransfer.isFindable(scope: record.scope, saltDiffers: saltDiffers, assumeShared: assumeShared) else {
                    summary.otherSalt += 1
                    return
                }
                batch.append((cacheKey, record.entry))
                batchBytes += value.count
            }
            if batch.count >= 512 || batchBytes >= 8 << 20 || (copier.isFinished && !batch.isEmpty) {
                let stored = await store.storeAll(batch, keepingNewer: true)
                summary.kept += stored
                summary.dropped += batch.count - stored
                batch.removeAll(keepingCapacity: true)
                batchBytes = 0
            }
        }
        return summary
    }

    /// Pages read between two suspensions (1 MiB of 4 KiB pages, and the overflow runs their leaves
    /// point to): the most the copying pass collects before it stores.
    private static let pagesPerStep = 256

    /// The meta table's key of the scope salt (``CacheStore``).
    private static let scopeSaltKey = Array("scope_salt".utf8)

    /// The key of a pair that may be an entry: a 32-byte key and a value longer than an alias's.
    private static func entryKey(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> CacheKey? {
        guard value.count > Digest.sha256Length else { return nil }
        return CacheKey(bytes: Array(key))
    }

    /// The best copy of a key found so far.
    private enum Found {
        /// A record that passes validation and its checksum, stored at this time.
        case intact(storedAt: Int64)
        /// An intact record whose body is over `cache.max_entry_size`.
        case tooLarge
        /// A valid record of version 1 or 2: no checksum to verify.
        case unverifiable
        /// A record that fails validation.
        case damaged

        init(_ value: UnsafeRawBufferPointer, maxEntrySize: Int) {
            guard let record = try? EntryRecord(value) else {
                self = .damaged
                return
            }
            if value[0] < EntryRecord.version {
                self = .unverifiable
            } else if record.body.count > maxEntrySize {
                self = .tooLarge
            } else {
                self = .intact(storedAt: record.storedAt)
            }
        }

        func isBetter(than other: Found) -> Bool {
            switch (self, other) {
            case (.intact(let time), .intact(let otherTime)): time > otherTime
            default: rank > other.rank
            }
        }

        private var rank: Int {
            switch self {
            case .intact: 3
            case .tooLarge: 2
            case .unverifiable: 1
            case .damaged: 0
            }
        }
    }
}
