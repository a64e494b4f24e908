import Foundation
import GemcacheKey
import GemcacheStore
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// Cluster-wide coalescing: one instance calls upstream for a key while the others wait for its answer.
extension SharedTier {

    /// The outcome of asking to be the one instance that calls upstream for a key.
    enum Claim: Sendable {
        /// A fresh entry is there after all.
        case found(CacheEntry)
        /// This instance calls upstream; ``release(_:token:)`` the claim afterwards.
        case won(token: Int64)
        /// Another instance is calling upstream for the key.
        case taken
        /// The tier is degraded: call upstream without coordinating.
        case unavailable
    }

    /// Looks up `key` and, when it has no fresh entry, claims it for `duration` (taking over an expired
    /// claim of a crashed instance), in one round trip.
    func claim(_ key: CacheKey, for duration: Duration) async -> Claim {
        let (keyBytes, time, token) = (ByteBuffer(bytes: key.bytes), now(), Int64.random(in: 1...Int64.max))
        let until = time + duration.milliseconds
        let outcome = await perform("claim") { client -> (ByteBuffer?, Int64?) in
            let rows = try await client.query(
                """
                WITH found AS (SELECT record FROM gemcache_entries WHERE key = \(keyBytes) AND expires_at > \(time)),
                claimed AS (
                    INSERT INTO gemcache_claims (key, token, claimed_until)
                    SELECT \(keyBytes), \(token), \(until) WHERE NOT EXISTS (SELECT 1 FROM found)
                    ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, claimed_until = EXCLUDED.claimed_until
                        WHERE gemcache_claims.claimed_until < \(time)
                    RETURNING token)
                SELECT (SELECT record FROM found), (SELECT token FROM claimed)
                """
            )
            for try await row in rows.decode((ByteBuffer?, Int64?).self) { return row }
            return (nil, nil)
        }
        guard let (record, won) = outcome else { return .unavailable }
        if let entry = record.flatMap({ self.entry($0, for: key) }) {
            state.withLock { $0.hits += 1 }
            return .found(entry)
        }
        return won == token ? .won(token: token) : .taken
    }

    /// Gives up a claim won with `token` (a claim another instance has taken over since stays).
    func release(_ key: CacheKey, token: Int64) async {
        let keyBytes = ByteBuffer(bytes: key.bytes)
        _ = await perform("release") { client in
            try await client.query("DELETE FROM gemcache_claims WHERE key = \(keyBytes) AND token = \(token)")
        }
    }

    /// Waits for the instance holding the claim on `key` to store its answer, looking every
    /// ``claimPollInterval``. Returns nil, for the caller to call upstream itself, when the claim ends
    /// without an entry (the answer was not storable), at `deadline`, or when the tier degrades.
    func awaitEntry(_ key: CacheKey, until deadline: ContinuousClock.Instant) async -> CacheEntry? {
        let keyBytes = ByteBuffer(bytes: key.bytes)
        while ContinuousClock.now < deadline {
            let time = now()
            let found = await perform("await claim") { client -> (ByteBuffer?, Bool)? in
                let rows = try await client.query(
                    """
                    SELECT (SELECT record FROM gemcache_entries WHERE key = \(keyBytes) AND expires_at > \(time)),
                           EXISTS (SELECT 1 FROM gemcache_claims WHERE key = \(keyBytes) AND claimed_until >= \(time))
                    """
                )
                for try await row in rows.decode((ByteBuffer?, Bool).self) { return row }
                return nil
            }
            guard let found = found ?? nil else { return nil }
            let (record, claimed) = found
            if let record {
                state.withLock { $0.hits += 1 }
                return entry(record, for: key)
            }
            if !claimed { return nil }
            try? await Task.sleep(for: Self.claimPollInterval)
        }
        return nil
    }
}
