import GemcacheKey
import GemcacheStore
import NIOCore
import Synchronization

/// What every connection's ``FastPathHandler`` shares: the store, the ledger and the settings a raw
/// key depends on.
///
/// The fast path answers a byte-identical repeat of a generateContent request whose answer is
/// stored, below Hummingbird: no router, no async hop, no header objects. The slow path
/// (``GeminiProxy``) records `raw key → cache key` aliases when it stores or serves an answer; see
/// ``RawRequestKey``.
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
    let now: @Sendable () -> Int64
    private let answered = Atomic<Int>(0)

    init(
        configuration: ProxyConfiguration,
        store: CacheStore,
        ledger: Ledger,
        access: AccessControl,
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

    /// Hits this process answered on the fast path.
    var hits: Int { answered.load(ordering: .relaxed) }

    func countHit() {
        answered.wrappingAdd(1, ordering: .relaxed)
    }
}
