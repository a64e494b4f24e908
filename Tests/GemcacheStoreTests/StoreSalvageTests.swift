import Foundation
import GemcacheKey
import GemcacheTestSupport
import Testing

@testable import GemcacheStore

/// `gemcache salvage` on stores damaged on purpose (issue 18 item 3): what reads back whole and passes
/// its checksum is copied, identical, under the rules of an import; nothing damaged is.
@Suite(.timeLimit(.minutes(1)))
struct StoreSalvageTests {
    static let now = StoreTransferTests.now

    /// Per-key entries small and large (bodies of 10 KiB live in overflow pages), a few shared ones, and
    /// enough of them for a B-tree of several levels.
    static func sampleEntries() -> [(CacheKey, CacheEntry)] {
        (0..<400).map { index in
            let body = index % 50 == 0 ? "{\"big\":\(index),\"pad\":\"\(String(repeating: "x\(index)-", count: 2000))\"}" : "{\"answer\":\(index)}"
            let entry = RecordSamples.entry {
                $0.body = Array(body.utf8)
                $0.storedAt = now - 5000 + Int64(index)
                $0.expiresAt = now + 86_400_000
                $0.scope = index % 7 == 0 ? .shared : .perKey
            }
            return (StoreTransferTests.key("entry-\(index)"), entry)
        }
    }

    /// A proxy's store at `path` holding `entries`, closed; returns its scope salt.
    static func makeSource(_ path: String, _ entries: [(CacheKey, CacheEntry)]) async throws -> [UInt8] {
        let source = try await StoreTransferTests.proxyStore(path)
        #expect(await source.storeAll(entries) == entries.count)
        let salt = try #require(try await source.storedScopeSalt())
        await source.close()
        return salt
    }

    /// Changes the bytes of the data file under `folder`.
    static func damage(_ folder: String, _ change: (inout [UInt8]) throws -> Void) throws {
        let url = URL(fileURLWithPath: folder + "/data.mdb")
        var bytes = [UInt8](try Data(contentsOf: url))
        try change(&bytes)
        try Data(bytes).write(to: url)
    }

    /// Flips a byte in every copy of the body of `entry` in `bytes`; returns how many copies there were.
    static func flipBody(of entry: CacheEntry, in bytes: inout [UInt8]) -> Int {
        let body = entry.body
        var copies = 0
        var start = 0
        while start + body.count <= bytes.count {
            if bytes[start] == body[0], bytes[start..<(start + body.count)].elementsEqual(body) {
                bytes[start + body.count / 2] ^= 0x20
                copies += 1
                start += body.count
            } else {
                start += 1
            }
        }
        return copies
    }

    static func salvage(
        _ folder: String,
        into target: CacheStore,
        maxEntrySize: Int = 16 << 20,
        saltFromEnvironment: [UInt8]? = nil
    ) async throws -> StoreSalvage.Summary {
        try await StoreSalvage.salvage(
            dataFile: folder + "/data.mdb",
            into: target,
            maxEntrySize: maxEntrySize,
            saltFromEnvironment: saltFromEnvironment,
            assumeShared: false
        )
    }

    @Test func aStoreWithBothMetaPagesZeroedGivesBackEveryEntryAndItsSalt() async throws {
        try await withTemporaryDirectory { dir in
            let samples = Self.sampleEntries()
            let salt = try await Self.makeSource(dir.path + "/aside", samples)
            try Self.damage(dir.path + "/aside") { bytes in
                for index in 0..<(2 * 4096) { bytes[index] = 0 }
            }
            var aside = StoreConfiguration()
            aside.path = dir.path + "/aside"
            await #expect(throws: StoreError.self) { _ = try await CacheStore.openForCommand(configuration: aside, create: false) }

            let target = try await StoreTransferTests.commandStore(dir.path + "/live")
            let summary = try await Self.salvage(dir.path + "/aside", into: target)
            #expect(summary.kept == samples.count)
            #expect(summary.skipped == 0)
            #expect(summary.salt == .adopted)
            #expect(try await target.storedScopeSalt() == salt)
            let salvaged = try await StoreTransferTests.allEntries(target)
            #expect(salvaged == Dictionary(uniqueKeysWithValues: samples))
            await target.close()
        }
    }

    @Test func recordsWithChangedBytesAreCountedAndNeverCopied() async throws {
        try await withTemporaryDirectory { dir in
            let samples = Self.sampleEntries()
            _ = try await Self.makeSource(dir.path + "/aside", samples)
            // Three small records and one in an overflow run.
            let damaged = [1, 2, 3, 100].map { samples[$0] }
            try Self.damage(dir.path + "/aside") { bytes in
                for (_, entry) in damaged { #expect(Self.flipBody(of: entry, in: &bytes) > 0) }
            }

            let target = try await StoreTransferTests.commandStore(dir.path + "/live")
            let summary = try await Self.salvage(dir.path + "/aside", into: target)
            #expect(summary.damaged == damaged.count)
            #expect(summary.kept == samples.count - damaged.count)
            let salvaged = try await StoreTransferTests.allEntries(target)
            for (key, entry) in samples {
                if damaged.contains(where: { $0.0 == key }) {
                    #expect(salvaged[key] == nil)
                } else {
                    #expect(salvaged[key] == entry)
                }
            }
            await target.close()
        }
    }

    @Test func theNewestIntactCopyOfAKeyWinsAndANewerLiveEntryIsLeftAsItIs() async throws {
        try await withTemporaryDirectory { dir in
            var samples = Self.sampleEntries()
            let (renewedKey, first) = samples[5]
            // Proxies given their salt by the environment: the salts match although the live store is not empty.
            let salt = Array("the team's salt".utf8)
            let source = try await StoreTransferTests.proxyStore(dir.path + "/aside", salt: salt)
            #expect(await source.storeAll(samples) == samples.count)
            // The key is stored again, newer: LMDB frees the page of the first copy, which keeps its bytes.
            var renewed = first
            renewed.body = Array("{\"answer\":\"renewed\"}".utf8)
            renewed.storedAt = first.storedAt + 60_000
            #expect(await source.store(renewed, for: renewedKey))
            samples[5].1 = renewed
            await source.close()

            // The live store already answered one key again since (a newer entry) and one of the
            // salvaged ones (an older entry, which the salvaged copy replaces).
            let target = try await StoreTransferTests.commandStore(dir.path + "/live")
            let (newerKey, newerSalvaged) = samples[8]
            var newerLive = newerSalvaged
            newerLive.body = Array("{\"answer\":\"answered again\"}".utf8)
            newerLive.storedAt = newerSalvaged.storedAt + 1000
            let (olderKey, olderSalvaged) = samples[9]
            var olderLive = olderSalvaged
            olderLive.body = Array("{\"answer\":\"older\"}".utf8)
            olderLive.storedAt = olderSalvaged.storedAt - 1000
            #expect(await target.storeAll([(newerKey, newerLive), (olderKey, olderLive)]) == 2)

            let summary = try await Self.salvage(dir.path + "/aside", into: target, saltFromEnvironment: salt)
            #expect(summary.salt == .matches)
            #expect(summary.kept == samples.count)
            let salvaged = try await StoreTransferTests.allEntries(target)
            #expect(salvaged[renewedKey] == renewed)
            #expect(salvaged[newerKey] == newerLive)
            #expect(salvaged[olderKey] == olderSalvaged)
            await target.close()
        }
    }

    @Test func theRulesOfAnImportApply() async throws {
        try await withTemporaryDirectory { dir in
            let samples = Self.sampleEntries()
            let source = try await StoreTransferTests.proxyStore(dir.path + "/aside")
            #expect(await source.storeAll(samples) == samples.count)
            // A record of version 2, from before records had checksums.
            let unverifiable = RecordSamples.olderRecord(RecordSamples.entry, version: 2)
            let oldKey = StoreTransferTests.key("version 2")
            let entry = RecordSamples.entry
            #expect(
                await source.submit(
                    .put(
                        key: oldKey.bytes,
                        record: unverifiable,
                        storedAt: entry.storedAt,
                        expiresAt: entry.expiresAt,
                        alias: nil,
                        keepingNewer: false
                    )
                )
            )
            await source.close()

            // A live store with another salt and entries of its own: per-key entries cannot be found there.
            let target = try await StoreTransferTests.proxyStore(dir.path + "/live")
            #expect(await target.storeAll([(StoreTransferTests.key("live"), samples[0].1)]) == 1)
            let bigBodies = samples.filter { $0.1.body.count > 4096 }
            let summary = try await Self.salvage(dir.path + "/aside", into: target, maxEntrySize: 4096)
            let shared = samples.filter { $0.1.scope == .shared && $0.1.body.count <= 4096 }
            #expect(summary.salt == .differs)
            #expect(summary.unverifiable == 1)
            #expect(summary.tooLarge == bigBodies.count)
            #expect(summary.otherSalt == samples.count - bigBodies.count - shared.count)
            #expect(summary.kept == shared.count)
            let salvaged = try await StoreTransferTests.allEntries(target)
            #expect(salvaged.count == shared.count + 1)
            for (key, entry) in shared { #expect(salvaged[key] == entry) }
            #expect(salvaged[oldKey] == nil)
            await target.close()
        }
    }
}
