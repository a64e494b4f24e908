import GemcacheStore
import NIOCore

/// A stored entry record (``EntryRecord``, read in place) written out as one complete HTTP/1.1 hit
/// answer, without decoding it into a ``CacheEntry`` (no arrays, strings or headers).
struct HitAnswer {
    let record: EntryRecord

    /// nil for a status other than 200 (the slow path then answers).
    init?(record: EntryRecord) {
        guard record.status == 200 else { return nil }
        self.record = record
    }

    /// The answer's size before the per-request header values, for reserving the buffer once.
    static let fixedOverhead = 256

    /// Writes the answer: status line, stored header lines, `Age`, `X-Gemcache: HIT`, `X-Gemcache-Key`,
    /// `Cache-Status`, `Content-Length` and `Date` (the same names, values and order as the slow path's
    /// hit), then the body.
    func write(key: UnsafeRawBufferPointer, now: Int64, date: [UInt8], into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: Self.fixedOverhead + record.headerBlock.count + record.body.count)
        buffer.writeStaticString("HTTP/1.1 200 OK\r\n")
        buffer.writeBytes(record.headerBlock)
        buffer.writeStaticString("Age: ")
        Self.writeDecimal(Self.seconds(from: record.storedAt, to: now), to: &buffer)
        buffer.writeStaticString("\r\nX-Gemcache: HIT\r\nX-Gemcache-Key: ")
        Self.writeHex(key, to: &buffer)
        buffer.writeStaticString("\r\nCache-Status: gemcache; hit; ttl=")
        Self.writeDecimal(Self.seconds(from: now, to: record.expiresAt), to: &buffer)
        buffer.writeStaticString("; key=\"")
        Self.writeHex(key, to: &buffer)
        buffer.writeStaticString("\"\r\nContent-Length: ")
        Self.writeDecimal(Int64(record.body.count), to: &buffer)
        buffer.writeStaticString("\r\nDate: ")
        buffer.writeBytes(date)
        buffer.writeStaticString("\r\n\r\n")
        buffer.writeBytes(record.body)
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
