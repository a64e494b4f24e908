import CZlib
import NIOCore

/// One entry record of the `entries` database, read in place: its fields, and its strings, header
/// block and body as slices of the stored bytes (no copies, no allocation, no Foundation).
///
/// The byte layout (record version 3):
/// `u8 version, u16 status, i64 storedAt, i64 expiresAt, u32 promptTokens, u32 totalTokens, u8 scope,
/// u32 checksum, u16+bytes model, u8 hasNamespace (+u16+bytes), u16+bytes endpoint, u32+bytes
/// headerBlock, body…`. Version 4 is version 3 with `u32+bytes request` (the canonical request of a
/// recorded entry, SPEC §11) after the endpoint. All integers big-endian. The body comes last so that a reader can slice it
/// without copying twice. `scope` is 0 unknown, 1 shared, 2 per key.
///
/// The checksum is zlib's CRC-32 of every byte of the record but the checksum field itself: the
/// fixed fields before it and everything after it, header block and body included. It is checked
/// first, so a record whose bytes changed after it was written (a failing disk, a torn write, a
/// damaged shared-tier row) is refused as ``RecordProblem/checksum``, whichever field the change hit.
/// Older records are still read, without a checksum to check: version 2 is version 3 without the
/// checksum field, version 1 (written before entries kept their scope) lacks the scope byte too and is
/// read with an unknown scope. Version 4 is written for recorded entries, version 3 for the others (so
/// that older builds sharing the store or the shared tier still read them).
///
/// This is the only code that reads or writes record bytes. Every reader (``decode(_:)``, the fast
/// path's hit, the shared tier's rows, `gemcache import`) goes through ``init(_:)``, the one validation
/// of a record: a record that does not pass it is a miss, never served, whatever wrote it (an older
/// build, a damaged disk, an edited export, another instance). The slices point into the bytes given
/// to ``init(_:)`` and are valid only as long as those are.
package struct EntryRecord {
    package let status: Int
    package let storedAt: Int64
    package let expiresAt: Int64
    /// Token counts: 32-bit fields, so within ``tokenCounts``.
    package let promptTokens: Int
    package let totalTokens: Int
    package let scope: CacheEntry.Scope?
    package let model: UnsafeRawBufferPointer
    package let namespace: UnsafeRawBufferPointer?
    package let endpoint: UnsafeRawBufferPointer
    /// The canonical request of a recorded entry (version 4); nil otherwise.
    package let request: UnsafeRawBufferPointer?
    /// `name: value\r\n` lines, each checked.
    package let headerBlock: UnsafeRawBufferPointer
    package let body: UnsafeRawBufferPointer

    /// Validates `record`: a known version; every length within the record; a replayable status;
    /// both times within ``times`` and `expiresAt >= storedAt`; a header block of well-formed lines
    /// (``checkHeaderBlock(_:)``). The lengths are checked once, here; the fields are then plain reads.
    /// - Throws: ``RecordProblem`` naming the first fault.
    package init(_ record: UnsafeRawBufferPointer) throws(RecordProblem) {
        guard let version = record.first else { throw .truncated }
        guard let fixedSize = Self.fixedSize(version: version) else { throw .version(version) }
        guard record.count >= fixedSize else { throw .truncated }
        if version >= 3, Self.integer(record, Self.checksumOffset, UInt32.self) != Self.checksum(record) { throw .checksum }
        status = Int(Self.integer(record, 1, UInt16.self))
        guard Self.isReplayable(status: status) else { throw .status(status) }
        storedAt = Int64(bitPattern: Self.integer(record, 3, UInt64.self))
        expiresAt = Int64(bitPattern: Self.integer(record, 11, UInt64.self))
        guard Self.times.contains(storedAt), Self.times.contains(expiresAt), expiresAt >= storedAt else {
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
        request = try version >= 4 ? Self.longString(record, &offset) : nil
        headerBlock = try Self.longString(record, &offset)
        try Self.checkHeaderBlock(headerBlock)
        body = UnsafeRawBufferPointer(rebasing: record[offset...])
    }

    /// The entry this record holds, copied out of the stored bytes.
    package var entry: CacheEntry {
        func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }
        return CacheEntry(
            status: status,
            headerBlock: Array(headerBlock),
            body: Array(body),
            storedAt: storedAt,
            expiresAt: expiresAt,
            model: text(model),
            namespace: namespace.map(text),
            endpoint: text(endpoint),
            promptTokens: promptTokens,
            totalTokens: totalTokens,
            scope: scope,
            request: request.map(Array.init)
        )
    }

    private static func integer<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _: T.Type) -> T {
        T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// The bytes of a `u16+bytes` field at `offset`, which moves past it.
    private static func shortString(_ record: UnsafeRawBufferPointer, _ offset: inout Int) throws(RecordProblem) -> UnsafeRawBufferPointer {
        guard record.count - offset >= 2 else { throw .truncated }
        let length = Int(integer(record, offset, UInt16.self))
        guard record.count - offset - 2 >= length else { throw .truncated }
        defer { offset += 2 + length }
        return UnsafeRawBufferPointer(rebasing: record[(offset + 2)..<(offset + 2 + length)])
    }

    /// The bytes of a `u32+bytes` field at `offset`, which moves past it.
    private static func longString(_ record: UnsafeRawBufferPointer, _ offset: inout Int) throws(RecordProblem) -> UnsafeRawBufferPointer {
        guard record.count - offset >= 4 else { throw .truncated }
        let length = Int(integer(record, offset, UInt32.self))
        guard record.count - offset - 4 >= length else { throw .truncated }
        defer { offset += 4 + length }
        return UnsafeRawBufferPointer(rebasing: record[(offset + 4)..<(offset + 4 + length)])
    }
}

// MARK: - Writing and reading whole records

extension EntryRecord {
    /// The version written for entries without a canonical request; those with one are version 4.
    package static let version: UInt8 = 3

    /// The offset of the model's length: the end of the fixed-size fields of a record of `version`.
    static func fixedSize(version: UInt8) -> Int? {
        switch version {
        case 1: 27
        case 2: 28
        case 3, 4: 32
        default: nil
        }
    }

    /// Where a version 3 or 4 record keeps its checksum (4 bytes, after the scope byte).
    static let checksumOffset = 28

    /// The CRC-32 of a version 3 `record` (at least its fixed fields long) without its checksum field.
    /// zlib's, chosen by measurement: it runs on every hit, over the whole body (benchmarks/RESULTS.md).
    static func checksum(_ record: UnsafeRawBufferPointer) -> UInt32 {
        let bytes = record.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let afterField = checksumOffset + 4
        let head = crc32_z(0, bytes, checksumOffset)
        return UInt32(truncatingIfNeeded: crc32_z(head, bytes + afterField, record.count - afterField))
    }

    /// Writes the checksum of a version 3 `record` into its checksum field.
    static func seal(_ record: inout [UInt8]) {
        let sum = record.withUnsafeBytes { checksum($0) }
        withUnsafeBytes(of: sum.bigEndian) { record.replaceSubrange(checksumOffset..<(checksumOffset + 4), with: $0) }
    }

    /// The times a record may hold, in Unix milliseconds: from 1970 to the end of the year 9999. Any
    /// of them subtracted from or added to the clock (or to a duration, at most ten years) stays far
    /// from the ends of `Int64`.
    package static let times: ClosedRange<Int64> = 0...253_402_300_799_999

    /// The token counts a record holds: what its 32-bit fields hold.
    package static let tokenCounts: ClosedRange<Int> = 0...Int(UInt32.max)

    /// Whether an answer with `status` may be replayed from the store with its body and a
    /// `Content-Length`: a final status that carries content (not 1xx, 204, 205 or 304, whose bodies
    /// a client would read as the start of the next answer).
    package static func isReplayable(status: Int) -> Bool {
        (200...599).contains(status) && status != 204 && status != 205 && status != 304
    }

    /// Checks the record `entry` would be stored as, with the validation every reader applies.
    package static func validate(_ entry: CacheEntry) throws(RecordProblem) {
        let problem = encode(entry).withUnsafeBytes { bytes -> RecordProblem? in
            do throws(RecordProblem) {
                _ = try EntryRecord(bytes)
                return nil
            } catch {
                return error
            }
        }
        if let problem { throw problem }
    }

    package static func encode(_ entry: CacheEntry) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(64 + entry.model.utf8.count + (entry.request?.count ?? 0) + entry.headerBlock.count + entry.body.count)
        buffer.writeInteger(entry.request == nil ? version : 4)
        buffer.writeInteger(UInt16(clamping: entry.status))
        buffer.writeInteger(entry.storedAt)
        buffer.writeInteger(entry.expiresAt)
        buffer.writeInteger(UInt32(clamping: entry.promptTokens))
        buffer.writeInteger(UInt32(clamping: entry.totalTokens))
        buffer.writeInteger(UInt8(entry.scope.map { $0 == .shared ? 1 : 2 } ?? 0))
        buffer.writeInteger(UInt32(0))  // the checksum, sealed below
        writeShortString(entry.model, to: &buffer)
        if let namespace = entry.namespace {
            buffer.writeInteger(UInt8(1))
            writeShortString(namespace, to: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
        }
        writeShortString(entry.endpoint, to: &buffer)
        if let request = entry.request {
            buffer.writeInteger(UInt32(request.count))
            buffer.writeBytes(request)
        }
        buffer.writeInteger(UInt32(entry.headerBlock.count))
        buffer.writeBytes(entry.headerBlock)
        buffer.writeBytes(entry.body)
        var record = Array(buffer.readableBytesView)
        seal(&record)
        return record
    }

    /// The entry of a valid record; nil for one that does not pass ``init(_:)``.
    package static func decode(_ bytes: UnsafeRawBufferPointer) -> CacheEntry? {
        (try? EntryRecord(bytes))?.entry
    }

    /// The entry `bytes` hold, or why they hold none: a reader that counts damaged records tells
    /// ``RecordProblem/checksum`` from the other faults.
    package static func read(_ bytes: UnsafeRawBufferPointer) -> Result<CacheEntry, RecordProblem> {
        do throws(RecordProblem) { return .success(try EntryRecord(bytes).entry) } catch { return .failure(error) }
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

/// Why a stored record is not served (the first fault ``EntryRecord/init(_:)`` found); `gemcache import`
/// names it for each line it refuses.
package enum RecordProblem: Error, Equatable, CustomStringConvertible {
    case version(UInt8)
    /// The checksum of a version 3 record does not match its bytes: they changed after it was written.
    case checksum
    /// A length runs past the end of the record.
    case truncated
    case status(Int)
    case times(storedAt: Int64, expiresAt: Int64)
    case scope(UInt8)
    /// The header line (counted from 1) is not a well-formed `name: value\r\n` line.
    case header(line: Int)
    /// The header line names one of ``EntryRecord/unstoredHeaderNames``.
    case unstoredHeader(line: Int)

    package var description: String {
        switch self {
        case .version(let version): "record version \(version) is not one this gemcache reads"
        case .checksum: "the record's checksum does not match its bytes (damaged after it was written)"
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
