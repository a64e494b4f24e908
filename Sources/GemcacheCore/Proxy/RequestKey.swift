import Foundation
import HTTPTypes

/// How a cached request is keyed (SPEC §3): shared by the proxy and `/_gemcache/explain`, so that the
/// explained key is the real one.
struct RequestKey {
    let key: CacheKey
    /// The normalized body as it entered the key.
    let canonical: [UInt8]
    /// The scope the key was made with.
    let scope: CacheEntry.Scope
    /// The scope as it enters the key: `shared` or the credential's tag.
    let scopeTag: String
    /// The credential's salted hash, whatever the scope (for shared-scope verification).
    let credentialTag: String
    let namespace: String?
    /// The request's cache controls (SPEC §4).
    let controls: RequestControls
    /// The model for stats: from the path, or the body's `model` on the OpenAI surface.
    let model: String
    /// The parsed body on the OpenAI surface (its `model` and `stream` fields matter); nil elsewhere,
    /// where the key needs only the canonical form.
    let openAIBody: [String: Any]?

    /// - Throws: 403 without a credential, 400 for malformed JSON or controls.
    init(
        route: CachedRoute, query: [(name: String, value: String)], headers: HTTPFields, body: [UInt8],
        configuration: ProxyConfiguration, salt: [UInt8]
    ) throws(ProxyError) {
        guard let credential = ForwardedRequest.credential(headers: headers, query: query) else {
            throw .missingCredential
        }
        controls = try RequestControls(headers: headers)
        if route.isGET {
            canonical = []
            openAIBody = nil
        } else {
            do {
                canonical = try BodyNormalizer.normalize(body, level: configuration.cache.normalize, dialect: route.dialect)
            } catch {
                throw .invalidArgument(error.message)
            }
            openAIBody = route.isOpenAI ? StorePolicy.parse(body) as? [String: Any] : nil
        }
        let shared = configuration.effectiveScope == .shared
        scope = shared ? .shared : .perKey
        credentialTag = GemcacheCore.scopeTag(credential: credential, salt: salt)
        scopeTag = shared ? "shared" : credentialTag
        namespace = controls.namespace
        if let named = openAIBody?["model"] as? String {
            model = try CachedRoute.validModel(named.hasPrefix("models/") ? named.dropFirst(7) : Substring(named))
        } else {
            model = route.model
        }
        key = CacheKeyComponents(
            apiVersion: route.apiVersion, endpoint: route.endpoint, model: route.model,
            query: keyQuery(query, isGET: route.isGET), scope: scopeTag,
            namespace: controls.namespace, normalizedBody: canonical
        ).key
    }
}
