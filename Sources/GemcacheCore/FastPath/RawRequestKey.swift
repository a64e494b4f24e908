import CLibCrypto
import GemcacheKey

/// The key of a byte-identical request: SHA-256 over the request as sent, before any parsing or
/// canonicalization, so that the fast path can find a repeat's entry without reading its JSON.
///
/// It is an alias, never a cache key: the slow path records `raw key → cache key` when it stores an
/// answer or serves a canonical hit (``CacheStore/store(_:for:alias:)``), and the fast path follows it.
/// It covers everything the cache key is computed from except through the body's canonical form:
/// the request target as sent (API version, model, operation, query) less its credential parameter,
/// the scope (`shared` or the credential's HMAC tag, never the credential), the namespace header, the
/// raw body, and the normalization level and key scheme, so that an alias recorded under other
/// settings never matches.
///
/// Encoding, hashed in this order: `"gemcache-raw"`, the scheme version and normalization level as
/// one length-prefixed field, then keyed target (``Target``), scope, namespace (a byte 0, or 1 and
/// the field) and body, each field its length as UInt64 big-endian followed by its bytes.
enum RawRequestKey {
    /// Length of a raw key in bytes.
    static let length = 32

    /// A request target the fast path looks up, read by ``parse(_:method:keyed:)``.
    ///
    /// Eligible: every cached route whose stored answer is one byte sequence (SPEC §2): `POST
    /// /{v1,v1beta}/models/M:OP` for generateContent, streamGenerateContent, countTokens and
    /// embedContent; `POST /v1beta/openai/chat/completions` and `/v1beta/openai/embeddings`; `GET
    /// /{v1,v1beta}/models` and `/{v1,v1beta}/models/M`. batchEmbedContents is not (its answer is
    /// assembled per item). The target must hold no percent-encoding or fragment, so that its bytes
    /// are the ones the slow path keys, and at most one credential parameter, with a non-empty value
    /// without `+` (which the slow path would decode to a space).
    struct Target {
        /// The value of the credential parameter (`key`, `access_token` or `oauth_token`), if there is one.
        let credential: Range<Int>?
    }

    enum Method {
        case get, post
    }

    /// Reads `target` (path and query, as sent); nil when the fast path does not look it up.
    ///
    /// `keyed` receives the target as the raw key covers it: the path, then the query's parameters in
    /// their order and as sent, less credential parameters and empty pairs, joined by `&` after a `?`
    /// when any are left (what ``UpstreamTarget/removingCredentials`` leaves). So a key in `?key=` and
    /// the same key in a header lead to the same raw key, and no credential is hashed.
    static func parse(_ target: UnsafeRawBufferPointer, method: Method, keyed: inout [UInt8]) -> Target? {
        let pathEnd = target.firstIndex(of: UInt8(ascii: "?")) ?? target.count
        let path = UnsafeRawBufferPointer(rebasing: target[..<pathEnd])
        guard isEligiblePath(path, method: method), !target.contains(UInt8(ascii: "%")), !target.contains(UInt8(ascii: "#")) else {
            return nil
        }
        keyed.removeAll(keepingCapacity: true)
        keyed.append(contentsOf: path)
        var credential: Range<Int>?
        var separator = UInt8(ascii: "?")
        var pairStart = pathEnd + 1
        while pairStart < target.count {
            let pairEnd = target[pairStart...].firstIndex(of: UInt8(ascii: "&")) ?? target.count
            defer { pairStart = pairEnd + 1 }
            guard pairEnd > pairStart else { continue }
            let pair = target[pairStart..<pairEnd]
            let nameEnd = pair.firstIndex(of: UInt8(ascii: "=")) ?? pairEnd
            if isCredential(target[pairStart..<nameEnd]) {
                let value = min(nameEnd + 1, pairEnd)..<pairEnd
                guard credential == nil, !value.isEmpty, !target[value].contains(UInt8(ascii: "+")) else { return nil }
                credential = value
                continue
            }
            keyed.append(separator)
            keyed.append(contentsOf: pair)
            separator = UInt8(ascii: "&")
        }
        return Target(credential: credential)
    }

    /// `key`, `access_token` or `oauth_token`, letters without case (``QueryParameter``'s credentials).
    private static func isCredential(_ name: Slice<UnsafeRawBufferPointer>) -> Bool {
        name.equals(ASCII: "key", ignoringCase: true) || name.equals(ASCII: "access_token", ignoringCase: true)
            || name.equals(ASCII: "oauth_token", ignoringCase: true)
    }

    private static func isEligiblePath(_ path: UnsafeRawBufferPointer, method: Method) -> Bool {
        let rest: Slice<UnsafeRawBufferPointer>
        if path[...].starts(withASCII: "/v1beta/") {
            rest = path[8...]
            if method == .post && (rest.equals(ASCII: "openai/chat/completions") || rest.equals(ASCII: "openai/embeddings")) {
                return true
            }
        } else if path[...].starts(withASCII: "/v1/") {
            rest = path[4...]
        } else {
            return false
        }
        guard rest.starts(withASCII: "models") else { return false }
        if rest.count == 6 { return method == .get }
        guard rest.count > 7, rest[rest.startIndex + 6] == UInt8(ascii: "/") else { return false }
        let name = rest[(rest.startIndex + 7)...]
        guard !name.contains(UInt8(ascii: "/")) else { return false }
        guard let colon = name.lastIndex(of: UInt8(ascii: ":")) else { return method == .get }
        let operation = name[(colon + 1)...]
        return method == .post && colon > name.startIndex
            && (operation.equals(ASCII: "generateContent") || operation.equals(ASCII: "streamGenerateContent")
                || operation.equals(ASCII: "countTokens") || operation.equals(ASCII: "embedContent"))
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
