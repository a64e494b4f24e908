import Foundation

/// The canonical request a recorded entry keeps (`cache.mode: record`, SPEC §11), in the form
/// `POST /_gemcache/explain` takes: `{"body", "headers", "path", "query"}`, members sorted, `headers`
/// and `query` left out when empty.
///
/// It holds exactly what entered the key but the scope (always `shared` when recording): the path (API
/// version, model, operation), the query parameters the key keeps, `X-Goog-FieldMask`,
/// `X-Gemcache-Namespace`, and the body as ``RequestKey`` normalized it (JSON, or a string for bytes
/// that are not, which `cache.normalize: exact` keeps as sent). Replay compares these forms to name
/// where a request differs from the nearest recording (``ReplayIndex``).
enum RecordedRequest {
    /// The canonical request as JSON bytes.
    /// - Parameters:
    ///   - path: The request's path, e.g. `/v1beta/models/gemini-2.5-flash:generateContent`.
    ///   - query: The keyed query parameters (``GemcacheKey/keyQuery(_:isGET:)``).
    ///   - canonical: The normalized body (empty on GET routes: no `body`).
    static func json(path: String, query: [(name: String, value: String)], fieldMask: String?, namespace: String?, canonical: [UInt8]) -> [UInt8] {
        var request: [String: Any] = ["path": path]
        if !query.isEmpty {
            request["query"] = Dictionary(query.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        }
        var headers: [String: String] = [:]
        headers["X-Goog-FieldMask"] = fieldMask
        headers["X-Gemcache-Namespace"] = namespace
        if !headers.isEmpty { request["headers"] = headers }
        if !canonical.isEmpty {
            request["body"] =
                (try? JSONSerialization.jsonObject(with: Data(canonical), options: [.fragmentsAllowed])) ?? String(decoding: canonical, as: UTF8.self)
        }
        let data = (try? JSONSerialization.data(withJSONObject: request, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Array(data)
    }
}
