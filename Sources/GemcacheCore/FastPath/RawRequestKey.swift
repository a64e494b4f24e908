import CLibCrypto
import GemcacheKey

/// The key of a byte-identical request: SHA-256 over the request as sent, before any parsing or
/// canonicalization, so that the fast path can find a repeat's entry without reading its JSON.
///
/// It is an alias, never a cache key: the slow path records `raw key → cache key` when it stores an
/// answer or serves a canonical hit (``CacheStore/store(_:for:alias:)``), and the fast path follows it.
/// It covers everything the cache key is computed from except through the body's canonical form:
/// the request target as sent (API version, model, operation, query), the scope (`shared` or the
/// credential's HMAC tag, never the credential), the namespace header, the raw body, and the
/// normalization level and key scheme, so that an alias recorded under other settings never matches.
///
/// Encoding, hashed in this order: `"gemcache-raw"`, the scheme version and normalization level as
/// one length-prefixed field, then target, scope, namespace (a byte 0, or 1 and the field) and body,
/// each field its length as UInt64 big-endian followed by its bytes.
enum RawRequestKey {
    /// Length of a raw key in bytes.
    static let length = 32

    /// Whether the fast path looks up requests with this target: a generateContent call
    /// (`/v1/models/M:generateContent` or `/v1beta/…`) whose target has no percent-encoding, fragment or
    /// credential parameter (`key`, `access_token`, `oauth_token`), so that the bytes as sent are the
    /// same bytes the slow path keys (`URI.path` + `?` + `URI.query`).
    static func isEligible(target: UnsafeRawBufferPointer) -> Bool {
        modelRange(target: target) != nil
    }

    /// The model id's byte range in an eligible target, or nil when the target is not eligible.
    static func modelRange(target: UnsafeRawBufferPointer) -> Range<Int>? {
        let start: Int
        if target[...].starts(withASCII: "/v1beta/models/") {
            start = 15
        } else if target[...].starts(withASCII: "/v1/models/") {
            start = 11
        } else {
            return nil
        }
        let pathEnd = target[start...].firstIndex(of: UInt8(ascii: "?")) ?? target.count
        let operation: StaticString = ":generateContent"
        let modelEnd = pathEnd - operation.utf8CodeUnitCount
        guard modelEnd > start, target[modelEnd..<pathEnd].equals(ASCII: operation),
            !target[start..<modelEnd].contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "#") })
        else { return nil }
        if pathEnd < target.count, !isEligibleQuery(UnsafeRawBufferPointer(rebasing: target[(pathEnd + 1)...])) {
            return nil
        }
        return start..<modelEnd
    }

    /// A query without percent-encoding, fragment or credential parameter.
    private static func isEligibleQuery(_ query: UnsafeRawBufferPointer) -> Bool {
        if query.contains(UInt8(ascii: "%")) || query.contains(UInt8(ascii: "#")) { return false }
        for pair in query.split(separator: UInt8(ascii: "&")) {
            let name = pair.prefix { $0 != UInt8(ascii: "=") }
            for credential: StaticString in ["key", "access_token", "oauth_token"] where name.equals(ASCII: credential, ignoringCase: true) {
                return false
            }
        }
        return true
    }

    /// The first field of every raw key: the settings under which a raw key means a cache key.
    static func settingsTag(normalize: NormalizationLevel) -> [UInt8] {
        Array("gemcache-raw".utf8) + Array("\(CacheKeyComponents.schemeVersion)/\(normalize.rawValue)".utf8)
    }
}

/// Computes raw keys with one reusable OpenSSL digest context (not thread-safe: one per connection,
/// or one per call on the slow path).
///
/// Why not `Digest.sha256`: that needs the fields concatenated into a new array, and `EVP_Digest`
/// with `EVP_sha256()` looks the algorithm up in OpenSSL 3's provider store on every call. Here the
/// algorithm is fetched once per process and the context reused, and the fields are fed in place.
final class RawKeyHasher {
    /// SHA-256 fetched once (`EVP_MD_fetch`); immutable and thread-safe after creation per OpenSSL.
    private nonisolated(unsafe) static let sha256: OpaquePointer = EVP_MD_fetch(nil, "SHA256", nil)!

    private let context: OpaquePointer
    private let settingsTag: [UInt8]

    init(normalize: NormalizationLevel) {
        context = EVP_MD_CTX_new()!
        settingsTag = RawRequestKey.settingsTag(normalize: normalize)
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    /// Writes the raw key of one request into `output` (at least ``RawRequestKey/length`` bytes).
    /// - Parameters:
    ///   - target: The request target as sent (path and query).
    ///   - scope: `shared`, or the credential's tag from `scopeTag(credential:salt:)`.
    ///   - namespace: The `X-Gemcache-Namespace` value, or nil without one.
    ///   - body: The body bytes as sent.
    func hash(
        target: UnsafeRawBufferPointer,
        scope: UnsafeRawBufferPointer,
        namespace: UnsafeRawBufferPointer?,
        body: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) {
        precondition(output.count >= RawRequestKey.length)
        var ok = EVP_DigestInit_ex2(context, Self.sha256, nil)
        settingsTag.withUnsafeBytes { ok &= field($0) }
        ok &= field(target)
        ok &= field(scope)
        if let namespace {
            var present: UInt8 = 1
            ok &= EVP_DigestUpdate(context, &present, 1)
            ok &= field(namespace)
        } else {
            var absent: UInt8 = 0
            ok &= EVP_DigestUpdate(context, &absent, 1)
        }
        ok &= field(body)
        var length: UInt32 = 0
        ok &= EVP_DigestFinal_ex(context, output.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
        precondition(ok == 1 && length == RawRequestKey.length, "SHA-256 of a raw key failed")
    }

    /// The raw key of one request as a new array (for the slow path, which records aliases).
    func key(target: [UInt8], scope: [UInt8], namespace: [UInt8]?, body: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: RawRequestKey.length) { output, initialized in
            target.withUnsafeBytes { target in
                scope.withUnsafeBytes { scope in
                    body.withUnsafeBytes { body in
                        if let namespace {
                            namespace.withUnsafeBytes { namespace in
                                hash(target: target, scope: scope, namespace: namespace, body: body, into: UnsafeMutableRawBufferPointer(output))
                            }
                        } else {
                            hash(target: target, scope: scope, namespace: nil, body: body, into: UnsafeMutableRawBufferPointer(output))
                        }
                    }
                }
            }
            initialized = RawRequestKey.length
        }
    }

    private func field(_ bytes: UnsafeRawBufferPointer) -> Int32 {
        var length = UInt64(bytes.count).bigEndian
        var ok = EVP_DigestUpdate(context, &length, 8)
        if let base = bytes.baseAddress, bytes.count > 0 {
            ok &= EVP_DigestUpdate(context, base, bytes.count)
        }
        return ok
    }
}
