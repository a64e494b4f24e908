package import GemcacheStore

/// Entries whose records the store's tests and the fast path's tests both read: a valid one, and
/// damaged ones that the one validation of a record (`EntryRecord.init(_:)`) refuses, each named with
/// the fault it reports.
package enum RecordSamples {
    /// A valid entry of status 200 with every field set.
    package static let entry = CacheEntry(
        status: 200,
        headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
        body: Array(#"{"candidates":[]}"#.utf8),
        storedAt: 1_800_000_000_000,
        expiresAt: 1_800_000_060_000,
        model: "gemini-2.5-flash",
        namespace: "team-a",
        endpoint: "generateContent",
        promptTokens: 3,
        totalTokens: 10,
        scope: .shared
    )

    /// The record `entry` had in an older record `version`: 2 is version 3 without the checksum field
    /// (bytes 28..<32), 1 lacks the scope byte (27) too.
    package static func olderRecord(_ entry: CacheEntry, version: UInt8) -> [UInt8] {
        var record = EntryRecord.encode(entry)
        precondition(record[0] == 3 && (version == 1 || version == 2))
        record.removeSubrange(28..<32)
        if version == 1 { record.remove(at: 27) }
        record[0] = version
        return record
    }

    /// A valid entry with `change` applied.
    package static func entry(_ change: (inout CacheEntry) -> Void) -> CacheEntry {
        var entry = Self.entry
        change(&entry)
        return entry
    }

    package static let headerSplit = Array(
        "Content-Type: application/json\r\nx: y\r\n\r\nHTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 2\r\n\r\nhi".utf8
    )

    package static let damaged: [(String, CacheEntry, RecordProblem)] = [
        ("a status of 1000", entry { $0.status = 1000 }, .status(1000)),
        ("a status without content", entry { $0.status = 204 }, .status(204)),
        ("an informational status", entry { $0.status = 101 }, .status(101)),
        ("stored_at -2^63", entry { $0.storedAt = .min }, .times(storedAt: .min, expiresAt: 1_800_000_060_000)),
        ("expires_at 2^63-1", entry { $0.expiresAt = .max }, .times(storedAt: 1_800_000_000_000, expiresAt: .max)),
        ("expiry before storage", entry { $0.expiresAt = $0.storedAt - 1 }, .times(storedAt: 1_800_000_000_000, expiresAt: 1_799_999_999_999)),
        ("a second answer in the header block", entry { $0.headerBlock = headerSplit }, .header(line: 3)),
        ("a value holding CR LF", entry { $0.headerBlock = Array("x: y\r\nSet-Cookie: a=b".utf8) }, .unstoredHeader(line: 2)),
        ("a line without its CR LF", entry { $0.headerBlock = Array("x: y\r\nX-Other: a=b".utf8) }, .header(line: 2)),
        ("a bare LF in a value", entry { $0.headerBlock = Array("x: y\nSet-Cookie: a=b\r\n".utf8) }, .header(line: 1)),
        ("a bare CR in a value", entry { $0.headerBlock = Array("x: y\rz\r\n".utf8) }, .header(line: 1)),
        ("a NUL in a value", entry { $0.headerBlock = Array("x: y\0z\r\n".utf8) }, .header(line: 1)),
        ("a name with a space", entry { $0.headerBlock = Array("Content Type: x\r\n".utf8) }, .header(line: 1)),
        ("a line without a colon", entry { $0.headerBlock = Array("Content-Type\r\n".utf8) }, .header(line: 1)),
        ("an empty name", entry { $0.headerBlock = Array(": x\r\n".utf8) }, .header(line: 1)),
        ("a stored Content-Length", entry { $0.headerBlock = Array("Vary: Origin\r\ncontent-LENGTH: 0\r\n".utf8) }, .unstoredHeader(line: 2)),
        ("a stored Transfer-Encoding", entry { $0.headerBlock = Array("Transfer-Encoding: chunked\r\n".utf8) }, .unstoredHeader(line: 1)),
        ("a stored Connection", entry { $0.headerBlock = Array("Connection: close\r\n".utf8) }, .unstoredHeader(line: 1)),
        ("a Set-Cookie line", entry { $0.headerBlock = Array("x: y\r\nSet-Cookie: a=b\r\n".utf8) }, .unstoredHeader(line: 2)),
    ]
}
