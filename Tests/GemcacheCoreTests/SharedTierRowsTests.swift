import Foundation
import GemcacheKey
import GemcacheTestSupport
import NIOCore
import PostgresNIO
import Synchronization
import Testing

@testable import GemcacheCore

/// What the shared tier reads back from PostgreSQL is checked like the store's own records (issue #15,
/// class 2): a row whose record does not validate is a miss, and counters past Int64 or below zero
/// (another instance's older build) saturate instead of failing every push.
@Suite(.timeLimit(.minutes(2)))
struct SharedTierRowsTests {
    static let now: Int64 = 1_800_000_000_000

    /// The result of `step` on a healthy tier. Every operation of the tier is bounded by 1 s, and on a
    /// loaded machine one can time out and degrade the tier (a lookup then misses for that reason): the
    /// step then runs again once the tier has reconnected, so no answer checked here is a degraded tier's.
    /// Checks for cancellation first: once the test is cancelled (its time limit) the tier's pool stops,
    /// and an operation started after that would wait for a connection that never comes.
    static func healthy<R>(_ tier: SharedTier, _ step: () async throws -> R) async throws -> R {
        for _ in 0..<30 {
            try Task.checkCancellation()
            guard tier.status.healthy else {
                // Real time is the subject: a real PostgreSQL server, which may still be starting.
                if await !tier.connect() { try await Task.sleep(for: .milliseconds(200)) }
                continue
            }
            let result = try await step()
            if tier.status.healthy { return result }
        }
        throw CancellationError()
    }

    @Test func damagedRowsAreMissesAndPoisonedCountersSaturate() async throws {
        try await withPostgres { postgres in
            let damagedKeys = Mutex<[CacheKey]>([])
            let tier = SharedTier(settings: try SharedTierSettings(url: postgres.url, environment: [:]), logger: quietLogger, now: { Self.now }) {
                key in damagedKeys.withLock { $0.append(key) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await tier.run() }

                // Damaged entries (all of them are tried on the store's read in RecordValidationTests),
                // fresh at `now`: only their validation keeps them out.
                let names = ["a second answer in the header block", "a Set-Cookie line", "stored_at -2^63", "a status of 1000"]
                #expect(RecordSamples.damaged.filter { names.contains($0.0) }.count == names.count)
                for (name, damaged, _) in RecordSamples.damaged where names.contains(name) {
                    let key = CacheKey(bytes: Digest.sha256(Array(name.utf8)))!
                    #expect(try await Self.healthy(tier) { await tier.store(damaged, for: key) }, "\(name): written as is")
                    #expect(try await Self.healthy(tier) { await tier.lookup(key) } == nil, "\(name)")
                    switch try await Self.healthy(tier, { await tier.claim(key, for: .seconds(5)) }) {
                    case .found: Issue.record("\(name): a claim found it")
                    case .won(let token): await tier.release(key, token: token)  // (an expired row: claimable, as it should be)
                    case .taken, .unavailable: break
                    }
                    let waited = try await Self.healthy(tier) {
                        let started = ContinuousClock.now
                        #expect(await tier.awaitEntry(key, until: .now + .seconds(30)) == nil, "\(name)")
                        return ContinuousClock.now - started
                    }
                    // A generous bound that tells "answered at once" from "waited out the 30 s deadline".
                    #expect(waited < .seconds(15), "\(name): no wait for an answer that will never validate")
                }
                let good = CacheKey(bytes: Digest.sha256(Array("good".utf8)))!
                #expect(try await Self.healthy(tier) { await tier.store(RecordSamples.entry, for: good) })
                #expect(try await Self.healthy(tier) { await tier.lookup(good) } == RecordSamples.entry)
                #expect(damagedKeys.withLock { $0 }.isEmpty, "records that fail validation are not damaged bytes")

                // One bit of the good row's body flipped in PostgreSQL: a miss on every read, reported as damaged.
                try await Self.healthy(tier) {
                    _ = try await tier.client.query(
                        """
                        UPDATE gemcache_entries SET record = set_byte(record, length(record) - 2, get_byte(record, length(record) - 2) # 1)
                        WHERE key = \(ByteBuffer(bytes: good.bytes))
                        """
                    )
                }
                #expect(try await Self.healthy(tier) { await tier.lookup(good) } == nil)
                #expect(try await Self.healthy(tier) { await tier.awaitEntry(good, until: .now + .seconds(30)) } == nil)
                #expect(damagedKeys.withLock { $0 } == [good, good])

                // Counters an older build left in the tier: at Int64's top and wrapped below zero.
                try await Self.healthy(tier) {
                    _ = try await tier.client.query(
                        "INSERT INTO gemcache_counters (name, value) VALUES ('saved_tokens', \(Int64.max)), ('hits', \(Int64(-5)))"
                    )
                }
                tier.enqueueCounters(["saved_tokens": 1000, "hits": 2, "misses": 3])
                // A push that fails degrades the tier (and keeps its deltas); healthy after it, it went through.
                try await Self.healthy(tier) { await tier.pushCounters() }
                let stored = try await Self.healthy(tier) { await tier.counterValues(prefixes: ["saved_tokens", "hits", "misses"]) }
                #expect(stored == ["saved_tokens": .max, "hits": 2, "misses": 3], "the push saturated in PostgreSQL instead of failing")
                tier.enqueueCounters(["saved_tokens": .max])
                let values = try await Self.healthy(tier) { await tier.counterValues(prefixes: ["saved_tokens", "hits", "misses"]) }
                #expect(values == ["saved_tokens": .max, "hits": 2, "misses": 3])
                group.cancelAll()
            }
        }
    }
}
