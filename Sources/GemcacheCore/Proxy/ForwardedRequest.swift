import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes

/// What the proxy reads from a client request besides the body and the credential (``Credential``):
/// the query, and the headers that may travel upstream.
struct ForwardedRequest {
    /// Headers never forwarded or replayed: hop-by-hop (RFC 9110 §7.6.1) and what the proxy itself sets.
    static let hopByHop = EntryRecord.hopByHopHeaderNames

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

    /// The most header bytes (names and values) a request may carry. Far above what Gemini clients
    /// send, and below the 64 KiB at which a request head alone fills AsyncHTTPClient's write buffer:
    /// a streamed upload behind such a head made AsyncHTTPClient start the body before the head was
    /// out and trap (found by benchmarks/httpfuzz.py).
    static let maxHeaderBytes = 32 << 10

    /// 431 when the request's headers are larger than ``maxHeaderBytes``.
    static func checkSize(_ headers: HTTPFields) throws(ProxyError) {
        var bytes = 0
        for field in headers { bytes += field.name.rawName.utf8.count + field.value.utf8.count + 4 }
        guard bytes <= maxHeaderBytes else {
            throw .headersTooLarge(limit: maxHeaderBytes)
        }
    }

    /// The client's headers that go upstream: all but hop-by-hop ones, those named in `Connection`,
    /// and the proxy's own controls.
    static func upstreamHeaders(_ headers: HTTPFields, dropCacheControls: Bool) -> [(name: String, value: String)] {
        let named = Set(
            headers[values: .connection].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        )
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
        headers.filter { !EntryRecord.unstoredHeaderNames.contains($0.name.lowercased()) }
    }
}

extension HTTPFields {
    /// Fields from stored or upstream `(name, value)` pairs, skipping any name HTTP would refuse.
    init(pairs: [(name: String, value: String)]) {
        self.init(pairs.compactMap { pair in HTTPField.Name(pair.name).map { HTTPField(name: $0, value: pair.value) } })
    }
}
