import NIOCore

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

    /// The cache scope an entry was keyed with (SPEC §3).
    public enum Scope: String, Sendable {
        /// Keyed with `shared`: found under any salt.
        case shared
        /// Keyed with the salted tag of a client's credential: found only under the same salt.
        case perKey = "per_key"
    }

    public init(
        status: Int, headerBlock: [UInt8], body: [UInt8], storedAt: Int64, expiresAt: Int64,
        model: String, namespace: String?, endpoint: String, promptTokens: Int, totalTokens: Int, scope: Scope?
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

// MARK: - Record format

/// The byte layout of an entry in the `entries` database (record version 2):
/// `u8 version, u16 status, i64 storedAt, i64 expiresAt, u32 promptTokens, u32 totalTokens, u8 scope,
/// u16+bytes model, u8 hasNamespace (+u16+bytes), u16+bytes endpoint, u32+bytes headerBlock, body…`.
/// All integers big-endian. The body comes last so that a reader can slice it without copying twice.
/// Version 1 records (written before entries kept their scope) lack the scope byte and are still read,
/// with an unknown scope. `scope` is 0 unknown, 1 shared, 2 per key.
enum EntryRecord {
    static let version: UInt8 = 2
    /// The offset of the model's length: the end of the fixed-size fields of a record of `version`.
    static func fixedSize(version: UInt8) -> Int? {
        switch version {
        case 1: 27
        case 2: 28
        default: nil
        }
    }

    static func encode(_ entry: CacheEntry) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(64 + entry.model.utf8.count + entry.headerBlock.count + entry.body.count)
        buffer.writeInteger(version)
        buffer.writeInteger(UInt16(clamping: entry.status))
        buffer.writeInteger(entry.storedAt)
        buffer.writeInteger(entry.expiresAt)
        buffer.writeInteger(UInt32(clamping: entry.promptTokens))
        buffer.writeInteger(UInt32(clamping: entry.totalTokens))
        buffer.writeInteger(UInt8(entry.scope.map { $0 == .shared ? 1 : 2 } ?? 0))
        writeShortString(entry.model, to: &buffer)
        if let namespace = entry.namespace {
            buffer.writeInteger(UInt8(1))
            writeShortString(namespace, to: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
        }
        writeShortString(entry.endpoint, to: &buffer)
        buffer.writeInteger(UInt32(entry.headerBlock.count))
        buffer.writeBytes(entry.headerBlock)
        buffer.writeBytes(entry.body)
        return Array(buffer.readableBytesView)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> CacheEntry? {
        var buffer = ByteBuffer(bytes: bytes)
        guard let recordVersion = buffer.readInteger(as: UInt8.self), fixedSize(version: recordVersion) != nil,
            let status = buffer.readInteger(as: UInt16.self),
            let storedAt = buffer.readInteger(as: Int64.self),
            let expiresAt = buffer.readInteger(as: Int64.self),
            let promptTokens = buffer.readInteger(as: UInt32.self),
            let totalTokens = buffer.readInteger(as: UInt32.self),
            let scopeByte = recordVersion == 1 ? 0 : buffer.readInteger(as: UInt8.self),
            let model = readShortString(&buffer),
            let hasNamespace = buffer.readInteger(as: UInt8.self)
        else { return nil }
        var namespace: String?
        if hasNamespace == 1 {
            guard let value = readShortString(&buffer) else { return nil }
            namespace = value
        }
        guard let endpoint = readShortString(&buffer),
            let headerLength = buffer.readInteger(as: UInt32.self),
            let headerBlock = buffer.readBytes(length: Int(headerLength))
        else { return nil }
        return CacheEntry(
            status: Int(status), headerBlock: headerBlock, body: buffer.readBytes(length: buffer.readableBytes) ?? [],
            storedAt: storedAt, expiresAt: expiresAt, model: model, namespace: namespace, endpoint: endpoint,
            promptTokens: Int(promptTokens), totalTokens: Int(totalTokens),
            scope: scopeByte == 1 ? .shared : scopeByte == 2 ? .perKey : nil
        )
    }

    /// The times of a record without decoding the rest (for index upkeep).
    static func times(_ bytes: UnsafeRawBufferPointer) -> (storedAt: Int64, expiresAt: Int64)? {
        var buffer = ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes.prefix(19)))
        guard let recordVersion = buffer.readInteger(as: UInt8.self), fixedSize(version: recordVersion) != nil,
            buffer.readInteger(as: UInt16.self) != nil,
            let storedAt = buffer.readInteger(as: Int64.self), let expiresAt = buffer.readInteger(as: Int64.self)
        else { return nil }
        return (storedAt, expiresAt)
    }

    private static func writeShortString(_ string: String, to buffer: inout ByteBuffer) {
        let bytes = Array(string.utf8.prefix(Int(UInt16.max)))
        buffer.writeInteger(UInt16(bytes.count))
        buffer.writeBytes(bytes)
    }

    private static func readShortString(_ buffer: inout ByteBuffer) -> String? {
        guard let length = buffer.readInteger(as: UInt16.self), let bytes = buffer.readBytes(length: Int(length)) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
