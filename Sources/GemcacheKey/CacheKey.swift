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
    /// The `X-Goog-FieldMask` header, which selects the answer's fields; nil without one.
    public var fieldMask: String?

    /// Creates the components; a leading `models/` is stripped from `model`.
    public init(
        apiVersion: String,
        endpoint: String,
        model: String,
        query: [(name: String, value: String)] = [],
        scope: String,
        namespace: String? = nil,
        normalizedBody: [UInt8] = [],
        fieldMask: String? = nil
    ) {
        self.apiVersion = apiVersion
        self.endpoint = endpoint
        self.model = model.hasPrefix("models/") ? String(model.dropFirst("models/".count)) : model
        self.query = query
        self.scope = scope
        self.namespace = namespace
        self.normalizedBody = normalizedBody
        self.fieldMask = fieldMask
    }

    /// SHA-256 over an unambiguous encoding, in this order: scheme version (UInt32 big-endian),
    /// apiVersion, endpoint, model, query count (UInt64 BE) then each name and value sorted by
    /// name then value bytes, scope, namespace (byte 0 if nil, else byte 1 and the string),
    /// normalizedBody, and the field mask only when there is one (so keys without one are unchanged).
    /// Every string/byte field is its length as UInt64 BE followed by its bytes.
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
        if let fieldMask {
            Self.appendField(fieldMask.utf8, to: &encoding)
        }
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

/// What a query parameter is to the cache (SPEC §3): the one rule that the key, `/_gemcache/explain`
/// and, through the aliases the slow path records, the fast path follow.
public enum QueryParameter: Equatable, Sendable {
    /// `key`, `access_token`, `oauth_token`: never in a key.
    case credential
    /// Changes the answer: enters the key.
    case keyed
    /// A `$` system parameter the proxy does not know: it may change the answer, so the request is
    /// answered but not stored.
    case unknownSystem
    /// Does not change the answer (a POST route's other parameters): left out of the key.
    case ignored

    /// Names matched case-insensitively (gemini-api.md §8).
    static let credentials: Set<String> = ["key", "access_token", "oauth_token"]
    /// Parameters that change the answer on every route; `alt` and `$alt` are one parameter.
    static let answerChanging: Set<String> = ["alt", "$alt", "fields", "$fields", "prettyprint", "$prettyprint", "$outputdefaults", "$.xgafv"]

    /// The role of the parameter `name` (percent-decoded) on a GET or POST route.
    public static func role(of name: String, isGET: Bool) -> QueryParameter {
        let name = name.lowercased()
        if credentials.contains(name) { return .credential }
        if answerChanging.contains(name) { return .keyed }
        if name.hasPrefix("$") { return .unknownSystem }
        return isGET ? .keyed : .ignored
    }

    /// The response format asked for: the last `alt` or `$alt` value (`json`, `json;enum-encoding=int`,
    /// `sse`), nil when neither is given.
    public static func alt(in items: [(name: String, value: String)]) -> String? {
        items.last { $0.name == "alt" || $0.name == "$alt" }?.value
    }
}

/// The query parameters that enter the key (SPEC §3, ``QueryParameter``), sorted by name then value
/// (UTF-8 bytes); `$alt` enters as `alt`, other names as spelled. Pass percent-decoded names and values
/// (`%24alt` must arrive as `$alt`).
public func keyQuery(_ items: [(name: String, value: String)], isGET: Bool) -> [(name: String, value: String)] {
    items
        .filter { [.keyed, .unknownSystem].contains(QueryParameter.role(of: $0.name, isGET: isGET)) }
        .map { $0.name == "$alt" ? (name: "alt", value: $0.value) : $0 }
        .sorted(by: queryOrder)
}

/// The per-key partition tag: `key:` + hex HMAC-SHA-256 with `salt` as the HMAC key and the
/// credential's UTF-8 bytes as the message.
public func scopeTag(credential: String, salt: [UInt8]) -> String {
    "key:" + Digest.hex(Digest.hmacSHA256(key: salt, message: Array(credential.utf8)))
}
