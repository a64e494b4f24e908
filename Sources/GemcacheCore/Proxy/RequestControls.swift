import Foundation
import HTTPTypes

/// The per-request cache controls of SPEC §4.
struct RequestControls: Equatable {
    /// `Cache-Control: no-cache`: skip the lookup, store the answer (REFRESH).
    var noCache = false
    /// `Cache-Control: no-store`: store nothing (BYPASS).
    var noStore = false
    /// `Cache-Control: only-if-cached`: 504 instead of calling upstream on a miss.
    var onlyIfCached = false
    /// `Cache-Control: max-age=N`: accept only an entry at most N seconds old.
    var maxAge: Int64?
    /// `X-Gemcache-TTL: N`: store this answer for N seconds.
    var ttlSeconds: Int64?
    /// `X-Gemcache-Namespace: NAME`.
    var namespace: String?

    /// The largest `X-Gemcache-TTL`: ten years (SPEC §4).
    static let maxTTLSeconds: Int64 = 315_360_000
    /// Delta-seconds above this are read as this (RFC 9111 §1.2.2).
    static let maxDeltaSeconds: Int64 = 2_147_483_648

    /// Parses the controls (SPEC §4). `X-Gemcache-TTL` is the proxy's own header: a value outside
    /// 0...315360000 is a 400. `Cache-Control` follows RFC 9111: a malformed `max-age` is ignored and
    /// a huge one read as 2^31.
    init(headers: HTTPFields) throws(ProxyError) {
        for value in headers[values: .cacheControl] {
            for directive in value.split(separator: ",") {
                let parts = directive.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                switch parts.first?.lowercased() {
                case "no-cache": noCache = true
                case "no-store": noStore = true
                case "only-if-cached": onlyIfCached = true
                case "max-age":
                    if parts.count == 2, let seconds = Self.deltaSeconds(parts[1]) { maxAge = seconds }
                default: continue
                }
            }
        }
        if let ttl = headers[.gemcacheTTL] {
            let digits = ttl.trimmingCharacters(in: .whitespaces)
            guard Self.isDigits(digits), digits.count <= 9, let seconds = Int64(digits), seconds <= Self.maxTTLSeconds
            else {
                throw .invalidArgument("X-Gemcache-TTL must be a whole number of seconds from 0 to \(Self.maxTTLSeconds)")
            }
            ttlSeconds = seconds
        }
        if let namespace = headers[.gemcacheNamespace] {
            let valid =
                (1...128).contains(namespace.utf8.count)
                && namespace.unicodeScalars.allSatisfy {
                    $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "-_.:/".unicodeScalars.contains($0))
                }
            guard valid else {
                throw .invalidArgument("X-Gemcache-Namespace must be 1 to 128 characters of letters, digits and - _ . : /")
            }
            self.namespace = namespace
        }
    }

    /// RFC 9111 delta-seconds (digits, optionally quoted), capped at 2^31; nil when malformed.
    private static func deltaSeconds(_ raw: String) -> Int64? {
        let digits = raw.trimmingCharacters(in: ["\""])
        guard isDigits(digits) else { return nil }
        return digits.count > 10 ? maxDeltaSeconds : min(Int64(digits)!, maxDeltaSeconds)
    }

    private static func isDigits(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }
}
