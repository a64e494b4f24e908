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
    /// `GET` or `POST`; nil for other methods, which the fast path never answers.
    let method: RawRequestKey.Method?
    /// The credential a header carries: the value of `x-goog-api-key`, or the token of `Authorization:
    /// Bearer`.
    ///
    /// SPEC §8's rule of one credential is ``Credential``'s; this reads it in place, without building one
    /// (the hot loop), and leaves every request it is not sure of to the slow path, which applies the
    /// rule: two credential headers (of one kind or both), an empty one, or an `Authorization` that is
    /// not a bearer token of visible ASCII make the request not ``answerable``. The handler does the
    /// same when the target has a credential parameter too (``RawRequestKey/Target``).
    let credential: Range<Int>?
    /// The value of the one `X-Gemcache-Namespace` header, if any.
    let namespace: Range<Int>?
    /// A request over HTTP/1.1 without headers that the slow path must see: `Cache-Control`,
    /// `X-Gemcache-*` other than the namespace, `Connection`, `Expect`, `Content-Encoding`,
    /// `X-Goog-FieldMask` (it enters the key), a repeated namespace, or credential headers the slow path
    /// must judge (see ``credential``).
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
        var credentials = 0
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
                return parseRequestLine(bytes, request).map { target, method, isHTTP11 in
                    .head(
                        RequestHead(
                            length: lineStart,
                            contentLength: contentLength ?? 0,
                            target: target,
                            method: method,
                            credential: credential,
                            namespace: namespace,
                            answerable: answerable && isHTTP11 && credentials <= 1
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
                credentials += 1
                if value.isEmpty { answerable = false }
                credential = value
            case .authorization:
                credentials += 1
                credential = bearerToken(bytes, value)
                if credential == nil { answerable = false }
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

    /// The value of the first header called `name` (lowercase) in `head`, a head ``parse(_:maxLength:)``
    /// accepted; for a header only a traced hit reads (`traceparent`), not worth a look per request.
    static func value(of name: StaticString, in head: UnsafeRawBufferPointer) -> Range<Int>? {
        var lineStart = (head.firstIndex(of: UInt8(ascii: "\n")) ?? head.count) + 1
        while lineStart < head.count, let newline = head[lineStart...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = lineStart..<(newline - 1)  // parse(_:maxLength:) saw a CR before every LF
            lineStart = newline + 1
            guard let colon = head[line].firstIndex(of: UInt8(ascii: ":")) else { continue }
            if head[line.lowerBound..<colon].equals(ASCII: name, ignoringCase: true) { return trimmed(head, (colon + 1)..<line.upperBound) }
        }
        return nil
    }

    /// The target of `METHOD SP target SP HTTP/1.x`, the method if `GET` or `POST`, and whether it is HTTP/1.1.
    private static func parseRequestLine(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> (Range<Int>, RawRequestKey.Method?, Bool)? {
        guard let firstSpace = bytes[line].firstIndex(of: UInt8(ascii: " ")),
            let lastSpace = bytes[line].lastIndex(of: UInt8(ascii: " ")), lastSpace > firstSpace + 1
        else { return nil }
        let method = bytes[line.lowerBound..<firstSpace]
        let version = bytes[(lastSpace + 1)..<line.upperBound]
        guard version.count == 8, version.starts(withASCII: "HTTP/1."), !method.equals(ASCII: "CONNECT") else { return nil }
        let known: RawRequestKey.Method? = method.equals(ASCII: "POST") ? .post : method.equals(ASCII: "GET") ? .get : nil
        return ((firstSpace + 1)..<lastSpace, known, version.last == UInt8(ascii: "1"))
    }

    /// The header names the fast path looks at.
    private enum Header {
        case contentLength, transferEncoding, upgrade, apiKey, authorization, namespace, control, other

        init(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) {
            let name = bytes[name]
            func `is`(_ lowercase: StaticString) -> Bool { name.equals(ASCII: lowercase, ignoringCase: true) }
            switch name.count {
            case 14 where `is`("content-length"): self = .contentLength
            case 17 where `is`("transfer-encoding"): self = .transferEncoding
            case 7 where `is`("upgrade"): self = .upgrade
            case 14 where `is`("x-goog-api-key"): self = .apiKey
            case 13 where `is`("authorization"): self = .authorization
            case 20 where `is`("x-gemcache-namespace"): self = .namespace
            case 13 where `is`("cache-control"), 10 where `is`("connection"), 6 where `is`("expect"),
                16 where `is`("content-encoding"), 16 where `is`("x-goog-fieldmask"):
                self = .control
            case 11... where name.starts(withASCII: "x-gemcache-", ignoringCase: true): self = .control
            default: self = .other
            }
        }
    }

    /// The token of `Bearer TOKEN` (the scheme without case, as ``Credential`` reads it), or nil when the
    /// value is not that or the token holds anything but visible ASCII.
    private static func bearerToken(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>) -> Range<Int>? {
        guard bytes[value].starts(withASCII: "bearer ", ignoringCase: true) else { return nil }
        let token = trimmed(bytes, (value.lowerBound + 7)..<value.upperBound)
        guard !token.isEmpty, bytes[token].allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        return token
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
