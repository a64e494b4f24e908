import GemcacheKey
import Synchronization

/// The upstream keys of managed mode (SPEC §8), one per Google project since quota is per project:
/// used in turn; a key answered 429 rests until its retry delay has passed while the others carry on.
final class UpstreamKeyPool: Sendable {
    /// One key lent to one upstream attempt.
    struct Lease: Sendable {
        let index: Int
        let key: String
        /// A short hash prefix that names the key in stats and logs; never the key itself.
        let fingerprint: String
    }

    private let keys: [String]
    private let fingerprints: [String]
    private let state: Mutex<(next: Int, restingUntil: [ContinuousClock.Instant])>
    /// Counts one upstream call for a key fingerprint.
    private let onUse: @Sendable (String) -> Void

    /// - Returns: nil when `keys` is empty.
    init?(keys: [String], onUse: @escaping @Sendable (String) -> Void = { _ in }) {
        guard !keys.isEmpty else { return nil }
        self.keys = keys
        self.fingerprints = keys.map { Self.fingerprint($0) }
        self.state = Mutex((0, Array(repeating: .now, count: keys.count)))
        self.onUse = onUse
    }

    /// `sha256:` and the first 8 hex digits of the key's SHA-256.
    static func fingerprint(_ key: String) -> String {
        "sha256:" + Digest.hex(Digest.sha256(key).prefix(4))
    }

    /// The next key that is not resting, in turn; when all rest, the one that wakes first.
    func lease() -> Lease {
        let index = state.withLock { state in
            let now = ContinuousClock.now
            let order = (0..<keys.count).map { (state.next + $0) % keys.count }
            let chosen = order.first { state.restingUntil[$0] <= now } ?? order.min { state.restingUntil[$0] < state.restingUntil[$1] }!
            state.next = (chosen + 1) % keys.count
            return chosen
        }
        return Lease(index: index, key: keys[index], fingerprint: fingerprints[index])
    }

    /// Counts one upstream call made with `lease`.
    func recordUse(_ lease: Lease) {
        onUse(lease.fingerprint)
    }

    /// Rests a key that was answered 429 for `delay`.
    func rest(_ lease: Lease, for delay: Duration) {
        state.withLock { $0.restingUntil[lease.index] = max($0.restingUntil[lease.index], .now + delay) }
    }
}
