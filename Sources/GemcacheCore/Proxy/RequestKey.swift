import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes

/// How a cached request is keyed (SPEC §3): shared by the proxy and `/_gemcache/explain`, so that the
/// explained key is the real one.
struct RequestKey {
    let key: CacheKey
    /// The normalized body as it entered the key.
    let canonical: [UInt8]
    let scope: KeyScope
    let namespace: String?
    /// The request's cache controls (SPEC §4).
    let controls: RequestControls
    /// The model for stats: from the path, or the body's `model` on the OpenAI surface.
    let model: String
    /// The parsed body on the OpenAI surface (its `model` and `stream` fields matter); nil elsewhere,
    /// where the key needs only the canonical form.
    let openAIBody: [String: Any]?

    /// - Parameter credential: The request's one credential.
    /// - Throws: 400 for malformed JSON or controls.
    init(
        route: CachedRoute,
        query: [(name: String, value: String)],
        headers: HTTPFields,
        body: [UInt8],
        credential: Credential,
        configuration: ProxyConfiguration,
        salt: [UInt8]
    ) throws(ProxyError) {
        var controls = try RequestControls(headers: headers)
        if Self.hasUnknownSystemParameter(query, isGET: route.isGET) { controls.noStore = true }
        self.controls = controls
        canonical = try Self.canonical(body, route: route, level: configuration.cache.normalize)
        openAIBody = route.isOpenAI ? StorePolicy.parse(body) as? [String: Any] : nil
        scope = KeyScope(credential: credential, shared: configuration.effectiveScope == .shared, salt: salt)
        namespace = controls.namespace
        if let named = openAIBody?["model"] as? String {
            model = try CachedRoute.validModel(named.hasPrefix("models/") ? named.dropFirst(7) : Substring(named))
        } else {
            model = route.model
        }
        key = Self.key(
            route: route,
            query: query,
            scope: scope.tag,
            namespace: controls.namespace,
            canonical: canonical,
            fieldMask: Self.fieldMask(headers)
        )
    }

    /// The cache key of a request on `route` from its parts (SPEC §3): the one place both paths key,
    /// the slow path through ``init(route:query:headers:body:credential:configuration:salt:)`` and the
    /// fast path for a request whose bytes it has not seen (``FastPath/canonicalKey(method:target:scope:namespace:body:)``).
    /// - Parameters:
    ///   - query: The percent-decoded query items, all of them (the key picks its own).
    ///   - scope: `shared` or the credential's tag.
    ///   - canonical: The normalized body (empty on GET routes).
    static func key(
        route: CachedRoute,
        query: [(name: String, value: String)],
        scope: String,
        namespace: String?,
        canonical: [UInt8],
        fieldMask: String?
    ) -> CacheKey {
        CacheKeyComponents(
            apiVersion: route.apiVersion,
            endpoint: route.endpoint,
            model: route.model,
            query: keyQuery(query, isGET: route.isGET),
            scope: scope,
            namespace: namespace,
            normalizedBody: canonical,
            fieldMask: fieldMask
        ).key
    }

    /// Whether the query has a system parameter the proxy does not know: it may change the answer, so
    /// the request is answered but never stored, nor served from the store (SPEC §3).
    static func hasUnknownSystemParameter(_ query: [(name: String, value: String)], isGET: Bool) -> Bool {
        query.contains { QueryParameter.role(of: $0.name, isGET: isGET) == .unknownSystem }
    }

    /// The body as it enters the key: normalized, or empty on GET routes.
    /// - Throws: 400 when the body is not JSON the normalizer takes.
    static func canonical(_ body: [UInt8], route: CachedRoute, level: NormalizationLevel) throws(ProxyError) -> [UInt8] {
        guard !route.isGET else { return [] }
        do {
            return try BodyNormalizer.normalize(body, level: level, dialect: route.dialect)
        } catch {
            throw .invalidArgument(error.message)
        }
    }

    /// `X-Goog-FieldMask`, which selects the answer's fields like `$fields` (SPEC §3); repeated
    /// headers joined with commas.
    static func fieldMask(_ headers: HTTPFields) -> String? {
        let values = headers[values: .googFieldMask]
        return values.isEmpty ? nil : values.joined(separator: ",")
    }
}

/// Who may share a request's entry (SPEC §3, §8), as its key and its stored entry record it.
struct KeyScope: Sendable {
    /// The scope recorded in stored entries (for imports under another salt).
    let kind: CacheEntry.Scope
    /// The scope as it enters the key: `shared`, or the credential's tag.
    let tag: String
    /// The credential's salted hash, whatever the scope: the partition for quotas, and what shared-scope
    /// verification remembers.
    let credentialTag: String

    init(credential: Credential, shared: Bool, salt: [UInt8]) {
        kind = shared ? .shared : .perKey
        credentialTag = GemcacheKey.scopeTag(credential: credential.value, salt: salt)
        tag = shared ? "shared" : credentialTag
    }
}
