import Foundation
import GemcacheKey
import GemcacheTestSupport
import LMDBKit
import Synchronization
import Testing

@testable import GemcacheStore

/// `store.durability` (SPEC §9): when a commit reaches the disk, and group commit sharing one commit and
/// its sync among every write queued while the previous one ran. Commits and syncs are LMDBKit's counts.
@Suite(.timeLimit(.minutes(1)))
struct DurabilityTests {
    private func open(_ directory: TemporaryDirectory, durability: StoreConfiguration.Durability) async throws -> CacheStore {
        var configuration = StoreConfiguration()
        configuration.path = directory.path + "/store"
        configuration.maxSize = 64 << 20
        configuration.durability = durability
        return try await CacheStore.open(configuration: configuration, scopeSalt: nil, logger: quietLogger)
    }

    private func entry(_ index: Int) -> CacheEntry {
        RecordSamples.entry {
            $0.body = Array("{\"answer\":\(index)}".utf8)
            $0.storedAt = CacheStore.wallClock()
            $0.expiresAt = $0.storedAt + 60_000
        }
    }

    private func key(_ index: Int) -> CacheKey {
        StoreTransferTests.key("durability \(index)")
    }

    /// `commit` syncs each commit and never needs the `unsynced` marker; `deferred` skips the syncs and
    /// keeps the marker until they are done.
    @Test(arguments: StoreConfiguration.Durability.allCases)
    func aStoredEntryIsSyncedOnlyWithCommitDurability(durability: StoreConfiguration.Durability) async throws {
        try await withTemporaryDirectory { directory in
            let store = try await open(directory, durability: durability)
            let before = store.environment.writeCounts
            #expect(await store.store(entry(0), for: key(0)))
            let after = store.environment.writeCounts
            let marker = directory.path + "/store/unsynced"
            #expect(after.commits == before.commits + 1)
            switch durability {
            case .commit:
                #expect(after.syncs == before.syncs + 1)
                #expect(!FileManager.default.fileExists(atPath: marker))
            case .deferred:
                #expect(after.syncs == before.syncs)
                #expect(FileManager.default.fileExists(atPath: marker))
                await store.syncDeferredWrites()
                #expect(store.environment.writeCounts.syncs > after.syncs)
                #expect(!FileManager.default.fileExists(atPath: marker))
            }
            await store.close()
        }
    }

    /// Every write queued while a commit runs goes into the next commit: 64 misses arriving during one
    /// commit are stored by one more commit and, with `commit` durability, one more sync.
    @Test(arguments: StoreConfiguration.Durability.allCases)
    func writesQueuedDuringACommitShareTheNextCommit(durability: StoreConfiguration.Durability) async throws {
        try await withTemporaryDirectory { directory in
            let store = try await open(directory, durability: durability)
            // As while a commit runs: writes queue up and none starts another drain of the queue.
            store.queue.withLock { $0.draining = true }
            let before = store.environment.writeCounts
            let count = 64
            await withTaskGroup(of: Bool.self) { group in
                for index in 0..<count {
                    group.addTask { await store.store(entry(index), for: key(index)) }
                }
                while store.queue.withLock({ $0.waiting.count }) < count { await Task.yield() }
                // The running commit ends: the lane drains what queued meanwhile.
                store.startDrain()
                for await stored in group { #expect(stored) }
            }
            let after = store.environment.writeCounts
            #expect(after.commits == before.commits + 1)
            #expect(after.syncs == before.syncs + (durability == .commit ? 1 : 0))
            for index in 0..<count { #expect(try store.lookup(key(index))?.body == entry(index).body) }
            await store.close()
        }
    }

    /// Writes queued when the environment closes are answered (not stored), never left waiting: their
    /// drain runs even though the writer thread has stopped.
    @Test func writesQueuedWhenTheEnvironmentClosesAreAnsweredNotStored() async throws {
        try await withTemporaryDirectory { directory in
            let store = try await open(directory, durability: .commit)
            store.queue.withLock { $0.draining = true }
            let count = 8
            await withTaskGroup(of: Bool.self) { group in
                for index in 0..<count {
                    group.addTask { await store.store(entry(index), for: key(index)) }
                }
                while store.queue.withLock({ $0.waiting.count }) < count { await Task.yield() }
                store.environment.close()
                store.startDrain()
                for await stored in group { #expect(!stored) }
            }
            #expect(await store.isWritable() == false)
        }
    }
}
