import Foundation
import HTTPTypes
public import Hummingbird
import NIOCore

/// `/_gemcache/stats` and `/healthz` (SPEC §7).
struct StatsController<Context: RequestContext> {
    let store: CacheStore
    let ledger: Ledger

    func addRoutes(to router: Router<Context>) {
        router.get("/_gemcache/stats") { _, _ in try await self.stats() }
        router.get("/healthz") { _, _ in await self.health() }
    }

    private func stats() async throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: try await ledger.statsDocument(), options: [.sortedKeys, .prettyPrinted])
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
