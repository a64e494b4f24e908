import Foundation
import GemcacheKey
import GemcacheTestSupport
import LMDBKit
import Synchronization
import Testing

@testable import GemcacheStore

@Suite(.timeLimit(.minutes(1)))
struct CacheStoreTests {
    /// A clock the test moves by hand.
    final class ManualClock: Sendable {
        let milliseconds = Mutex<Int64>(1_800_000_000_000)
        var now: @Sendable () -> Int64 { { self.milliseconds.withLock { $0 } } }
        func advance(seconds: Int64) { milliseconds.withLock { $0 += seconds * 1000 } }
    }

    private func open(
        _ directory: TemporaryDirectory,
        maxSize: Int = 64 << 20,
        onCorrupt: StoreConfiguration.OnCorrupt = .moveAside,
        clock: ManualClock = .init()
    ) async throws -> CacheStore {
        var configuration = StoreConfiguration()
        configuration.path = directory.path + "/store"
        configuration.maxSize = maxSize
        configuration.onCorrupt = onCorrupt
        return try await CacheStore.open(configuration: configuration, scopeSalt: nil, logger: quietLogger, now: clock.now)
    }

    private func entry(_ body: String, at now: Int64, ttlSeconds: Int64 = 60) -> CacheEntry {
        CacheEntry(
            status: 200,
            headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
            body: Array(body.utf8),
            storedAt: now,
            expiresAt: now + ttlSeconds * 1000,
            model: "gemini-2.5-flash",
            namespace: nil,
            endpoint: "generateContent",
            promptTokens: 3,
            totalTokens: 10,
            scope: .perKey
        )
    }

    private func key(_ name: String) -> CacheKey {
        CacheKey(hex: Digest.hex(Digest.sha256(Array(name.utf8))))!
    }

    @Test func storedEntriesComeBackIdenticalAfterReopen() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let store = try await open(directory, clock: clock)
            let original = entry("{\"a\":1}", at: clock.now())
            #expect(await store.store(original, for: key("one")))
            #expect(try store.lookup(key("one")) == original)
            #expect(try store.lookup(key("two")) == nil)
            #expect(original.headers.first?.name == "Content-Type")
            let salt = store.scopeSalt
            await store.close()

            let reopened = try await open(directory, clock: clock)
            #expect(try reopened.lookup(key("one")) == original)
            #expect(reopened.scopeSalt == salt)
            #expect(reopened.recoveredFrom == nil)
            await reopened.close()
        }
    }

    @Test func onlyTheOwnerCanReadANewStore() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await open(directory)
            #expect(await store.store(entry("{}", at: 1), for: key("one")))
            await store.close()
            let permissions = { (name: String) in
                (try FileManager.default.attributesOfItem(atPath: directory.path + "/store" + name)[.posixPermissions] as? Int) ?? -1
            }
            #expect(try permissions("") == 0o700)
            #expect(try permissions("/data.mdb") == 0o600)
            #expect(try permissions("/lock.mdb") == 0o600)
        }
    }

    @Test func countersAreSharedAndPersistent() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await open(directory)
            store.increment("hits", by: 3)
            #expect(try await store.counterValues()["hits"] == 3)
            await store.flushCounters()
            store.increment("hits")
            #expect(try await store.counterValues()["hits"] == 4)
            await store.close()
            let reopened = try await open(directory)
            #expect(try await reopened.counterValues()["hits"] == 4)
            await reopened.close()
        }
    }

    @Test func expiredEntriesAreSwept() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let store = try await open(directory, clock: clock)
            await store.store(entry("short", at: clock.now(), ttlSeconds: 10), for: key("short"))
            await store.store(entry("long", at: clock.now(), ttlSeconds: 1000), for: key("long"))
            clock.advance(seconds: 11)
            #expect(try await store.sweepExpired() == 1)
            #expect(try store.lookup(key("short")) == nil)
            #expect(try store.lookup(key("long")) != nil)
            #expect(try await store.entryCount() == 1)
            await store.close()
        }
    }

    @Test func aFullMapEvictsOldestAndKeepsWorking() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let store = try await open(directory, maxSize: 1 << 20, clock: clock)
            let big = String(repeating: "x", count: 16 << 10)
            var stored = 0
            for index in 0..<200 {
                clock.advance(seconds: 1)
                if await store.store(entry(big + "\(index)", at: clock.now()), for: key("k\(index)")) { stored += 1 }
            }
            #expect(stored == 200)
            let count = try await store.entryCount()
            #expect(count > 0 && count < 200)
            #expect(try store.lookup(key("k199"))?.body == Array((big + "199").utf8))
            #expect(try store.lookup(key("k0")) == nil)
            #expect(await store.isWritable())
            await store.close()
        }
    }

    /// A client sending ever-new variants of stored requests (no upstream call, one alias each) fills
    /// a 1 MiB map with aliases many times over: the aliases are dropped, never an entry, and the
    /// store keeps storing.
    @Test func anAliasFloodDropsTheAliasesAndEvictsNoEntry() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let store = try await open(directory, maxSize: 1 << 20, clock: clock)
            let body = String(repeating: "y", count: 1 << 10)
            for index in 0..<20 {
                #expect(await store.store(entry(body + "\(index)", at: clock.now()), for: key("e\(index)")))
            }
            var committed = 0
            for batch in 0..<40 {
                let aliases = (0..<1000).map { index in
                    (rawKey: Digest.sha256(Array("variant \(batch) \(index)".utf8)), key: key("e\(index % 20)").bytes)
                }
                if await store.submit(.aliases(aliases)) { committed += 1 }
            }
            let aliasCount = try store.environment.entryCount(store.aliases)
            #expect(committed > 0 && committed < 40)
            #expect(aliasCount < 40_000)
            for index in 0..<20 {
                #expect(try store.lookup(key("e\(index)"))?.body == Array((body + "\(index)").utf8))
            }
            let counters = try await store.counterValues()
            #expect(counters[Counter.total(.evictions)] ?? 0 == 0)
            #expect(counters[Counter.total(.aliasDrops)] ?? 0 > 0)
            #expect(await store.store(entry(body, at: clock.now()), for: key("after"), alias: Array("raw after".utf8)))
            #expect(store.aliasedKey(Array("raw after".utf8)) == key("after"))
            await store.close()
        }
    }

    /// Four bytes changed in a stored body on disk (a failing disk, a torn write): the record fails its
    /// checksum, so every read of it is a miss, counted once as `damaged`, and the next answer stored
    /// under the key replaces it. The other entry, untouched, is still read.
    @Test func aRecordDamagedOnDiskIsAMissCountedAndReplaced() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let store = try await open(directory, clock: clock)
            let damagedBody = "{\"text\":\"" + String(repeating: "damaged-on-disk ", count: 40) + "\"}"
            let intact = entry("{\"text\":\"intact\"}", at: clock.now())
            #expect(await store.store(entry(damagedBody, at: clock.now()), for: key("damaged")))
            #expect(await store.store(intact, for: key("intact")))
            await store.close()

            let file = URL(fileURLWithPath: directory.path + "/store/data.mdb")
            var bytes = [UInt8](try Data(contentsOf: file))
            let marker = Array("damaged-on-disk damaged-on-disk ".utf8)
            var flipped = 0
            for start in 0..<(bytes.count - marker.count) where bytes[start..<(start + marker.count)].elementsEqual(marker) {
                for offset in 12..<16 { bytes[start + offset] ^= 0x20 }  // every copy (freed pages too)
                flipped += 1
            }
            #expect(flipped > 0)
            try Data(bytes).write(to: file)

            let reopened = try await open(directory, clock: clock)
            #expect(try reopened.lookup(key("damaged")) == nil)
            #expect(try reopened.lookup(key("damaged")) == nil)
            #expect(try reopened.lookup(key("intact")) == intact)
            #expect(try await reopened.counterValues()["damaged"] == 1)
            let fresh = entry("{\"text\":\"fresh\"}", at: clock.now())
            #expect(await reopened.store(fresh, for: key("damaged")))
            #expect(try reopened.lookup(key("damaged")) == fresh)
            #expect(try await reopened.counterValues()["damaged"] == 1)
            await reopened.close()
        }
    }

    @Test func anUnreadableStoreIsMovedAsideNeverDeleted() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.path + "/store"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let garbage = Data((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            FileManager.default.createFile(atPath: path + "/data.mdb", contents: garbage)

            await #expect(throws: StoreError.self) { try await open(directory, onCorrupt: .fail) }
            #expect(FileManager.default.contents(atPath: path + "/data.mdb") == garbage)

            let store = try await open(directory)
            let aside = try #require(store.recoveredFrom)
            #expect(aside.hasPrefix(path + ".corrupt-"))
            #expect(FileManager.default.contents(atPath: aside + "/data.mdb") == garbage)
            #expect(await store.isWritable())
            await store.close()
        }
    }

    @Test func aStoreOfAnotherFormatIsNotMisread() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await open(directory)
            await store.close()
            let environment = try LMDBEnvironment(path: directory.path + "/store", mapSize: 64 << 20, maxDatabases: 8)
            let meta = try environment.openDatabase("meta", create: true)
            try await environment.write { txn in
                try txn.put(meta, key: Array("format".utf8), value: [0, 0, 0, 99])
            }
            environment.close()
            let reopened = try await open(directory)
            #expect(reopened.recoveredFrom != nil)
            await reopened.close()
        }
    }

    @Test func aliasesOfGoneEntriesAreSwept() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            let store = try await open(directory, clock: clock)
            let raw = Digest.sha256(Array("raw request".utf8))
            #expect(await store.store(entry("aliased", at: clock.now()), for: key("kept"), alias: raw))
            #expect(try await store.sweepAliases() == 0)
            #expect(store.aliasedKey(raw) == key("kept"))
            #expect(try await store.purge(PurgeFilter(all: true)) == 1)
            #expect(try await store.sweepAliases() == 1)
            #expect(store.aliasedKey(raw) == nil)
            await store.close()
        }
    }
}
