import GemcacheKey
import HTTPTypes
import Synchronization

/// Who may use the proxy and who may be served a shared entry (SPEC §8).
///
/// - Passthrough mode: clients send their own Gemini key. With `cache.scope: shared`, a cached
///   answer is served only to a key the upstream accepted within `auth.verify_ttl`; the acceptance is
///   remembered as the key's salted hash, never the key.
/// - Managed mode: clients present one of the proxy tokens; the proxy holds the upstream keys.
/// - Replay (`cache.mode: replay`, SPEC §11): no upstream, nothing to protect it from; every client is
///   admitted, with or without a credential, and may be served every recorded answer.
final class AccessControl: Sendable {
    private let mode: ProxyConfiguration.Auth.Mode
    private let admitsEveryone: Bool
    /// SHA-256 of each proxy token (managed mode), so tokens are compared as hashes.
    private let clientTokens: Set<[UInt8]>
    private let verifiesSharedHits: Bool
    private let verifyTTL: Duration
    private let accepted = Mutex<[String: ContinuousClock.Instant]>([:])

    init(configuration: ProxyConfiguration, clientTokens: [String]) {
        mode = configuration.auth.mode
        admitsEveryone = configuration.cache.mode == .replay
        self.clientTokens = Set(clientTokens.map { Digest.sha256($0) })
        verifiesSharedHits = !admitsEveryone && configuration.auth.mode == .passthrough && configuration.effectiveScope == .shared
        verifyTTL = configuration.auth.verifyTTL
    }

    /// Admits a request on a cached route (SPEC §8, §11).
    /// - Returns: The credential the request is keyed with: its own, or ``Credential/anonymous`` in replay.
    /// - Throws: 401 in managed mode without a proxy token; Google's 403 without any credential.
    func admitCached(credential: Credential?) throws(ProxyError) -> Credential {
        if admitsEveryone { return credential ?? .anonymous }
        try admitToken(credential)
        guard let credential else { throw .missingCredential }
        return credential
    }

    /// Admits a request on a route that is not cached, which goes straight to the upstream: 401 in
    /// managed mode without a proxy token; in replay, where nothing reaches the upstream, 404.
    func admit(credential: Credential?) throws(ProxyError) {
        if admitsEveryone { throw .notRecordedRoute }
        try admitToken(credential)
    }

    /// Managed mode: 401 unless the request's credential is a proxy token.
    private func admitToken(_ credential: Credential?) throws(ProxyError) {
        guard mode == .managed else { return }
        guard let credential, isProxyToken(credential.value) else {
            throw .invalidProxyToken
        }
    }

    /// Whether `credential` may be served a stored answer without the slow path's checks: a proxy token
    /// in managed mode; in passthrough mode any key with per-key scope, and with shared scope only a
    /// key the upstream accepted lately.
    func mayServeCached(credential: String, salt: [UInt8]) -> Bool {
        if admitsEveryone { return true }
        return switch mode {
        case .managed: isProxyToken(credential)
        case .passthrough: !verifiesSharedHits || mayServeCached(credentialTag: scopeTag(credential: credential, salt: salt))
        }
    }

    private func isProxyToken(_ credential: String) -> Bool {
        clientTokens.contains(Digest.sha256(credential))
    }

    /// Whether a client whose credential has `tag` may be served a cached answer now.
    func mayServeCached(credentialTag tag: String) -> Bool {
        guard verifiesSharedHits else { return true }
        return accepted.withLock { $0[tag].map { ContinuousClock.now - $0 < verifyTTL } ?? false }
    }

    /// The upstream accepted the credential with `tag` (it answered 200).
    func recordAccepted(credentialTag tag: String) {
        guard verifiesSharedHits else { return }
        accepted.withLock { accepted in
            if accepted.count > 100_000 { accepted.removeAll() }
            accepted[tag] = .now
        }
    }
}
