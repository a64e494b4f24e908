import CoreMetrics
import GemcacheStore
import Prometheus
import Synchronization

/// `GET /metrics`: the stats document in Prometheus text format, plus latency histograms of hits
/// and upstream answers.
///
/// Metrics go through swift-metrics handles made from a ``PrometheusMetricsFactory`` that this
/// instance owns, never through the process-global `MetricsSystem`, so every application (and every
/// test) has its own registry. The counters live in the store and are shared by every process on
/// it; at each scrape they are copied into the registry (a counter advances by what the store added
/// since the last scrape), so `/metrics` and `/_gemcache/stats` show the same numbers.
public final class ProxyMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// Requests answered from the store (`HIT`).
    let hitDuration: CoreMetrics.Timer
    /// Requests answered by a call upstream (`MISS`, `REFRESH`, `BYPASS`).
    let upstreamDuration: CoreMetrics.Timer
    /// What each counter stood at when last exported, by series.
    private let exported = Mutex([String: Int64]())

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
            .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
        self.factory = factory
        hitDuration = CoreMetrics.Timer(label: "gemcache_hit_duration_seconds", factory: factory)
        upstreamDuration = CoreMetrics.Timer(label: "gemcache_upstream_duration_seconds", factory: factory)
    }

    /// Records how long a request on a cached route took, by how it was answered.
    func record(outcome: CacheOutcome, duration: Duration) {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        switch outcome {
        case .hit: hitDuration.recordNanoseconds(nanoseconds)
        case .miss, .refresh, .bypass: upstreamDuration.recordNanoseconds(nanoseconds)
        case .coalesced, .stale, .partial: break
        }
    }

    /// The counters exported per namespace and per client.
    static let groupCounted: [GemcacheStore.Counter] = [.requests, .hits, .coalesced, .misses, .errors, .upstreamRequests, .savedTokens]

    /// The Prometheus text exposition with `document`'s numbers.
    public func exposition(_ document: StatsDocument) -> String {
        exported.withLock { exported in
            func counter(_ name: String, _ value: Int64, model: String? = nil) {
                counter(name, value, label: model.map { ("model", $0) })
            }
            func counter(_ name: String, _ value: Int64, label: (name: String, value: String)?) {
                let dimensions = label.map { [$0] } ?? []
                let series = name + "|" + (label?.value ?? "")
                let previous = exported[series]
                exported[series] = value
                guard previous != value else { return }
                let handle = CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory)
                let delta = value - (previous ?? 0)
                if delta >= 0 {
                    handle.increment(by: delta)
                } else {
                    // The store went back (it was replaced): start the series again from its value.
                    handle.reset()
                    handle.increment(by: value)
                }
            }
            func gauge(_ name: String, _ value: Double, model: String? = nil) {
                CoreMetrics.Meter(label: name, dimensions: model.map { [("model", $0)] } ?? [], factory: factory).set(value)
            }
            for kind in Counter.totals { counter("gemcache_\(kind.rawValue)_total", document.totals[Counter.total(kind)] ?? 0) }
            counter("gemcache_saved_requests_total", document.savedRequests)
            gauge("gemcache_hit_ratio", document.hitRatio)
            gauge("gemcache_saved_usd", document.savedUSD)
            gauge("gemcache_entries", Double(document.entries))
            gauge("gemcache_store_bytes", Double(document.storeBytes))
            for (model, stats) in document.models {
                for kind in StatsDocument.ModelStats.counted {
                    counter("gemcache_model_\(kind.rawValue)_total", stats.counts[kind.rawValue] ?? 0, model: model)
                }
                counter("gemcache_model_saved_requests_total", stats.savedRequests, model: model)
                gauge("gemcache_model_upstream_requests_minute", Double(stats.upstreamRequestsMinute), model: model)
                gauge("gemcache_model_upstream_tokens_minute", Double(stats.upstreamTokensMinute), model: model)
                gauge("gemcache_model_upstream_requests_today", Double(stats.upstreamRequestsToday), model: model)
                gauge("gemcache_model_upstream_tokens_today", Double(stats.upstreamTokensToday), model: model)
                gauge("gemcache_model_saved_requests_today", Double(stats.savedRequestsToday), model: model)
                gauge("gemcache_model_saved_tokens_today", Double(stats.savedTokensToday), model: model)
                // Unknown limits (and what derives from them) are left out, never exported as a number.
                let known: [(String, Double?)] = [
                    ("gemcache_model_free_tier_rpm", stats.freeTier.rpm.map(Double.init)),
                    ("gemcache_model_free_tier_rpd", stats.freeTier.rpd.map(Double.init)),
                    ("gemcache_model_free_tier_tpm", stats.freeTier.tpm.map(Double.init)),
                    ("gemcache_model_rpd_used_pct", stats.rpdUsedPct),
                    ("gemcache_model_rpd_without_cache_pct", stats.rpdWithoutCachePct),
                    ("gemcache_model_saved_usd", stats.savedUSD),
                ]
                for case (let name, let value?) in known { gauge(name, value, model: model) }
            }
            // At most 1000 namespaces and 1000 clients (CountedNames): the label sets stay bounded.
            for (dimension, groups) in [("namespace", document.namespaces), ("client", document.clients)] {
                for (name, stats) in groups {
                    for kind in Self.groupCounted {
                        counter("gemcache_\(dimension)_\(kind.rawValue)_total", stats.counts[kind.rawValue] ?? 0, label: (dimension, name))
                    }
                    counter("gemcache_\(dimension)_saved_requests_total", stats.savedRequests, label: (dimension, name))
                }
            }
        }
        return registry.emitToString()
    }
}
