import Foundation
import HTTPTypes
public import Hummingbird
import NIOCore

/// `/_gemcache/stats` and `/healthz` (SPEC §7).
struct StatsController<Context: RequestContext> {
    let store: CacheStore
    let since: String

    func addRoutes(to router: Router<Context>) {
        router.get("/_gemcache/stats") { _, _ in try await self.stats() }
        router.get("/healthz") { _, _ in await self.health() }
    }

    /// The stats document; counters are shared by every process on the store.
    func document() async throws -> [String: Any] {
        let counters = try await store.counterValues()
        func value(_ name: String) -> Int64 { counters[name] ?? 0 }
        let hits = value(Counter.hits), coalesced = value(Counter.coalesced), misses = value(Counter.misses)
        let answered = hits + coalesced + misses
        let ratio = answered == 0 ? 0 : (Double(hits + coalesced) / Double(answered) * 10_000).rounded() / 10_000
        return [
            "since": since,
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

    private func stats() async throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: try await document(), options: [.sortedKeys, .prettyPrinted])
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private func health() async -> Response {
        let writable = await store.isWritable()
        var body: [String: Any] = ["status": writable ? "ok" : "unavailable", "store": writable ? "writable" : "not writable"]
        if let aside = store.recoveredFrom, writable {
            body["store"] = "recovered"
            body["moved_to"] = aside
        }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        return Response(
            status: writable ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
