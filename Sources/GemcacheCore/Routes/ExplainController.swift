import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /_gemcache/explain` (SPEC §3): the key, canonical form, scope and namespace a request would
/// get, computed by the same code as the real request, without calling upstream.
struct ExplainController<Context: RequestContext> {
    let configuration: ProxyConfiguration
    let salt: [UInt8]

    func addRoutes(to router: Router<Context>) {
        router.post("/_gemcache/explain") { request, _ in try await self.explain(request) }
    }

    private func explain(_ request: Request) async throws -> Response {
        var buffer = try await request.body.collect(upTo: configuration.limits.maxBody)
        guard let input = try? JSONSerialization.jsonObject(with: Data(buffer.readBytes(length: buffer.readableBytes) ?? [])) as? [String: Any],
            let path = input["path"] as? String
        else {
            throw ProxyError.invalidArgument(
                "Expected {\"path\": \"/v1beta/models/M:generateContent\", \"query\": {...}, \"headers\": {...}, \"body\": ...}."
            )
        }
        let body: [UInt8] =
            switch input["body"] {
            case let text as String: Array(text.utf8)
            case let value? where !(value is NSNull):
                Array((try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed])) ?? Data())
            default: []
            }
        let route = try CachedRoute(method: body.isEmpty ? .get : .post, path: path) ?? CachedRoute(method: .post, path: path)
        guard let route else {
            throw ProxyError.invalidArgument("\(path) is not a cached route.")
        }
        let query = ((input["query"] as? [String: Any]) ?? [:]).map { (name: $0.key, value: "\($0.value)") }
        var headers = HTTPFields()
        for case let (name, value as String) in (input["headers"] as? [String: Any]) ?? [:] {
            if let name = HTTPField.Name(name) { headers[name] = value }
        }
        // A credential only tags a per-key scope: in shared scope (managed mode, record, replay) none is needed.
        let given = try Credential(headers: headers, query: query)
        guard let credential = given ?? (configuration.effectiveScope == .shared ? .anonymous : nil) else { throw ProxyError.missingCredential }
        let keyed = try await KeyingPool.run(bodySize: body.count) { [headers] () throws(ProxyError) in
            try RequestKey(route: route, query: query, headers: headers, body: body, credential: credential, configuration: configuration, salt: salt)
        }
        let answer: [String: Any] = [
            "key": keyed.key.hex,
            "canonical": String(decoding: keyed.canonical, as: UTF8.self),
            "scope": keyed.scope.kind.rawValue,
            "namespace": keyed.namespace ?? NSNull(),
            "scheme_version": CacheKeyComponents.schemeVersion,
        ]
        let data = try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
