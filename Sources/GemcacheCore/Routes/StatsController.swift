import Foundation
import GemcacheStore
import HTTPTypes
import Hummingbird
import NIOCore

/// `/_gemcache/stats`, `/_gemcache/history`, the dashboard at `/_gemcache/` and `/healthz` (SPEC §7).
struct StatsController<Context: RequestContext> {
    let store: CacheStore
    let ledger: Ledger
    let tracing: RequestTracing?

    func addRoutes(to router: Router<Context>) {
        router.get("/_gemcache/stats") { request, _ in try await self.stats(request) }
        router.get("/_gemcache/history") { _, _ in try await self.history() }
        router.get("/_gemcache/") { _, _ in Self.dashboard() }
        router.get("/healthz") { _, _ in await self.health() }
    }

    /// The document since counting began, or over `?since=` / `?until=` (a 400 naming a malformed one).
    private func stats(_ request: Request) async throws -> Response {
        let window: StatsWindow?
        do {
            window = try StatsWindow.parse(
                since: request.uri.queryParameters["since"].map(String.init),
                until: request.uri.queryParameters["until"].map(String.init),
                now: ledger.now()
            )
        } catch {
            throw ProxyError.invalidArgument("\(error.description).")
        }
        var document = try await ledger.document(window: window)
        document.telemetry = tracing?.report
        return Self.json(try document.jsonData())
    }

    private func history() async throws -> Response {
        Self.json(try JSONSerialization.data(withJSONObject: try await ledger.history().json, options: [.sortedKeys]))
    }

    private static func dashboard() -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
            body: .init(byteBuffer: ByteBuffer(string: Dashboard.html))
        )
    }

    private func health() async -> Response {
        let writable = await store.isWritable()
        var body: [String: Any] = ["status": writable ? "ok" : "unavailable", "store": writable ? "writable" : "not writable"]
        if let aside = store.recoveredFrom, writable {
            body["store"] = "recovered"
            body["moved_to"] = aside
        }
        if let salvage = ledger.salvage { body["salvage"] = salvage.json }
        // A degraded shared tier is reported, not fatal: the instance serves from its store and upstream.
        if let shared = ledger.shared?.status {
            body["shared"] = shared.healthy ? "ok" : "degraded"
            if let problem = shared.problem { body["shared_problem"] = problem }
        }
        let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data()
        return Self.json(data, status: writable ? .ok : .serviceUnavailable)
    }

    private static func json(_ data: Data, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
