/// One stored answer, in the form it is replayed: status, the header lines to send, and the body.
///
/// `headerBlock` holds HTTP/1.1 header lines (`name: value\r\n` each) so that a hit can be written
/// without building header objects; hop-by-hop and per-response headers are never in it.
public struct CacheEntry: Sendable, Equatable {
    public var status: Int
    public var headerBlock: [UInt8]
    public var body: [UInt8]
    /// Unix time in milliseconds.
    public var storedAt: Int64
    public var expiresAt: Int64
    /// Model id without `models/`, for purging and per-model stats.
    public var model: String
    public var namespace: String?
    /// The endpoint kind, as in the cache key.
    public var endpoint: String
    /// `usageMetadata.promptTokenCount` and `totalTokenCount` of the answer (0 if absent).
    public var promptTokens: Int
    public var totalTokens: Int
    /// Whether the key holds a client's scope tag; nil for entries stored before records said so.
    public var scope: Scope?
    /// The canonical request the answer was recorded for (`cache.mode: record`, SPEC §11), as JSON in
    /// the form `POST /_gemcache/explain` takes; nil for entries stored otherwise.
    public var request: [UInt8]?

    /// The cache scope an entry was keyed with (SPEC §3).
    public enum Scope: String, Sendable {
        /// Keyed with `shared`: found under any salt.
        case shared
        /// Keyed with the salted tag of a client's credential: found only under the same salt.
        case perKey = "per_key"
    }

    public init(
        status: Int,
        headerBlock: [UInt8],
        body: [UInt8],
        storedAt: Int64,
        expiresAt: Int64,
        model: String,
        namespace: String?,
        endpoint: String,
        promptTokens: Int,
        totalTokens: Int,
        scope: Scope?,
        request: [UInt8]? = nil
    ) {
        self.status = status
        self.headerBlock = headerBlock
        self.body = body
        self.storedAt = storedAt
        self.expiresAt = expiresAt
        self.model = model
        self.namespace = namespace
        self.endpoint = endpoint
        self.promptTokens = promptTokens
        self.totalTokens = totalTokens
        self.scope = scope
        self.request = request
    }

    /// The replayed headers as name/value pairs.
    public var headers: [(name: String, value: String)] {
        String(decoding: headerBlock, as: UTF8.self).split(separator: "\r\n").compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
        }
    }

    /// Encodes header pairs as the lines of `headerBlock`.
    public static func headerBlock(_ headers: [(name: String, value: String)]) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in headers {
            block.append(contentsOf: name.utf8)
            block.append(contentsOf: ": ".utf8)
            block.append(contentsOf: value.utf8)
            block.append(contentsOf: "\r\n".utf8)
        }
        return block
    }
}
