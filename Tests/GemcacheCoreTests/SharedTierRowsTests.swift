import Foundation
@testable import GemcacheCore
import GemcacheTestSupport
import PostgresNIO
import Testing

/// What the shared tier reads back from PostgreSQL is checked like the store's own records (issue #15,
/// class 2): a row whose record does not validate is a miss, and counters past Int64 or below zero
/// (another instance's older build) saturate instead of failing every push.
@Suite(.timeLimit(.minutes(2)))
struct SharedTierRowsTests {
    static let now: Int64 = 1_800_000_000_000

    @Test func damagedRowsAreMissesAndPoisonedCountersSaturate() async throws {
        try await withPostgres { postgres in
            let tier = SharedTier(settings: try SharedTierSettings(url: postgres.url, environment: [:]), logger: quietLogger, now: { Self.now })
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await tier.run() }
                #expect(await tier.connect())

                // The damaged entries are fresh at `now`: only their validation keeps them out.
                for (name, damaged, _) in RecordValidationTests.damaged {
                    let key = CacheKey(bytes: Digest.sha256(Array(name.utf8)))!
                    #expect(await tier.store(damaged, for: key), "\(name): written as is")
                    #expect(await tier.lookup(key) == nil, "\(name)")
                    switch await tier.claim(key, for: .seconds(5)) {
                    case .found: Issue.record("\(name): a claim found it")
                    case .won(let token): await tier.release(key, token: token)  // (an expired row: claimable, as it should be)
                    case .taken, .unavailable: break
                    }
                    let started = ContinuousClock.now
                    #expect(await tier.awaitEntry(key, until: .now + .seconds(30)) == nil, "\(name)")
                    // A generous bound that tells "answered at once" from "waited out the 30 s deadline".
                    #expect(ContinuousClock.now - started < .seconds(15), "\(name): no wait for an answer that will never validate")
                }
                let good = CacheKey(bytes: Digest.sha256(Array("good".utf8)))!
                #expect(await tier.store(EntryRecordTests.entry, for: good))
                #expect(await tier.lookup(good) == EntryRecordTests.entry)

                // Counters an older build left in the tier: at Int64's top and wrapped below zero.
                _ = try await tier.client.query(
                    "INSERT INTO gemcache_counters (name, value) VALUES ('saved_tokens', \(Int64.max)), ('hits', \(Int64(-5)))"
                )
                tier.enqueueCounters(["saved_tokens": 1000, "hits": 2, "misses": 3])
                await tier.pushCounters()
                #expect(tier.status.healthy && tier.status.failures == 0, "the push went through")
                tier.enqueueCounters(["saved_tokens": .max])
                let values = try #require(await tier.counterValues(prefixes: ["saved_tokens", "hits", "misses"]))
                #expect(values == ["saved_tokens": .max, "hits": 2, "misses": 3])
                group.cancelAll()
            }
        }
    }
}
