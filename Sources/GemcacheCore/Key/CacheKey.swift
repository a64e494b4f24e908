/// A cache key: the SHA-256 of a request's `CacheKeyComponents`.
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    /// The 32 digest bytes.
    public let bytes: [UInt8]

    /// Wraps a stored 32-byte digest; nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Digest.sha256Length else { return nil }
        self.bytes = bytes
    }

    /// Parses 64 hexadecimal digits (either case); nil for anything else.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count == 2 * Digest.sha256Length else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Digest.sha256Length)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = Self.nibble(digits[index]), let low = Self.nibble(digits[index + 1]) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        self.bytes = bytes
    }

    /// Lowercase hexadecimal form (64 characters), as sent in `X-Gemcache-Key`.
    public var hex: String { Digest.hex(bytes) }

    /// The lowercase hex form.
    public var description: String { hex }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Everything that determines an answer (SPEC §3). Built by the proxy for each cached request.
public struct CacheKeyComponents: Sendable {
    /// Version of the key scheme and canonical form; bump on any change to either.
    public static let schemeVersion: Int = 1

    /// API version path segment: `v1` or `v1beta`.
    public var apiVersion: String
    /// Endpoint kind, e.g. `generateContent`, `models.list`, `openai.chat`.
    public var endpoint: String
    /// Model id without a `models/` prefix (empty for routes without a model).
    public var model: String
    /// Percent-decoded query parameters that enter the key, normally `keyQuery(_:isGET:)`'s result.
    /// Their order does not matter: the key sorts them.
    public var query: [(name: String, value: String)]
    /// `shared` or `key:<hex>` (see `scopeTag(credential:salt:)`).
    public var scope: String
    /// `X-Gemcache-Namespace`, if any; nil and "" give different keys.
    public var namespace: String?
    /// Output of `BodyNormalizer.normalize` (empty for GET routes).
    public var normalizedBody: [UInt8]

    /// Creates the components; a leading `models/` is stripped from `model`.
    public init(
        apiVersion: String,
        endpoint: String,
        model: String,
        query: [(name: String, value: String)] = [],
        scope: String,
        namespace: String? = nil,
        normalizedBody: [UInt8] = []
    ) {
        self.apiVersion = apiVersion
        self.endpoint = endpoint
        self.model = model.hasPrefix("models/") ? String(model.dropFirst("models/".count)) : model
        self.query = query
        self.scope = scope
        self.namespace = namespace
        self.normalizedBody = normalizedBody
    }

    /// SHA-256 over an unambiguous encoding, in this order: scheme version (UInt32 big-endian),
    /// apiVersion, endpoint, model, query count (UInt64 BE) then each name and value sorted by
    /// name then value bytes, scope, namespace (byte 0 if nil, else byte 1 and the string),
    /// normalizedBody. Every string/byte field is its length as UInt64 BE followed by its bytes.
    public var key: CacheKey {
        var encoding: [UInt8] = []
        encoding.reserveCapacity(normalizedBody.count + 256)
        Self.appendBigEndian(UInt32(Self.schemeVersion), to: &encoding)
        for field in [apiVersion, endpoint, model] {
            Self.appendField(field.utf8, to: &encoding)
        }
        let sortedQuery = query.sorted(by: queryOrder)
        Self.appendBigEndian(UInt64(sortedQuery.count), to: &encoding)
        for item in sortedQuery {
            Self.appendField(item.name.utf8, to: &encoding)
            Self.appendField(item.value.utf8, to: &encoding)
        }
        Self.appendField(scope.utf8, to: &encoding)
        if let namespace {
            encoding.append(1)
            Self.appendField(namespace.utf8, to: &encoding)
        } else {
            encoding.append(0)
        }
        Self.appendField(normalizedBody, to: &encoding)
        return CacheKey(bytes: Digest.sha256(encoding))!
    }

    private static func appendField(_ bytes: some Collection<UInt8>, to encoding: inout [UInt8]) {
        appendBigEndian(UInt64(bytes.count), to: &encoding)
        encoding.append(contentsOf: bytes)
    }

    private static func appendBigEndian(_ value: some FixedWidthInteger, to encoding: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { encoding.append(contentsOf: $0) }
    }
}

/// Orders query items by the UTF-8 bytes of the name, then of the value.
private func queryOrder(_ a: (name: String, value: String), _ b: (name: String, value: String)) -> Bool {
    if !a.name.utf8.elementsEqual(b.name.utf8) {
        return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
    }
    return a.value.utf8.lexicographicallyPrecedes(b.value.utf8)
}

/// The query parameters that enter the key (SPEC §3), sorted by name then value (UTF-8 bytes).
///
/// Credentials (`key`, `access_token`, `oauth_token`, matched case-insensitively) never enter.
/// GET routes keep every other parameter. POST routes keep only those that change the answer:
/// `alt`, `$alt`, `fields`, `prettyPrint`, `$.xgafv` (matched case-insensitively, kept as spelled).
/// Pass percent-decoded names and values (`%24alt` must arrive as `$alt`).
public func keyQuery(_ items: [(name: String, value: String)], isGET: Bool) -> [(name: String, value: String)] {
    let credentials: Set<String> = ["key", "access_token", "oauth_token"]
    let answerChanging: Set<String> = ["alt", "$alt", "fields", "prettyprint", "$.xgafv"]
    return items
        .filter { item in
            let name = item.name.lowercased()
            return !credentials.contains(name) && (isGET || answerChanging.contains(name))
        }
        .sorted(by: queryOrder)
}

/// The per-key partition tag: `key:` + hex HMAC-SHA-256 with `salt` as the HMAC key and the
/// credential's UTF-8 bytes as the message.
public func scopeTag(credential: String, salt: [UInt8]) -> String {
    "key:" + Digest.hex(Digest.hmacSHA256(key: salt, message: Array(credential.utf8)))
}
