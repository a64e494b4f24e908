import GemcacheKey
import GemcacheStore
import HTTPTypes
import Hummingbird
import NIOCore

/// The answer to a request served from the store, for both paths: the stored status, header lines
/// and body, plus `Age`, `X-Gemcache`, `X-Gemcache-Key` and `Cache-Status`, by one set of rules.
///
/// The fast path writes it as one complete HTTP/1.1 answer from a record read in place
/// (``write(key:now:date:into:)``, no arrays, strings or headers); the slow path, which has decoded
/// the entry, as a Hummingbird response (``response(_:key:now:outcome:)``).
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
        Self.writeDecimal(Self.age(storedAt: record.storedAt, now: now), to: &buffer)
        buffer.writeStaticString("\r\nX-Gemcache: HIT\r\nX-Gemcache-Key: ")
        Self.writeHex(key, to: &buffer)
        buffer.writeStaticString("\r\nCache-Status: gemcache; hit; ttl=")
        Self.writeDecimal(Self.ttl(expiresAt: record.expiresAt, now: now), to: &buffer)
        buffer.writeStaticString("; key=\"")
        Self.writeHex(key, to: &buffer)
        buffer.writeStaticString("\"\r\nContent-Length: ")
        Self.writeDecimal(Int64(record.body.count), to: &buffer)
        buffer.writeStaticString("\r\nDate: ")
        buffer.writeBytes(date)
        buffer.writeStaticString("\r\n\r\n")
        buffer.writeBytes(record.body)
    }

    /// A decoded entry's answer (HIT, COALESCED, or STALE with a negative `ttl`: how long ago it expired).
    static func response(_ entry: CacheEntry, key: CacheKey, now: Int64, outcome: CacheOutcome) -> Response {
        var headers = HTTPFields(pairs: entry.headers)
        headers[.age] = String(age(storedAt: entry.storedAt, now: now))
        headers[.gemcache] = outcome.rawValue
        headers[.gemcacheKey] = key.hex
        let ttl = outcome == .stale ? -seconds(from: entry.expiresAt, to: now) - 1 : ttl(expiresAt: entry.expiresAt, now: now)
        headers[.cacheStatus] = "gemcache; hit; ttl=\(ttl); key=\"\(key.hex)\""
        return Response(status: .init(code: entry.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: entry.body)))
    }

    /// `Age`: whole seconds since the entry was stored.
    static func age(storedAt: Int64, now: Int64) -> Int64 { seconds(from: storedAt, to: now) }

    /// `Cache-Status`'s `ttl` of a fresh entry: whole seconds until it expires.
    static func ttl(expiresAt: Int64, now: Int64) -> Int64 { seconds(from: now, to: expiresAt) }

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
