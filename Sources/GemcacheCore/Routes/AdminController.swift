import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes
import Hummingbird
import NIOCore

/// Admin actions over HTTP (SPEC §1, §8): `POST /_gemcache/purge` with `Authorization: Bearer <admin token>`.
/// Without a configured admin token every admin action answers 403. With a shared tier a purge deletes
/// there too (other instances keep their local copies until these expire or are purged there).
struct AdminController<Context: RequestContext> {
    let store: CacheStore
    let shared: SharedTier?
    /// The token from the variable named by `admin.token_env`, or nil when unset.
    let adminToken: String?

    func addRoutes(to router: Router<Context>) {
        router.post("/_gemcache/purge") { request, _ in try await self.purge(request) }
    }

    private func purge(_ request: Request) async throws -> Response {
        try authorize(request)
        var buffer = try await request.body.collect(upTo: 64 << 10)
        guard let input = try? JSONSerialization.jsonObject(with: Data(buffer.readBytes(length: buffer.readableBytes) ?? [])) as? [String: Any] else {
            throw ProxyError.invalidArgument("Expected a JSON object such as {\"all\": true} or {\"model\": \"gemini-2.5-flash\"}.")
        }
        let filter = try Self.filter(input)
        let dryRun = input["dry_run"] as? Bool ?? false
        var result: [String: Any] = ["deleted": try await store.purge(filter, dryRun: dryRun)]
        if let shared, !dryRun {
            result["shared_deleted"] = await shared.purge(filter) ?? NSNull()
        }
        let data = try JSONSerialization.data(withJSONObject: result)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private func authorize(_ request: Request) throws(ProxyError) {
        let presented = request.headers[.authorization].flatMap { $0.lowercased().hasPrefix("bearer ") ? String($0.dropFirst(7)) : nil }
        guard let adminToken, let presented, Digest.sha256(presented) == Digest.sha256(adminToken) else {
            throw .adminTokenRequired
        }
    }

    /// `{"all": true}` or any of `model`, `namespace`, `key`, `older_than`.
    static func filter(_ input: [String: Any]) throws(ProxyError) -> PurgeFilter {
        var filter = PurgeFilter()
        for (name, value) in input {
            switch (name, value) {
            case ("all", let all as Bool): filter.all = all
            case ("model", let model as String): filter.model = model.hasPrefix("models/") ? String(model.dropFirst(7)) : model
            case ("namespace", let namespace as String): filter.namespace = namespace
            case ("key", let hex as String):
                guard let key = CacheKey(hex: hex) else { throw .invalidArgument("key must be 64 hex digits.") }
                filter.key = key
            case ("older_than", let age):
                do {
                    filter.olderThan = try SettingValue.duration("\(age)", positive: false)
                } catch {
                    throw .invalidArgument("older_than: \(error.problem).")
                }
            case ("dry_run", is Bool): continue
            default: throw .invalidArgument("Unknown or malformed purge field \"\(name)\".")
            }
        }
        guard !filter.isEmpty else {
            throw .invalidArgument("Say what to purge: {\"all\": true} or any of model, namespace, key, older_than.")
        }
        return filter
    }
}
