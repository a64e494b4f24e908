import GemcacheStore
import Synchronization

/// Whom a counted request is attributed to (SPEC §7): its namespace (`X-Gemcache-Namespace`, `""` for
/// none) and its client, a fingerprint of its credential's salted tag, never the credential.
public struct Attribution: Sendable, Hashable {
    public var namespace: String
    public var client: String

    init(namespace: String?, client: String) {
        self.namespace = namespace ?? ""
        self.client = client
    }

    /// A client's name: the first 12 hex digits of its credential's salted tag (`key:<HMAC hex>`, the
    /// proxy token's in managed mode), 48 bits: enough to tell a thousand clients apart, and, the tag
    /// being a keyed hash, nothing that leads back to the credential.
    static func client(credentialTag: some StringProtocol) -> String {
        String((credentialTag.hasPrefix("key:") ? credentialTag.dropFirst(4) : credentialTag[...]).prefix(12))
    }
}

/// The namespaces and clients counted under their own names (SPEC §7): at most ``limit`` of each in
/// all, and at most ``perMinute`` of each within one minute (in this process); the rest are counted
/// as ``other``. This bounds the counters a client can make the store keep (a made-up key or
/// namespace per request), the stats document and the label sets of `/metrics`.
final class CountedNames: Sendable {
    static let limit = 1000
    static let perMinute = 200
    static let other = "other"

    private struct Names {
        var known: Set<String> = []
        var minute: Int64 = 0
        var thisMinute: Set<String> = []

        mutating func bounded(_ name: String, minute: Int64) -> String {
            if minute != self.minute {
                self.minute = minute
                thisMinute.removeAll(keepingCapacity: true)
            }
            guard !thisMinute.contains(name) else { return name }
            guard thisMinute.count < CountedNames.perMinute, known.contains(name) || known.count < CountedNames.limit else {
                return CountedNames.other
            }
            known.insert(name)
            thisMinute.insert(name)
            return name
        }
    }

    private let namespaces = Mutex(Names())
    private let clients = Mutex(Names())

    /// `attribution` with each name it may be counted under in `minute`.
    func bounded(_ attribution: Attribution, minute: Int64) -> Attribution {
        Attribution(
            namespace: namespaces.withLock { $0.bounded(attribution.namespace, minute: minute) },
            client: clients.withLock { $0.bounded(attribution.client, minute: minute) }
        )
    }

    /// Learns the names already counted (by this or another process on the store), so that the bound
    /// holds across restarts.
    func learn(namespaces: some Sequence<String>, clients: some Sequence<String>) {
        self.namespaces.withLock { $0.known.formUnion(namespaces) }
        self.clients.withLock { $0.known.formUnion(clients) }
    }
}
