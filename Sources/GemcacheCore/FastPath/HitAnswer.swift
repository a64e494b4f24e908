import NIOCore

/// A stored entry record (``EntryRecord``, version 1 or 2) read in place, and written out as one complete
/// HTTP/1.1 hit answer, without decoding it into a ``CacheEntry`` (no arrays, strings or headers).
struct HitAnswer {
    let storedAt: Int64
    let expiresAt: Int64
    let promptTokens: Int
    let totalTokens: Int
    /// Byte ranges of the stored header lines and of the body in the record.
    let headerBlock: Range<Int>
    let body: Range<Int>

    /// Reads the fields a hit needs; nil for a record that does not validate (``EntryRecord/Layout``:
    /// the same check as every other reader, so damage is a miss here too) or a status other than 200
    /// (the slow path then answers).
    init?(record: UnsafeRawBufferPointer) {
        guard let layout = try? EntryRecord.Layout(record), layout.status == 200 else { return nil }
        storedAt = layout.storedAt
        expiresAt = layout.expiresAt
        promptTokens = layout.promptTokens
        totalTokens = layout.totalTokens
        headerBlock = layout.headerBlock
        body = layout.body
    }

    /// The answer's size before the per-request header values, for reserving the buffer once.
    static let fixedOverhead = 256

    /// Writes the answer: status line, stored header lines, `Age`, `X-Gemcache: HIT`, `X-Gemcache-Key`,
    /// `Cache-Status`, `Content-Length` and `Date` (the same names, values and order as the slow path's
    /// hit), then the body.
    func write(record: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, now: Int64, date: [UInt8], into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: Self.fixedOverhead + headerBlock.count + body.count)
        buffer.writeStaticString("HTTP/1.1 200 OK\r\n")
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: record[headerBlock]))
        buffer.writeStaticString("Age: ")
        Self.writeDecimal(Self.seconds(from: storedAt, to: now), to: &buffer)
        buffer.writeStaticString("\r\nX-Gemcache: HIT\r\nX-Gemcache-Key: ")
        Self.writeHex(key, to: &buffer)
        buffer.writeStaticString("\r\nCache-Status: gemcache; hit; ttl=")
        Self.writeDecimal(Self.seconds(from: now, to: expiresAt), to: &buffer)
        buffer.writeStaticString("; key=\"")
        Self.writeHex(key, to: &buffer)
        buffer.writeStaticString("\"\r\nContent-Length: ")
        Self.writeDecimal(Int64(body.count), to: &buffer)
        buffer.writeStaticString("\r\nDate: ")
        buffer.writeBytes(date)
        buffer.writeStaticString("\r\n\r\n")
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: record[body]))
    }

    /// Whole seconds from `start` to `end` (milliseconds), 0 when `end` is earlier. Checked: the record's
    /// times are validated, but the clock is not the record's to vouch for.
    private static func seconds(from start: Int64, to end: Int64) -> Int64 {
        let (difference, overflow) = end.subtractingReportingOverflow(start)
        return overflow ? (end > start ? .max / 1000 : 0) : max(0, difference / 1000)
    }

    private static func writeDecimal(_ value: Int64, to buffer: inout ByteBuffer) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of stack for up to 19 digits
        withUnsafeMutableBytes(of: &digits) { scratch in
            var remaining = UInt64(max(0, value))
            var index = scratch.count
            repeat {
                index -= 1
                scratch[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
            } while remaining > 0
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }

    private static func writeHex(_ bytes: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        let digits: StaticString = "0123456789abcdef"
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes.count * 2) { out in
            for (index, byte) in bytes.enumerated() {
                out[2 * index] = digits.utf8Start[Int(byte >> 4)]
                out[2 * index + 1] = digits.utf8Start[Int(byte & 0x0f)]
            }
            return bytes.count * 2
        }
    }
}
