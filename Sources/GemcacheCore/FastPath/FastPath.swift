import GemcacheKey
import GemcacheStore
import HTTPTypes
import NIOCore
import Synchronization

/// What every connection's ``FastPathHandler`` shares: the store, the ledger and the settings a raw
/// key depends on.
///
/// The fast path answers, below Hummingbird (no router, no async hop, no header objects), a request
/// whose stored answer it can find: a byte-identical repeat through its raw key (``RawRequestKey``:
/// the slow path records `raw key → cache key` aliases when it stores or serves an answer), or, when
/// the bytes are new, through the cache key itself (``canonicalKey(method:target:scope:namespace:body:)``),
/// recording the alias for the next repeat.
final class FastPath: Sendable {
    let store: CacheStore
    let ledger: Ledger
    let access: AccessControl
    /// Per-key scope in passthrough mode needs no check beyond the key's own partition.
    let checksCredentials: Bool
    let normalize: NormalizationLevel
    /// Per-key scope: the tag is `scopeTag(credential:salt:)`; shared scope: `shared` for everyone.
    let sharedScope: Bool
    /// The largest body the fast path buffers to hash; larger requests stream to the slow path.
    let maxBody: Int
    /// How long a client may stall (see ``FastPathHandler``): `limits.client_timeout`.
    let clientTimeout: TimeAmount
    /// Traces of the hits, when `telemetry.otlp_endpoint` is set.
    let tracing: RequestTracing?
    let now: @Sendable () -> Int64
    private let answered = Atomic<Int>(0)

    init(
        configuration: ProxyConfiguration,
        store: CacheStore,
        ledger: Ledger,
        access: AccessControl,
        tracing: RequestTracing? = nil,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock
    ) {
        self.store = store
        self.ledger = ledger
        self.access = access
        self.checksCredentials = configuration.auth.mode == .managed || configuration.effectiveScope == .shared
        self.normalize = configuration.cache.normalize
        self.sharedScope = configuration.effectiveScope == .shared
        self.maxBody = min(configuration.limits.maxBody, Self.bodyLimit)
        let timeout = configuration.limits.clientTimeout.components
        self.clientTimeout = .nanoseconds(timeout.seconds * 1_000_000_000 + timeout.attoseconds / 1_000_000_000)
        self.tracing = tracing
        self.now = now
    }

    /// Bodies above this go to the slow path without being buffered here (prompts are mostly small).
    static let bodyLimit = 256 << 10
    /// Heads above this are left to NIO's decoder.
    static let headLimit = 16 << 10

    /// Whether the credential may be served here (managed: a proxy token; shared scope: a key the
    /// upstream accepted lately); when not, the slow path answers (401, or a verifying upstream call).
    func admits(credential: UnsafeRawBufferPointer) -> Bool {
        !checksCredentials || access.mayServeCached(credential: String(decoding: credential, as: UTF8.self), salt: store.scopeSalt)
    }

    /// The cache key of an eligible request whose bytes have no alias, computed from its parts as the slow
    /// path computes it (``RequestKey/key(route:query:scope:namespace:canonical:fieldMask:)``); nil when
    /// the slow path must judge the request: not a cached route (or batchEmbedContents), a system
    /// parameter the proxy does not know (never stored), a body that does not normalize or is larger
    /// than ``KeyingPool/inlineLimit`` (keyed off the event loops).
    /// - Parameters:
    ///   - target: The request target as sent.
    ///   - scope: `shared` or the credential's tag.
    func canonicalKey(
        method: RawRequestKey.Method,
        target: UnsafeRawBufferPointer,
        scope: UnsafeRawBufferPointer,
        namespace: UnsafeRawBufferPointer?,
        body: UnsafeRawBufferPointer
    ) -> CacheKey? {
        guard body.count <= KeyingPool.inlineLimit else { return nil }
        let mark = target.firstIndex(of: UInt8(ascii: "?"))
        let path = String(decoding: target[..<(mark ?? target.count)], as: UTF8.self)
        guard let route = try? CachedRoute(method: method == .get ? .get : .post, path: path), route.operation != .batchEmbedContents else {
            return nil
        }
        let query = ForwardedRequest.queryItems(mark.map { String(decoding: target[($0 + 1)...], as: UTF8.self) })
        guard !RequestKey.hasUnknownSystemParameter(query, isGET: route.isGET),
            let canonical = try? RequestKey.canonical(Array(body), route: route, level: normalize)
        else { return nil }
        return RequestKey.key(
            route: route,
            query: query,
            scope: String(decoding: scope, as: UTF8.self),
            namespace: namespace.map { String(decoding: $0, as: UTF8.self) },
            canonical: canonical,
            fieldMask: nil
        )
    }

    /// Hits this process answered on the fast path.
    var hits: Int { answered.load(ordering: .relaxed) }

    func countHit() {
        answered.wrappingAdd(1, ordering: .relaxed)
    }
}
