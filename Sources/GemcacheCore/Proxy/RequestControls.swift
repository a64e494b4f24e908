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

    /// Parses the controls; a malformed value is a 400 rather than a silent default.
    init(headers: HTTPFields) throws(ProxyError) {
        for value in headers[values: .cacheControl] {
            for directive in value.split(separator: ",") {
                let parts = directive.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                switch parts[0].lowercased() {
                case "no-cache": noCache = true
                case "no-store": noStore = true
                case "only-if-cached": onlyIfCached = true
                case "max-age":
                    guard parts.count == 2, let seconds = Int64(parts[1].trimmingCharacters(in: ["\""])), seconds >= 0 else {
                        throw .invalidArgument("Cache-Control max-age must be a whole number of seconds")
                    }
                    maxAge = seconds
                default: continue
                }
            }
        }
        if let ttl = headers[.gemcacheTTL] {
            guard let seconds = Int64(ttl.trimmingCharacters(in: .whitespaces)), seconds > 0 else {
                throw .invalidArgument("X-Gemcache-TTL must be a whole number of seconds greater than 0")
            }
            ttlSeconds = seconds
        }
        if let namespace = headers[.gemcacheNamespace] {
            let valid = (1...128).contains(namespace.utf8.count)
                && namespace.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "-_.:/".unicodeScalars.contains($0)) }
            guard valid else {
                throw .invalidArgument("X-Gemcache-Namespace must be 1 to 128 characters of letters, digits and - _ . : /")
            }
            self.namespace = namespace
        }
    }
}
