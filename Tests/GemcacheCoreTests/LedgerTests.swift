import Foundation
import GemcacheTestSupport
import LMDBKit
import Synchronization
import Testing

@testable import GemcacheCore
@testable import GemcacheStore

/// The ledger's arithmetic on a real store, with a clock the test moves.
@Suite(.timeLimit(.minutes(1)))
struct LedgerTests {
    final class ManualClock: Sendable {
        let milliseconds: Mutex<Int64>
        init(_ iso: String) { milliseconds = Mutex(Int64(ISO8601DateFormatter().date(from: iso)!.timeIntervalSince1970 * 1000)) }
        var now: @Sendable () -> Int64 { { self.milliseconds.withLock { $0 } } }
        func set(_ iso: String) { milliseconds.withLock { $0 = Int64(ISO8601DateFormatter().date(from: iso)!.timeIntervalSince1970 * 1000) } }
        func advance(seconds: Int64) { milliseconds.withLock { $0 += seconds * 1000 } }
    }

    static let flash = "gemini-2.5-flash"
    static let someone = Attribution(namespace: nil, client: "c0ffee000001")
    static let custom = "gemini-custom-model"

    static var configuration: ProxyConfiguration {
        var configuration = ProxyConfiguration()
        configuration.limits.models = [flash: .init(rpm: 10, tpm: 250_000, rpd: 250)]
        configuration.prices = [flash: .init(input: 0.30, output: 2.50)]
        return configuration
    }

    private func open(_ directory: TemporaryDirectory, clock: ManualClock) async throws -> (CacheStore, Ledger) {
        var settings = ProxyConfiguration.Store()
        settings.path = directory.path + "/store"
        settings.maxSize = 64 << 20
        let store = try await CacheStore.open(configuration: settings, scopeSalt: nil, logger: quietLogger, now: clock.now)
        return (store, Ledger(store: store, configuration: Self.configuration, now: clock.now))
    }

    /// flash: 3 misses, 5 hits, 2 coalesced, 1 bypass (4 upstream calls); custom: 1 miss, 1 hit, 1 upstream
    /// error (2 upstream calls).
    private func script(_ ledger: Ledger) {
        let flashTokens = TokenUsage(prompt: 10, total: 40)
        for outcome in [CacheOutcome.miss, .miss, .miss, .bypass] {
            ledger.recordUpstreamCall(model: Self.flash, status: 200, tokens: flashTokens, attribution: Self.someone)
            ledger.recordAnswer(model: Self.flash, outcome: outcome, status: 200, tokens: flashTokens, attribution: Self.someone)
        }
        for outcome in [CacheOutcome.hit, .hit, .hit, .hit, .hit, .coalesced, .coalesced] {
            ledger.recordAnswer(model: Self.flash, outcome: outcome, status: 200, tokens: flashTokens, attribution: Self.someone)
        }
        let customTokens = TokenUsage(prompt: 5, total: 25)
        ledger.recordUpstreamCall(model: Self.custom, status: 200, tokens: customTokens, attribution: Self.someone)
        ledger.recordAnswer(model: Self.custom, outcome: .miss, status: 200, tokens: customTokens, attribution: Self.someone)
        ledger.recordAnswer(model: Self.custom, outcome: .hit, status: 200, tokens: customTokens, attribution: Self.someone)
        ledger.recordUpstreamCall(model: Self.custom, status: 400, tokens: .zero, attribution: Self.someone)
        ledger.recordAnswer(model: Self.custom, outcome: .miss, status: 400, tokens: .zero, attribution: Self.someone)
    }

    @Test func everyFieldAddsUp() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock("2026-11-29T20:00:00Z")
            let (store, ledger) = try await open(directory, clock: clock)
            script(ledger)
            let document = try await ledger.document()
            let json = document.json
            #expect(json["requests"] as? Int64 == 14)
            #expect(json["hits"] as? Int64 == 6)
            #expect(json["coalesced"] as? Int64 == 2)
            #expect(json["misses"] as? Int64 == 4)
            #expect(json["bypassed"] as? Int64 == 1)
            #expect(json["refreshed"] as? Int64 == 0)
            #expect(json["stale"] as? Int64 == 0)
            #expect(json["errors"] as? Int64 == 1)
            #expect(json["hit_ratio"] as? Double == 0.6667)
            #expect(json["saved_requests"] as? Int64 == 8)
            #expect(json["saved_tokens"] as? Int64 == 305)
            #expect(json["saved_items"] as? Int64 == 0)
            #expect(json["upstream_requests"] as? Int64 == 6)
            let outcomes = ["hits", "coalesced", "misses", "refreshed", "bypassed", "stale", "errors"]
            #expect(outcomes.reduce(0) { $0 + (json[$1] as? Int64 ?? 0) } == 14, "each request counted once")
            // 70 prompt tokens at $0.30 and 210 other tokens at $2.50 per million; the custom model has no price.
            #expect(json["saved_usd"] as? Double == 0.000546)
            #expect(json["quota_day"] as? String == "2026-11-29")
            #expect(json["quota_day_resets_at"] as? String == "2026-11-30T08:00:00Z")
            #expect(json["since"] as? String == "2026-11-29T20:00:00Z")

            let models = try #require(json["models"] as? [String: [String: Any]])
            let flash = try #require(models[Self.flash])
            #expect(flash["requests"] as? Int64 == 11)
            #expect(flash["hits"] as? Int64 == 5)
            #expect(flash["coalesced"] as? Int64 == 2)
            #expect(flash["misses"] as? Int64 == 3)
            #expect(flash["upstream_requests"] as? Int64 == 4)
            #expect(flash["upstream_tokens"] as? Int64 == 160)
            #expect(flash["saved_requests"] as? Int64 == 7)
            #expect(flash["saved_tokens"] as? Int64 == 280)
            #expect(flash["upstream_requests_minute"] as? Int64 == 4)
            #expect(flash["upstream_tokens_minute"] as? Int64 == 160)
            #expect(flash["upstream_requests_today"] as? Int64 == 4)
            #expect(flash["upstream_tokens_today"] as? Int64 == 160)
            #expect(flash["saved_requests_today"] as? Int64 == 7)
            #expect(flash["saved_tokens_today"] as? Int64 == 280)
            #expect(flash["saved_usd"] as? Double == 0.000546)
            let limits = try #require(flash["free_tier"] as? [String: Any])
            #expect(limits["rpm"] as? Int == 10 && limits["rpd"] as? Int == 250 && limits["tpm"] as? Int == 250_000)
            #expect(flash["rpd_used_pct"] as? Double == 1.6)
            #expect(flash["rpd_without_cache_pct"] as? Double == 4.4)

            let custom = try #require(models[Self.custom])
            #expect(custom["requests"] as? Int64 == 3)
            #expect(custom["hits"] as? Int64 == 1)
            #expect(custom["misses"] as? Int64 == 1, "the upstream error is an error, not a miss")
            #expect(custom["errors"] as? Int64 == 1)
            #expect(custom["upstream_requests_today"] as? Int64 == 2)
            #expect(custom["saved_requests_today"] as? Int64 == 1)
            let unknown = try #require(custom["free_tier"] as? [String: Any])
            #expect(unknown["rpm"] is NSNull && unknown["rpd"] is NSNull && unknown["tpm"] is NSNull)
            #expect(custom["rpd_used_pct"] is NSNull)
            #expect(custom["rpd_without_cache_pct"] is NSNull)
            #expect(custom["saved_usd"] is NSNull)
            await store.close()
        }
    }

    @Test func minuteAndDayWindowsMoveOnAndTotalsSurviveAReopen() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock("2026-03-08T06:59:30Z")  // 22:59:30 PST on March 7
            var (store, ledger) = try await open(directory, clock: clock)
            script(ledger)
            #expect(try await ledger.document().quotaDay.id == "2026-03-07")

            clock.advance(seconds: 60)
            var flash = try #require(try await ledger.document().models[Self.flash])
            #expect(flash.upstreamRequestsMinute == 0 && flash.upstreamTokensMinute == 0)
            #expect(flash.upstreamRequestsToday == 4)
            let history = try await ledger.history()
            #expect(history.hits.count == Ledger.historyMinutes)
            #expect(history.hits.last == 0 && history.misses.last == 0)
            #expect(history.hits[history.hits.count - 2] == 8)
            #expect(history.misses[history.misses.count - 2] == 4)
            #expect(history.firstMinute == clock.now() / 60_000 - Int64(Ledger.historyMinutes) + 1)

            clock.set("2026-03-08T08:00:00Z")  // midnight PST: the spring-forward day begins
            var document = try await ledger.document()
            #expect(document.quotaDay.id == "2026-03-08")
            #expect(document.json["quota_day_resets_at"] as? String == "2026-03-09T07:00:00Z")
            flash = try #require(document.models[Self.flash])
            #expect(flash.upstreamRequestsToday == 0 && flash.savedRequestsToday == 0)
            #expect(flash.rpdUsedPct == 0 && flash.rpdWithoutCachePct == 0)
            #expect(flash.counts["upstream_requests"] == 4)

            await store.close()
            (store, ledger) = try await open(directory, clock: clock)
            document = try await ledger.document()
            #expect(document.totals["requests"] == 14)
            #expect(document.savedRequests == 8)
            #expect(document.hitRatio == 0.6667)
            #expect(document.json["since"] as? String == "2026-03-08T06:59:30Z")
            await store.close()
        }
    }

    @Test func pruneDropsMinutesOlderThanADayAndOldDays() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock("2026-11-29T20:00:00Z")
            let (store, ledger) = try await open(directory, clock: clock)
            script(ledger)
            await store.flushCounters()
            clock.advance(seconds: 36 * 86_400)
            ledger.recordAnswer(model: Self.flash, outcome: .hit, status: 200, tokens: .zero, attribution: Self.someone)
            await store.flushCounters()
            await ledger.prune()
            let minutes = try await store.counterValues(prefixes: ["minute/"])
            let thisMinute = Counter.minute(Counter.epochMinute(clock.now()))
            #expect(minutes.keys.allSatisfy { $0.hasPrefix(thisMinute) })
            #expect(minutes[thisMinute + "hits"] == 1 && minutes[thisMinute + "ns//hits"] == 1)
            let hours = try await store.counterValues(prefixes: ["hour/"]).keys
            #expect(Set(hours.map { $0.prefix(16) }).count == 2)  // 36 days back is within the 90 kept
            let days = try await store.counterValues(prefixes: ["day/"]).keys
            #expect(!days.isEmpty)
            #expect(days.allSatisfy { $0.hasPrefix("day/2027-01-04/") })
            #expect(try await store.counterValues(prefixes: ["model/"])["model/\(Self.flash)/hits"] == 6)
            await store.close()
        }
    }

    /// Namespaces and clients are counted apart, each answer once under its own; past 1000 names in
    /// all (or 200 in one minute) the rest add up under `other`, and the names already in the store
    /// count toward the bound after a restart.
    @Test func namespacesAndClientsAreCountedApartAndBounded() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock("2026-11-29T20:00:00Z")
            var (store, ledger) = try await open(directory, clock: clock)
            let teamA = Attribution(namespace: "team-a", client: "aaaaaaaaaaaa")
            let noNamespace = Attribution(namespace: nil, client: "bbbbbbbbbbbb")
            ledger.recordAnswer(model: Self.flash, outcome: .miss, status: 200, tokens: .zero, attribution: teamA)
            ledger.recordUpstreamCall(model: Self.flash, status: 200, tokens: .zero, attribution: teamA)
            ledger.recordAnswer(model: Self.flash, outcome: .hit, status: 200, tokens: .init(prompt: 3, total: 7), attribution: teamA, count: 2)
            ledger.recordAnswer(model: Self.flash, outcome: .hit, status: 200, tokens: .zero, attribution: noNamespace)
            ledger.recordError(model: Self.flash, attribution: noNamespace)
            var document = try await ledger.document()
            #expect(document.namespaces["team-a"]?.counts == ["requests": 3, "misses": 1, "hits": 2, "upstream_requests": 1, "saved_tokens": 7])
            #expect(document.namespaces[""]?.counts == ["requests": 2, "hits": 1, "errors": 1])
            #expect(document.clients["aaaaaaaaaaaa"]?.hitRatio == 0.6667)
            #expect(document.clients["bbbbbbbbbbbb"]?.savedRequests == 1)
            #expect(Set(document.clients.keys) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"])

            // 998 more clients over five minutes (200 a minute at most), then one more: `other`.
            for index in 0..<998 {
                if index % CountedNames.perMinute == 0 { clock.advance(seconds: 60) }
                ledger.recordAnswer(
                    model: Self.flash,
                    outcome: .hit,
                    status: 200,
                    tokens: .zero,
                    attribution: .init(namespace: nil, client: "client-\(index)")
                )
            }
            clock.advance(seconds: 60)
            ledger.recordAnswer(
                model: Self.flash,
                outcome: .hit,
                status: 200,
                tokens: .zero,
                attribution: .init(namespace: nil, client: "one-too-many")
            )
            ledger.recordAnswer(model: Self.flash, outcome: .hit, status: 200, tokens: .zero, attribution: teamA)
            document = try await ledger.document()
            #expect(document.clients.count == CountedNames.limit + 1)
            #expect(document.clients[CountedNames.other]?.counts["hits"] == 1 && document.clients["one-too-many"] == nil)
            #expect(document.clients["aaaaaaaaaaaa"]?.counts["hits"] == 3)

            // In one minute, 200 names at most: the 201st new namespace is `other` for that minute.
            clock.advance(seconds: 60)
            for index in 0...CountedNames.perMinute {
                ledger.recordAnswer(
                    model: Self.flash,
                    outcome: .miss,
                    status: 200,
                    tokens: .zero,
                    attribution: .init(namespace: "ns-\(index)", client: "aaaaaaaaaaaa")
                )
            }
            document = try await ledger.document()
            #expect(document.namespaces["ns-\(CountedNames.perMinute)"] == nil && document.namespaces[CountedNames.other]?.counts["misses"] == 1)

            await store.flushCounters()
            await store.close()
            (store, ledger) = try await open(directory, clock: clock)
            await ledger.learnCountedNames()
            clock.advance(seconds: 60)
            ledger.recordAnswer(
                model: Self.flash,
                outcome: .hit,
                status: 200,
                tokens: .zero,
                attribution: .init(namespace: nil, client: "after-restart")
            )
            document = try await ledger.document()
            #expect(document.clients["after-restart"] == nil && document.clients[CountedNames.other]?.counts["hits"] == 2)
            await store.close()
        }
    }

    /// A window adds up the minutes it holds (all breakdowns), or the hours past the kept minutes
    /// (totals and models); `since` and `until` take durations back from now and RFC 3339 times.
    @Test func windowsAddUpThePeriodsTheyHold() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock("2026-11-29T20:00:30Z")
            let (store, ledger) = try await open(directory, clock: clock)
            let early = Attribution(namespace: "early", client: "aaaaaaaaaaaa")
            ledger.recordAnswer(model: Self.flash, outcome: .miss, status: 200, tokens: .zero, attribution: early)
            await store.flushCounters()
            clock.set("2026-11-29T20:10:00Z")
            let late = Attribution(namespace: "late", client: "bbbbbbbbbbbb")
            ledger.recordAnswer(model: Self.flash, outcome: .hit, status: 200, tokens: .init(prompt: 1, total: 5), attribution: late)
            ledger.recordAnswer(model: Self.custom, outcome: .hit, status: 200, tokens: .zero, attribution: late)

            func window(_ since: String?, _ until: String?) throws -> StatsWindow? {
                try StatsWindow.parse(since: since, until: until, now: clock.now())
            }
            var document = try await ledger.document(window: try window("5m", nil))
            #expect(document.totals["requests"] == 2 && document.hits == 2 && document.misses == 0)
            #expect(Set(document.namespaces.keys) == ["late"] && Set(document.clients.keys) == ["bbbbbbbbbbbb"])
            #expect(document.models[Self.flash]?.counts["saved_tokens"] == 5 && document.models[Self.custom]?.counts["hits"] == 1)
            #expect(document.json["since"] as? String == "2026-11-29T20:05:00Z" && document.json["until"] as? String == "2026-11-29T20:11:00Z")

            document = try await ledger.document(window: try window("2026-11-29T20:00:59Z", "2026-11-29T20:01:00Z"))
            #expect(document.totals["requests"] == 1 && document.misses == 1 && Set(document.namespaces.keys) == ["early"])
            document = try await ledger.document(window: try window("9m", "1m"))
            #expect(document.totals["requests"] ?? 0 == 0 && document.namespaces.isEmpty)
            #expect(document.models.values.allSatisfy { $0.counts.isEmpty })  // only today's counts

            // Three days back: by the hour, totals and models only.
            document = try await ledger.document(window: try window("3d", nil))
            #expect(document.window?.resolution == .hour && document.totals["requests"] == 3 && document.namespaces.isEmpty)
            #expect(document.models[Self.flash]?.counts["requests"] == 2)

            for (since, until, parameter) in [
                ("yesterday", nil, "since"), ("100d", nil, "since"), ("1m", "5m", "since"), ("2099-01-01T00:00:00Z", nil, "since"),
                (nil, "soon", "until"),
            ] {
                let error = #expect(throws: StatsWindowError.self) { try window(since, until) }
                #expect(error?.parameter == parameter)
            }
            #expect(try window(nil, nil) == nil)
            await store.close()
        }
    }

    /// Issue #15, class 11: counters past Int64, stored by an older build (`Int64.max`, or wrapped below
    /// zero), neither trap nor go negative: sums saturate, a negative stored value reads as 0, and the
    /// document, the metrics and the chart still come out.
    @Test func poisonedCountersSaturateAndNeverStopAReport() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock("2026-11-29T20:00:00Z")
            let (store, ledger) = try await open(directory, clock: clock)
            let minute = Counter.epochMinute(clock.now())
            let poisoned: [(String, Int64)] = [
                ("saved_tokens", .max), ("hits", .max), ("coalesced", .max),
                ("model/\(Self.flash)/saved_tokens", .max), ("model/\(Self.flash)/hits", -5),
                ("minute/\(Counter.paddedPeriod(minute))/hits", .max), ("misses", .min),
            ]
            // Written as an older build left them, around the saturating write path.
            let counters = try store.environment.openDatabase("counters", create: false)
            try await store.environment.write { txn in
                for (name, value) in poisoned {
                    try txn.put(
                        counters,
                        key: Array(name.utf8),
                        value: (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(bitPattern: value) >> (UInt64($0) * 8)) }
                    )
                }
            }
            let biggest = TokenUsage(prompt: TokenUsage.range.upperBound, total: TokenUsage.range.upperBound)
            for _ in 0..<3 {
                ledger.recordAnswer(model: Self.flash, outcome: .hit, status: 200, tokens: biggest, attribution: Self.someone)
                ledger.recordAnswer(model: Self.flash, outcome: .coalesced, status: 200, tokens: biggest, attribution: Self.someone)
            }
            let before = try await ledger.document()  // unflushed deltas added to the stored values
            await store.flushCounters()
            let after = try await ledger.document()
            for document in [before, after] {
                #expect(document.totals["saved_tokens"] == .max && document.hits == .max && document.misses == 0)
                #expect(document.savedRequests == .max && document.hitRatio == 1)
                #expect(document.models[Self.flash]?.counts["hits"] == 3)
                #expect(document.models[Self.flash]?.counts["saved_tokens"] == .max)
                #expect(document.models[Self.flash]?.savedRequests == 6)
            }
            let exposition = ledger.metrics.exposition(after)
            #expect(exposition.contains("gemcache_saved_tokens_total 9223372036854775807"))
            #expect(exposition.contains("gemcache_misses_total 0"))
            #expect(try await ledger.history().hits.last == .max)
            _ = try after.jsonData()
            await store.close()
        }
    }

    /// Every counter's name is the one stores already hold (a store written by an earlier build reads the same).
    @Test func counterNamesAreTheStoredOnes() {
        let names: [Counter: String] = [
            .requests: "requests", .hits: "hits", .coalesced: "coalesced", .misses: "misses", .refreshed: "refreshed",
            .bypassed: "bypassed", .stale: "stale", .errors: "errors", .rejected: "rejected", .upstreamRequests: "upstream_requests",
            .upstreamTokens: "upstream_tokens", .savedRequests: "saved_requests", .savedTokens: "saved_tokens",
            .savedPromptTokens: "saved_prompt_tokens", .savedItems: "saved_items", .damaged: "damaged", .evictions: "evictions",
            .aliasDrops: "alias_drops",
        ]
        for (kind, name) in names {
            #expect(Counter.total(kind) == name)
            #expect(Counter.model("m", kind) == "model/m/" + name)
            #expect(Counter.day("2026-11-29", model: "m", kind) == "day/2026-11-29/model/m/" + name)
            #expect(Counter.namespace("team-a", kind) == "ns/team-a/" + name && Counter.namespace("", kind) == "ns//" + name)
            #expect(Counter.client("c0ffee000001", kind) == "client/c0ffee000001/" + name)
            // The copies of a minute and an hour (the all-time name under the period's prefix).
            #expect(Counter.minute(29_000_000) + Counter.model("m", kind) == "minute/0029000000/model/m/" + name)
            #expect(Counter.hour(483_333) + Counter.total(kind) == "hour/0000483333/" + name)
            #expect(Counter.upstreamKey("sha256:ab", kind) == "key/sha256:ab/" + name)
        }
        #expect(Counter(.partial) == .misses && Counter(.refresh) == .refreshed && Counter(.bypass) == .bypassed)
        #expect(
            Counter.totals.map(Counter.total) == [
                "requests", "hits", "coalesced", "misses", "refreshed", "bypassed", "stale", "errors", "rejected", "upstream_requests",
                "saved_tokens", "saved_items", "damaged",
            ]
        )
    }

    @Test func countsPastEitherEndSaturate() {
        #expect(Counter.sum(.max, 1) == .max)
        #expect(Counter.sum(.max, .max) == .max)
        #expect(Counter.sum(.min, 3) == 3)
        #expect(Counter.sum(-1, -1) == 0)
        #expect(Counter.sum(40, 2) == 42)
    }

    /// Usage counts from the upstream's JSON are whole numbers clamped to 0...UInt32.max at parse.
    @Test func usageFromAnAnswerIsClampedWhereItIsParsed() throws {
        let cases: [(String, TokenUsage)] = [
            (
                #"{"usageMetadata":{"promptTokenCount":9223372036854775807,"totalTokenCount":18446744073709551615}}"#,
                .init(prompt: 4_294_967_295, total: 4_294_967_295)
            ),
            (#"{"usageMetadata":{"promptTokenCount":-9223372036854775808,"totalTokenCount":-1}}"#, .zero),
            (#"{"usageMetadata":{"promptTokenCount":1e300,"totalTokenCount":12.5}}"#, .init(prompt: 4_294_967_295, total: 0)),
            (#"{"usageMetadata":{"promptTokenCount":"12","totalTokenCount":[1]}}"#, .zero),
            (#"{"usageMetadata":{"promptTokenCount":7,"totalTokenCount":4294967296}}"#, .init(prompt: 7, total: 4_294_967_295)),
            (#"{"usage":{"prompt_tokens":-0.5,"total_tokens":30.0}}"#, .init(prompt: 0, total: 30)),
            (#"{"usageMetadata":{"promptTokenCount":3,"totalTokenCount":10}}"#, .init(prompt: 3, total: 10)),
        ]
        for (json, expected) in cases {
            #expect(StorePolicy.usage(StorePolicy.parse(Array(json.utf8))) == expected, "\(json)")
        }
    }
}
