/// The parts of an HTTP/1.1 request head the fast path needs, found in place in the received bytes.
///
/// This is not a general HTTP parser: it only has to frame requests exactly as NIO's decoder does
/// (head up to the empty line, then `Content-Length` bytes of body) and to recognise the few requests
/// the fast path may answer. Anything whose framing it cannot be sure of is `unsupported`, and the
/// connection is then handed to NIO's decoder for good (no request smuggling between two parsers).
struct RequestHead {
    /// Bytes of the head, the final empty line included.
    let length: Int
    let contentLength: Int
    /// The request target (path and query) as sent.
    let target: Range<Int>
    /// The value of the one `x-goog-api-key` header, if there is exactly one and it is not empty.
    ///
    /// SPEC §8's rule of one credential is ``Credential``'s; this reads it in place, without building one
    /// (the hot loop): a request the fast path answers carries this header as its only credential
    /// (`Authorization` and a repeated header make it not ``answerable``, and ``RawRequestKey`` keys no
    /// target with a credential parameter), so the slow path applies the rule to every other request.
    let credential: Range<Int>?
    /// The value of the one `X-Gemcache-Namespace` header, if any.
    let namespace: Range<Int>?
    /// A `POST` over HTTP/1.1 without headers that the slow path must see: `Cache-Control`,
    /// `X-Gemcache-*` other than the namespace, `Connection`, `Expect`, `Content-Encoding`,
    /// `Authorization` (a second credential: the slow path's 400), `X-Goog-FieldMask` (it enters the
    /// key), or a repeated credential or namespace.
    let answerable: Bool

    enum Parse {
        /// The head has not fully arrived yet.
        case incomplete
        case head(RequestHead)
        /// Framing the fast path does not follow: `Transfer-Encoding`, `Upgrade`, a repeated or
        /// malformed `Content-Length`, bare LF line ends, folded or malformed header lines, a head
        /// longer than the limit, anything but HTTP/1.x.
        case unsupported
    }

    /// Parses the head at the start of `bytes`.
    static func parse(_ bytes: UnsafeRawBufferPointer, maxLength: Int) -> Parse {
        var lineStart = 0
        var requestLine: Range<Int>?
        var contentLength: Int?
        var credential: Range<Int>?
        var namespace: Range<Int>?
        var answerable = true
        while true {
            guard let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) else {
                return bytes.count > maxLength ? .unsupported : .incomplete
            }
            guard newline > lineStart, bytes[newline - 1] == UInt8(ascii: "\r"), newline < maxLength else { return .unsupported }
            let line = lineStart..<(newline - 1)
            lineStart = newline + 1
            guard let request = requestLine else {
                requestLine = line
                continue
            }
            if line.isEmpty {
                return parseRequestLine(bytes, request).map { target, isPost in
                    .head(
                        RequestHead(
                            length: lineStart,
                            contentLength: contentLength ?? 0,
                            target: target,
                            credential: credential,
                            namespace: namespace,
                            answerable: answerable && isPost
                        )
                    )
                } ?? .unsupported
            }
            guard bytes[line.lowerBound] != UInt8(ascii: " "), bytes[line.lowerBound] != UInt8(ascii: "\t"),
                let colon = bytes[line].firstIndex(of: UInt8(ascii: ":"))
            else { return .unsupported }
            let name = line.lowerBound..<colon
            let value = trimmed(bytes, (colon + 1)..<line.upperBound)
            switch Header(bytes, name) {
            case .contentLength:
                guard contentLength == nil, let length = decimal(bytes, value) else { return .unsupported }
                contentLength = length
            case .transferEncoding, .upgrade:
                return .unsupported
            case .apiKey:
                if credential != nil || value.isEmpty { answerable = false }
                credential = value
            case .namespace:
                if namespace != nil { answerable = false }
                namespace = value
            case .control:
                answerable = false
            case .other:
                continue
            }
        }
    }

    /// The target of `METHOD SP target SP HTTP/1.x`, and whether the method is POST over HTTP/1.1.
    private static func parseRequestLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> (Range<Int>, Bool)? {
        guard let firstSpace = bytes[line].firstIndex(of: UInt8(ascii: " ")),
            let lastSpace = bytes[line].lastIndex(of: UInt8(ascii: " ")), lastSpace > firstSpace + 1
        else { return nil }
        let method = bytes[line.lowerBound..<firstSpace]
        let version = bytes[(lastSpace + 1)..<line.upperBound]
        guard version.count == 8, version.starts(withASCII: "HTTP/1."), !method.equals(ASCII: "CONNECT") else { return nil }
        return ((firstSpace + 1)..<lastSpace, method.equals(ASCII: "POST") && version.last == UInt8(ascii: "1"))
    }

    /// The header names the fast path looks at.
    private enum Header {
        case contentLength, transferEncoding, upgrade, apiKey, namespace, control, other

        init(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) {
            let name = bytes[name]
            func `is`(_ lowercase: StaticString) -> Bool { name.equals(ASCII: lowercase, ignoringCase: true) }
            switch name.count {
            case 14 where `is`("content-length"): self = .contentLength
            case 17 where `is`("transfer-encoding"): self = .transferEncoding
            case 7 where `is`("upgrade"): self = .upgrade
            case 14 where `is`("x-goog-api-key"): self = .apiKey
            case 20 where `is`("x-gemcache-namespace"): self = .namespace
            case 13 where `is`("cache-control"), 10 where `is`("connection"), 6 where `is`("expect"),
                16 where `is`("content-encoding"), 13 where `is`("authorization"), 16 where `is`("x-goog-fieldmask"):
                self = .control
            case 11... where name.starts(withASCII: "x-gemcache-", ignoringCase: true): self = .control
            default: self = .other
            }
        }
    }

    private static func trimmed(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
        var range = range
        while let first = range.first, bytes[first] == UInt8(ascii: " ") || bytes[first] == UInt8(ascii: "\t") {
            range = range.dropFirst()
        }
        while let last = range.last, bytes[last] == UInt8(ascii: " ") || bytes[last] == UInt8(ascii: "\t") {
            range = range.dropLast()
        }
        return range
    }

    /// A `Content-Length` value: 1 to 9 decimal digits.
    private static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard (1...9).contains(range.count) else { return nil }
        var value = 0
        for index in range {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}
