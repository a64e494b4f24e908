public import Foundation

/// What a request on a cached route came to (the `X-Gemcache` value).
public enum CacheOutcome: String, Sendable, CaseIterable {
    case hit = "HIT"
    case miss = "MISS"
    case coalesced = "COALESCED"
    case refresh = "REFRESH"
    case bypass = "BYPASS"
    case stale = "STALE"
    case partial = "PARTIAL"
}

/// Token counts of an answer (`usageMetadata`).
public struct TokenUsage: Sendable, Equatable {
    public var prompt: Int
    public var total: Int

    public init(prompt: Int, total: Int) {
        self.prompt = prompt
        self.total = total
    }

    public static let zero = TokenUsage(prompt: 0, total: 0)
}

/// Counts what the proxy does (SPEC §6, §7), persistently: the counters live in the store and add
/// up across every process that shares it. Recording only touches memory; the store maintenance
/// service flushes.
public final class Ledger: Sendable {
    let store: CacheStore
    /// When this process started counting (the stats' `since`).
    let since: Date

    public init(store: CacheStore, since: Date = Date()) {
        self.store = store
        self.since = since
    }

    /// A request on a cached route arrived.
    func recordRequest(model: String) {
        store.increment(Counter.requests)
    }

    /// A request on a cached route was answered; a hit or coalesced answer saved a call and `tokens`.
    func recordAnswer(model: String, outcome: CacheOutcome, status: Int, tokens: TokenUsage) {
        switch outcome {
        case .hit, .stale:
            store.increment(outcome == .hit ? Counter.hits : Counter.stale)
            store.increment(Counter.savedTokens, by: Int64(tokens.total))
        case .coalesced:
            store.increment(Counter.coalesced)
            store.increment(Counter.savedTokens, by: Int64(tokens.total))
        case .miss, .partial: store.increment(Counter.misses)
        case .refresh: store.increment(Counter.refreshed)
        case .bypass: store.increment(Counter.bypassed)
        }
        if status >= 400 { store.increment(Counter.errors) }
    }

    /// One call went upstream for `model`.
    func recordUpstreamCall(model: String, status: Int, tokens: TokenUsage) {
        store.increment(Counter.upstreamRequests)
    }

    /// A request failed before it could be answered (bad input, upstream unreachable).
    func recordError(model: String?) {
        store.increment(Counter.errors)
    }

    /// The stats document of SPEC §7.
    func statsDocument() async throws -> [String: Any] {
        let counters = try await store.counterValues()
        func value(_ name: String) -> Int64 { counters[name] ?? 0 }
        let hits = value(Counter.hits), coalesced = value(Counter.coalesced), misses = value(Counter.misses)
        let answered = hits + coalesced + misses
        let ratio = answered == 0 ? 0 : (Double(hits + coalesced) / Double(answered) * 10_000).rounded() / 10_000
        return [
            "since": ISO8601DateFormatter().string(from: since),
            "requests": value(Counter.requests),
            "hits": hits, "coalesced": coalesced, "misses": misses,
            "refreshed": value(Counter.refreshed), "bypassed": value(Counter.bypassed),
            "stale": value(Counter.stale), "errors": value(Counter.errors),
            "hit_ratio": ratio,
            "saved_requests": hits + coalesced,
            "saved_tokens": value(Counter.savedTokens),
            "upstream_requests": value(Counter.upstreamRequests),
            "entries": try await store.entryCount(),
            "store_bytes": store.storeBytes,
            "store_recovered_from": store.recoveredFrom ?? NSNull(),
        ]
    }
}

/// Names of the persistent counters.
enum Counter {
    static let requests = "requests"
    static let hits = "hits"
    static let coalesced = "coalesced"
    static let misses = "misses"
    static let refreshed = "refreshed"
    static let bypassed = "bypassed"
    static let stale = "stale"
    static let errors = "errors"
    static let upstreamRequests = "upstream_requests"
    static let savedTokens = "saved_tokens"
}
