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
        scope: Scope?
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
///
/// Every reader of a record (``decode(_:)``, the fast path's ``HitAnswer``, the shared tier's rows,
/// `gemcache import`) goes through ``Layout/init(_:)``, the one validation of a record: a record that
/// does not pass it is a miss, never served, whatever wrote it (an older build, a damaged disk, an
/// edited export, another instance).
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

    /// The times a record may hold, in Unix milliseconds: from 1970 to the end of the year 9999. Any
    /// of them subtracted from or added to the clock (or to a duration, at most ten years) stays far
    /// from the ends of `Int64`.
    static let times: ClosedRange<Int64> = 0...253_402_300_799_999

    /// Whether an answer with `status` may be replayed from the store with its body and a
    /// `Content-Length`: a final status that carries content (not 1xx, 204, 205 or 304, whose bodies
    /// a client would read as the start of the next answer).
    static func isReplayable(status: Int) -> Bool {
        (200...599).contains(status) && status != 204 && status != 205 && status != 304
    }

    /// Header names a record never holds: those the proxy never stores or replays
    /// (``ForwardedRequest/notReplayed``), among them the framing and hop-by-hop ones that would let
    /// stored bytes reframe an answer or steer the connection (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`) and per-delivery ones such as `Set-Cookie`. Lowercase, by length, so that a name
    /// is looked up with a few comparisons.
    static let unstoredHeaders: [[[UInt8]]] = {
        let names = ForwardedRequest.notReplayed.map { Array($0.lowercased().utf8) }
        var byLength = Array(repeating: [[UInt8]](), count: (names.map(\.count).max() ?? 0) + 1)
        for name in names { byLength[name.count].append(name) }
        return byLength
    }()

    /// Whether `name` is one of ``unstoredHeaders``, compared without ASCII case.
    static func isUnstored(_ name: Slice<UnsafeRawBufferPointer>) -> Bool {
        guard name.count < unstoredHeaders.count else { return false }
        return unstoredHeaders[name.count].contains { candidate in
            candidate.indices.allSatisfy { offset in
                let byte = name[name.startIndex + offset]
                return (byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte) == candidate[offset]
            }
        }
    }

    /// Where the fields of a valid record lie, read in place (no copies, no allocation).
    struct Layout {
        let status: Int
        let storedAt: Int64
        let expiresAt: Int64
        /// Token counts: 32-bit fields, so within ``TokenUsage/range``.
        let promptTokens: Int
        let totalTokens: Int
        let scope: CacheEntry.Scope?
        let model: Range<Int>
        let namespace: Range<Int>?
        let endpoint: Range<Int>
        /// `name: value\r\n` lines, each checked.
        let headerBlock: Range<Int>
        let body: Range<Int>

        /// Validates `record`: a known version; every length within the record; a replayable status;
        /// both times within ``EntryRecord/times`` and `expiresAt >= storedAt`; a header block of
        /// well-formed lines (``EntryRecord/checkHeaderBlock(_:)``).
        /// - Throws: ``RecordProblem`` naming the first fault.
        init(_ record: UnsafeRawBufferPointer) throws(RecordProblem) {
            guard let version = record.first else { throw .truncated }
            guard let fixedSize = EntryRecord.fixedSize(version: version) else { throw .version(version) }
            guard record.count >= fixedSize else { throw .truncated }
            status = Int(Self.integer(record, 1, UInt16.self))
            guard EntryRecord.isReplayable(status: status) else { throw .status(status) }
            storedAt = Int64(bitPattern: Self.integer(record, 3, UInt64.self))
            expiresAt = Int64(bitPattern: Self.integer(record, 11, UInt64.self))
            guard EntryRecord.times.contains(storedAt), EntryRecord.times.contains(expiresAt), expiresAt >= storedAt else {
                throw .times(storedAt: storedAt, expiresAt: expiresAt)
            }
            promptTokens = Int(Self.integer(record, 19, UInt32.self))
            totalTokens = Int(Self.integer(record, 23, UInt32.self))
            switch version == 1 ? 0 : record[27] {
            case 0: scope = nil
            case 1: scope = .shared
            case 2: scope = .perKey
            case let other: throw .scope(other)
            }
            var offset = fixedSize
            model = try Self.shortString(record, &offset)
            guard offset < record.count else { throw .truncated }
            let hasNamespace = record[offset]
            offset += 1
            switch hasNamespace {
            case 0: namespace = nil
            case 1: namespace = try Self.shortString(record, &offset)
            default: throw .truncated
            }
            endpoint = try Self.shortString(record, &offset)
            guard record.count - offset >= 4 else { throw .truncated }
            let headerLength = Int(Self.integer(record, offset, UInt32.self))
            offset += 4
            guard record.count - offset >= headerLength else { throw .truncated }
            headerBlock = offset..<(offset + headerLength)
            try EntryRecord.checkHeaderBlock(record[headerBlock])
            body = headerBlock.upperBound..<record.count
        }

        private static func integer<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _: T.Type) -> T {
            T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }

        /// The bytes of a `u16+bytes` field at `offset`, which moves past it.
        private static func shortString(_ record: UnsafeRawBufferPointer, _ offset: inout Int) throws(RecordProblem) -> Range<Int> {
            guard record.count - offset >= 2 else { throw .truncated }
            let length = Int(integer(record, offset, UInt16.self))
            guard record.count - offset - 2 >= length else { throw .truncated }
            defer { offset += 2 + length }
            return (offset + 2)..<(offset + 2 + length)
        }
    }

    /// Checks that `block` is made of `name: value\r\n` lines: a token name (RFC 9110 §5.6.2) that is
    /// not one of ``unstoredHeaders``, and a value of visible characters, spaces, tabs and bytes ≥ 0x80
    /// (no CR, LF, NUL or other control byte), so a replayed block can never end the head early, add
    /// a line of its own or reframe the answer. One pass over the bytes, no allocation.
    static func checkHeaderBlock(_ block: Slice<UnsafeRawBufferPointer>) throws(RecordProblem) {
        var index = block.startIndex
        var line = 1
        while index < block.endIndex {
            let nameStart = index
            while index < block.endIndex, isTokenByte(block[index]) { index += 1 }
            guard index > nameStart, index < block.endIndex, block[index] == UInt8(ascii: ":") else { throw .header(line: line) }
            guard !isUnstored(block[nameStart..<index]) else { throw .unstoredHeader(line: line) }
            index += 1
            while index < block.endIndex, isValueByte(block[index]) { index += 1 }
            guard block.endIndex - index >= 2, block[index] == UInt8(ascii: "\r"), block[index + 1] == UInt8(ascii: "\n") else {
                throw .header(line: line)
            }
            index += 2
            line += 1
        }
    }

    /// `tchar` of RFC 9110 §5.6.2.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }

    /// `field-vchar`, space or tab (RFC 9110 §5.5).
    private static func isValueByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (0x20...0x7E).contains(byte) || byte >= 0x80
    }

    /// Checks the record `entry` would be stored as, with the validation every reader applies.
    static func validate(_ entry: CacheEntry) throws(RecordProblem) {
        let problem = encode(entry).withUnsafeBytes { bytes -> RecordProblem? in
            do throws(RecordProblem) {
                _ = try Layout(bytes)
                return nil
            } catch {
                return error
            }
        }
        if let problem { throw problem }
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

    /// The entry of a valid record; nil for one that does not pass ``Layout/init(_:)``.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> CacheEntry? {
        guard let layout = try? Layout(bytes) else { return nil }
        func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        return CacheEntry(
            status: layout.status,
            headerBlock: Array(bytes[layout.headerBlock]),
            body: Array(bytes[layout.body]),
            storedAt: layout.storedAt,
            expiresAt: layout.expiresAt,
            model: text(layout.model),
            namespace: layout.namespace.map(text),
            endpoint: text(layout.endpoint),
            promptTokens: layout.promptTokens,
            totalTokens: layout.totalTokens,
            scope: layout.scope
        )
    }

    /// The times of a record without decoding or validating the rest (for index upkeep, which must find
    /// the index rows of any record, valid or not).
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
}

/// Why a stored record is not served (the first fault ``EntryRecord/Layout`` found); `gemcache import`
/// names it for each line it refuses.
enum RecordProblem: Error, Equatable, CustomStringConvertible {
    case version(UInt8)
    /// A length runs past the end of the record.
    case truncated
    case status(Int)
    case times(storedAt: Int64, expiresAt: Int64)
    case scope(UInt8)
    /// The header line (counted from 1) is not a well-formed `name: value\r\n` line.
    case header(line: Int)
    /// The header line names one of ``EntryRecord/unstoredHeaders``.
    case unstoredHeader(line: Int)

    var description: String {
        switch self {
        case .version(let version): "record version \(version) is not one this gemcache reads"
        case .truncated: "a length runs past the end of the record"
        case .status(let status): "status \(status) is not one a stored answer is replayed with (200-599, not 204, 205 or 304)"
        case .times(let storedAt, let expiresAt):
            "stored_at \(storedAt) and expires_at \(expiresAt) must be Unix milliseconds from \(EntryRecord.times.lowerBound) to \(EntryRecord.times.upperBound), expires_at not before stored_at"
        case .scope(let scope): "scope byte \(scope) is not 0, 1 or 2"
        case .header(let line):
            "header line \(line) is not a \"name: value\" line ending in CRLF (a token name; no CR, LF, NUL or other control byte in it)"
        case .unstoredHeader(let line):
            "header line \(line) names a header the proxy never stores (framing, hop-by-hop or per-delivery, such as Content-Length or Set-Cookie)"
        }
    }
}
