/// The header block of a record: `name: value\r\n` lines that can never end the head early, add a
/// line of their own or reframe the answer they are replayed with.
extension EntryRecord {
    /// Headers never forwarded, stored or replayed, lowercase: hop-by-hop (RFC 9110 §7.6.1) and what
    /// the proxy itself sets on a request.
    package static let hopByHopHeaderNames: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authorization", "proxy-authenticate", "host", "content-length",
    ]

    /// Response headers a record never holds, lowercase: those that describe one delivery, not the
    /// answer (the proxy never stores or replays them). Among them the framing and hop-by-hop ones that
    /// would let stored bytes reframe an answer or steer the connection (`Content-Length`,
    /// `Transfer-Encoding`, `Connection`) and per-delivery ones such as `Set-Cookie`.
    package static let unstoredHeaderNames: Set<String> = hopByHopHeaderNames.union([
        "content-encoding", "date", "server", "alt-svc", "set-cookie", "server-timing", "age",
        "x-gemcache", "x-gemcache-key", "x-gemcache-items", "cache-status", "via",
    ])

    /// ``unstoredHeaderNames`` as bytes, by length, so that a name is looked up with a few comparisons.
    static let unstoredHeaders: [[[UInt8]]] = {
        let names = unstoredHeaderNames.map { Array($0.utf8) }
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

    /// Checks that `block` is made of `name: value\r\n` lines: a token name (RFC 9110 §5.6.2) that is
    /// not one of ``unstoredHeaders``, and a value of visible characters, spaces, tabs and bytes ≥ 0x80
    /// (no CR, LF, NUL or other control byte), so a replayed block can never end the head early, add
    /// a line of its own or reframe the answer. One pass over the bytes, no allocation.
    static func checkHeaderBlock(_ block: UnsafeRawBufferPointer) throws(RecordProblem) {
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
}
