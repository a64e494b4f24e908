import Foundation
import HTTPTypes

/// What the proxy reads from a client request besides the body: the credential, the query, and
/// the headers that may travel upstream.
struct ForwardedRequest {
    /// Headers never forwarded or replayed: hop-by-hop (RFC 9110 §7.6.1) and what the proxy itself sets.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate", "host", "content-length",
    ]

    /// Response headers that describe one delivery, not the answer: never stored, never replayed.
    static let notReplayed: Set<String> = hopByHop.union([
        "content-encoding", "date", "server", "alt-svc", "set-cookie", "server-timing", "age",
        "x-gemcache", "x-gemcache-key", "x-gemcache-items", "cache-status", "via",
    ])

    /// The client's Gemini credential: `x-goog-api-key`, `?key=` or `Authorization: Bearer` (SPEC §8).
    static func credential(headers: HTTPFields, query: [(name: String, value: String)]) -> String? {
        if let key = headers[.googAPIKey], !key.isEmpty { return key }
        if let key = query.first(where: { $0.name == "key" })?.value, !key.isEmpty { return key }
        if let authorization = headers[.authorization], authorization.lowercased().hasPrefix("bearer ") {
            let token = authorization.dropFirst(7).trimmingCharacters(in: .whitespaces)
            return token.isEmpty ? nil : token
        }
        return nil
    }

    /// Decoded `name=value` pairs of a raw query string, in order.
    static func queryItems(_ rawQuery: String?) -> [(name: String, value: String)] {
        guard let rawQuery, !rawQuery.isEmpty else { return [] }
        return rawQuery.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String {
                let spaced = part.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }

    /// Query parameters that carry a credential (gemini-api.md §8).
    static let credentialParameters: Set<String> = ["key", "access_token", "oauth_token"]

    /// `path?query` without the credential parameters, the rest of the query as sent.
    static func removingCredentials(_ pathAndQuery: String) -> String {
        guard let mark = pathAndQuery.firstIndex(of: "?") else { return pathAndQuery }
        let kept = pathAndQuery[pathAndQuery.index(after: mark)...].split(separator: "&").filter { pair in
            let name = String(pair.prefix { $0 != "=" })
            return !credentialParameters.contains((name.removingPercentEncoding ?? name).lowercased())
        }
        return String(pathAndQuery[..<mark]) + (kept.isEmpty ? "" : "?" + kept.joined(separator: "&"))
    }

    /// The client's headers that go upstream: all but hop-by-hop ones, those named in `Connection`,
    /// and the proxy's own controls.
    static func upstreamHeaders(_ headers: HTTPFields, dropCacheControls: Bool) -> [(name: String, value: String)] {
        let named = Set(headers[values: .connection].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        var forwarded: [(name: String, value: String)] = []
        for field in headers {
            let name = field.name.canonicalName
            if hopByHop.contains(name) || named.contains(name) || name == "accept-encoding" { continue }
            if name.hasPrefix("x-gemcache") { continue }
            if dropCacheControls && name == "cache-control" { continue }
            forwarded.append((field.name.rawName, field.value))
        }
        return forwarded
    }

    /// The upstream's response headers worth keeping with a stored answer or passing on.
    static func replayableHeaders(_ headers: [(name: String, value: String)]) -> [(name: String, value: String)] {
        headers.filter { !notReplayed.contains($0.name.lowercased()) }
    }
}
