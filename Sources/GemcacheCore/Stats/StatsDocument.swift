public import Foundation
import GemcacheStore

/// The stats of SPEC §7 at one moment: what `GET /_gemcache/stats`, `GET /metrics`, the dashboard
/// and `gemcache stats` all show.
public struct StatsDocument: Sendable {
    /// When counting began in this store, or the window's start.
    public var since: Date
    /// The span the counts add up, when they are a window's (`?since=`, `?until=`).
    public var window: StatsWindow?
    /// The plain counters by name (`requests`, `hits`, `coalesced`, … `saved_items`).
    public var totals: [String: Int64]
    /// USD saved over every model with a price, to six decimals.
    public var savedUSD: Double
    public var entries: Int
    public var storeBytes: Int
    public var storeRecoveredFrom: String?
    /// What `store.on_corrupt: salvage` did at start-up, if it ran.
    public var storeSalvage: StartupSalvage?
    public var quotaDay: QuotaDay
    /// Per model, by id.
    public var models: [String: ModelStats]
    /// Per namespace (`""`: requests without one); at most 1000 names, the rest under `other`.
    public var namespaces: [String: GroupStats]
    /// Per client, by fingerprint; at most 1000, the rest under `other`.
    public var clients: [String: GroupStats]
    /// Managed mode: upstream calls per upstream key, by the key's fingerprint (never the key).
    public var upstreamKeys: [String: Int64]
    /// The shared tier's state, when one is configured.
    public var sharedTier: SharedTierReport?
    /// The traces' export, when `telemetry.otlp_endpoint` is set (the server's own document only).
    public var telemetry: TelemetryReport? = nil

    /// What the stats say of the shared tier: its health, this instance's use of it, and whether the
    /// counters of the document are every instance's (`cluster`) or this store's only (`local`, while
    /// the tier is degraded).
    public struct SharedTierReport: Sendable {
        public var status: SharedTier.Status
        public var clusterCounters: Bool

        var json: [String: Any] {
            [
                "status": status.healthy ? "ok" : "degraded",
                "problem": status.problem ?? NSNull(),
                "target": status.target,
                "counters": clusterCounters ? "cluster" : "local",
                "hits": status.hits,
                "writes": status.writes,
                "failures": status.failures,
            ]
        }
    }

    public var hits: Int64 { totals[Counter.total(.hits)] ?? 0 }
    public var coalesced: Int64 { totals[Counter.total(.coalesced)] ?? 0 }
    public var misses: Int64 { totals[Counter.total(.misses)] ?? 0 }
    public var savedRequests: Int64 { Counter.sum(hits, coalesced) }

    /// (hits + coalesced) / (hits + coalesced + misses), to four decimals; 0 before any answer.
    public var hitRatio: Double {
        let answered = Counter.sum(savedRequests, misses)
        return answered == 0 ? 0 : Self.round(Double(savedRequests) / Double(answered), places: 4)
    }

    /// One model's usage, savings and free-tier limits.
    public struct ModelStats: Sendable {
        /// All-time counters by name: `requests`, `hits`, `coalesced`, `misses`, `refreshed`,
        /// `bypassed`, `stale`, `errors`, `upstream_requests`, `upstream_tokens`, `saved_tokens`,
        /// `saved_prompt_tokens`.
        public var counts: [String: Int64]
        public var upstreamRequestsMinute: Int64
        public var upstreamTokensMinute: Int64
        public var upstreamRequestsToday: Int64
        public var upstreamTokensToday: Int64
        public var savedRequestsToday: Int64
        public var savedTokensToday: Int64
        /// From `limits.models`; every field nil when the model is not in the table.
        public var freeTier: ProxyConfiguration.ModelLimits
        /// USD the hits saved at the configured price (six decimals), nil when the model has no price.
        public var savedUSD: Double?

        public var savedRequests: Int64 { Counter.sum(counts[Counter.hits.rawValue] ?? 0, counts[Counter.coalesced.rawValue] ?? 0) }

        /// upstream_requests_today / rpd, in percent; nil when the limit is unknown.
        public var rpdUsedPct: Double? { percent(upstreamRequestsToday) }
        /// (upstream + saved requests today) / rpd: what the day would have used without the cache.
        public var rpdWithoutCachePct: Double? { percent(Counter.sum(upstreamRequestsToday, savedRequestsToday)) }

        private func percent(_ requests: Int64) -> Double? {
            guard let rpd = freeTier.rpd, rpd > 0 else { return nil }
            return StatsDocument.round(Double(requests) / Double(rpd) * 100, places: 2)
        }
    }

    /// The counters of one namespace or one client.
    public struct GroupStats: Sendable {
        /// By name: `requests`, `hits`, `coalesced`, `misses`, `refreshed`, `bypassed`, `stale`,
        /// `errors`, `upstream_requests`, `upstream_tokens`, `saved_tokens`.
        public var counts: [String: Int64] = [:]

        public var savedRequests: Int64 { Counter.sum(counts[Counter.hits.rawValue] ?? 0, counts[Counter.coalesced.rawValue] ?? 0) }

        /// As ``StatsDocument/hitRatio``.
        public var hitRatio: Double {
            let answered = Counter.sum(savedRequests, counts[Counter.misses.rawValue] ?? 0)
            return answered == 0 ? 0 : StatsDocument.round(Double(savedRequests) / Double(answered), places: 4)
        }

        var json: [String: Any] {
            var group: [String: Any] = ["saved_requests": savedRequests, "hit_ratio": hitRatio]
            for kind in ModelStats.counted { group[kind.rawValue] = counts[kind.rawValue] ?? 0 }
            return group
        }
    }

    static func round(_ value: Double, places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (value * scale).rounded() / scale
    }

    // MARK: - JSON

    /// The document as JSON values (unknown limits and percentages as `null`).
    public var json: [String: Any] {
        var document: [String: Any] = [
            "since": Self.timestamp(since),
            "hit_ratio": hitRatio,
            "saved_requests": savedRequests,
            "saved_usd": savedUSD,
            "entries": entries,
            "store_bytes": storeBytes,
            "store_recovered_from": storeRecoveredFrom ?? NSNull(),
            "store_salvage": storeSalvage?.json ?? NSNull(),
            "quota_day": quotaDay.id,
            "quota_day_resets_at": Self.timestamp(quotaDay.resetsAt),
            "models": models.mapValues(\.json),
            "namespaces": namespaces.mapValues(\.json),
            "clients": clients.mapValues(\.json),
            "keys": upstreamKeys.mapValues { ["upstream_requests": $0] },
            "shared_tier": sharedTier?.json ?? NSNull(),
            "telemetry": telemetry?.json ?? NSNull(),
        ]
        for kind in Counter.totals { document[Counter.total(kind)] = totals[Counter.total(kind)] ?? 0 }
        if let window {
            document["until"] = Self.timestamp(window.end)
            document["window"] = [
                "since": Self.timestamp(window.start), "until": Self.timestamp(window.end), "resolution": window.resolution.rawValue,
            ]
        }
        return document
    }

    /// The document as pretty, key-sorted JSON.
    public func jsonData() throws -> Data {
        try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}

extension StatsDocument.ModelStats {
    /// Every all-time counter a model reports, in order.
    static let counted: [Counter] = [
        .requests, .hits, .coalesced, .misses, .refreshed, .bypassed, .stale, .errors, .upstreamRequests, .upstreamTokens, .savedTokens,
    ]

    var json: [String: Any] {
        func orNull<T>(_ value: T?) -> Any { value.map { $0 as Any } ?? NSNull() }
        var model: [String: Any] = [
            "saved_requests": savedRequests,
            "saved_usd": orNull(savedUSD),
            "upstream_requests_minute": upstreamRequestsMinute,
            "upstream_tokens_minute": upstreamTokensMinute,
            "upstream_requests_today": upstreamRequestsToday,
            "upstream_tokens_today": upstreamTokensToday,
            "saved_requests_today": savedRequestsToday,
            "saved_tokens_today": savedTokensToday,
            "free_tier": ["rpm": orNull(freeTier.rpm), "rpd": orNull(freeTier.rpd), "tpm": orNull(freeTier.tpm)],
            "rpd_used_pct": orNull(rpdUsedPct),
            "rpd_without_cache_pct": orNull(rpdWithoutCachePct),
        ]
        for kind in Self.counted { model[kind.rawValue] = counts[kind.rawValue] ?? 0 }
        return model
    }
}

extension Ledger {
    /// The stats document now: totals, per model, namespace and client, since counting began or over
    /// `window`; today's and this minute's per-model counters; the store's size.
    public func document(window: StatsWindow? = nil) async throws -> StatsDocument {
        let time = now()
        let day = quotaDay(at: time)
        let dayPrefix = Counter.dayPrefix + day.id + "/"
        let minutePrefix = Counter.minute(Counter.epochMinute(time))
        let totalNames = Counter.totals.map(Counter.total)
        let allTime = totalNames + [Counter.modelPrefix, Counter.namespacePrefix, Counter.clientPrefix]
        var ranges = [dayPrefix, minutePrefix, Counter.keyPrefix].map(CounterRange.init(prefix:))
        ranges += window.map { [$0.counters] } ?? allTime.map(CounterRange.init(prefix:))
        let (values, cluster) = try await counterValues(ranges)
        // The counts: all-time counters, or the window's copies of them added up.
        var counts: [String: Int64] = [:]
        if let window {
            for (name, value) in values {
                guard let period = Counter.parsePeriod(name), period.unit == window.resolution.rawValue,
                    (window.first...window.last).contains(period.number)
                else { continue }
                counts[period.field] = Counter.sum(counts[period.field] ?? 0, value)
            }
        } else {
            counts = values.filter { name, _ in allTime.contains { name.hasPrefix($0) } }
        }
        var upstreamKeys: [String: Int64] = [:]
        let upstreamKeyField = "/" + Counter.upstreamRequests.rawValue
        for (name, value) in values where name.hasPrefix(Counter.keyPrefix) && name.hasSuffix(upstreamKeyField) {
            upstreamKeys[String(name.dropFirst(Counter.keyPrefix.count).dropLast(upstreamKeyField.count))] = value
        }
        var models: [String: StatsDocument.ModelStats] = [:]
        var namespaces: [String: StatsDocument.GroupStats] = [:]
        var clients: [String: StatsDocument.GroupStats] = [:]
        for (name, value) in counts {
            if let (model, field) = Counter.parseModel(name, after: "") {
                models[model, default: emptyStats(model)].counts[field] = value
            } else if let (namespace, field) = Counter.parseName(name, after: Counter.namespacePrefix) {
                namespaces[namespace, default: .init()].counts[field] = value
            } else if let (client, field) = Counter.parseName(name, after: Counter.clientPrefix) {
                clients[client, default: .init()].counts[field] = value
            }
        }
        for (name, value) in values {
            if let (model, field) = Counter.parseModel(name, after: dayPrefix) {
                var stats = models[model] ?? emptyStats(model)
                switch Counter(rawValue: field) {
                case .upstreamRequests: stats.upstreamRequestsToday = value
                case .upstreamTokens: stats.upstreamTokensToday = value
                case .savedRequests: stats.savedRequestsToday = value
                case .savedTokens: stats.savedTokensToday = value
                default: continue
                }
                models[model] = stats
            } else if let (model, field) = Counter.parseModel(name, after: minutePrefix) {
                var stats = models[model] ?? emptyStats(model)
                switch Counter(rawValue: field) {
                case .upstreamRequests: stats.upstreamRequestsMinute = value
                case .upstreamTokens: stats.upstreamTokensMinute = value
                default: continue
                }
                models[model] = stats
            }
        }
        for (model, price) in prices {
            guard var stats = models[model] else { continue }
            let prompt = Double(stats.counts[Counter.savedPromptTokens.rawValue] ?? 0)
            let total = Double(stats.counts[Counter.savedTokens.rawValue] ?? 0)
            stats.savedUSD = StatsDocument.round((prompt * price.input + max(0, total - prompt) * price.output) / 1_000_000, places: 6)
            models[model] = stats
        }
        let since = if let window { window.start } else { Date(milliseconds: try await since()) }
        return StatsDocument(
            since: since,
            window: window,
            totals: counts.filter { totalNames.contains($0.key) },
            savedUSD: StatsDocument.round(models.values.reduce(0) { $0 + ($1.savedUSD ?? 0) }, places: 6),
            entries: try await store.entryCount(),
            storeBytes: store.storeBytes,
            storeRecoveredFrom: store.recoveredFrom,
            storeSalvage: salvage,
            quotaDay: day,
            models: models,
            namespaces: namespaces,
            clients: clients,
            upstreamKeys: upstreamKeys,
            sharedTier: shared.map { StatsDocument.SharedTierReport(status: $0.status, clusterCounters: cluster) }
        )
    }

    private func emptyStats(_ model: String) -> StatsDocument.ModelStats {
        StatsDocument.ModelStats(
            counts: [:],
            upstreamRequestsMinute: 0,
            upstreamTokensMinute: 0,
            upstreamRequestsToday: 0,
            upstreamTokensToday: 0,
            savedRequestsToday: 0,
            savedTokensToday: 0,
            freeTier: limits[model] ?? .init(),
            savedUSD: nil
        )
    }
}
