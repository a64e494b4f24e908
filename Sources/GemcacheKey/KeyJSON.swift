/// A parsed JSON value as the cache-key code sees it.
///
/// Objects keep their members in sent order (duplicates included) so the normalizer can
/// detect duplicates byte-exactly; numbers are already in canonical text form.
package indirect enum KeyJSONValue {
    case null
    case bool(Bool)
    /// Canonical number text (see `KeyJSONParser.canonicalNumber`).
    case number(String)
    case string(String)
    case array([KeyJSONValue])
    case object([(key: String, value: KeyJSONValue)])
}

/// A strict RFC 8259 parser over UTF-8 bytes.
///
/// Written by hand rather than using Foundation because, on this toolchain, both
/// `JSONSerialization` and `JSONDecoder` accept trailing commas (`[1,]`) and UTF-16/32 input,
/// and resolve duplicate keys silently (each picking a different winner); a cache key must
/// not depend on such leniency. Error messages carry 0-based byte offsets, never body content.
package struct KeyJSONParser {
    /// Nesting limit for arrays and objects (protobuf's JSON parser stops at 100 as well).
    static let maxDepth = 128
    /// Limit on the values of one body: memory for the parsed tree stays in the tens of megabytes
    /// whatever `limits.max_body` allows (a body of 30 million `{}` would take gigabytes). Real
    /// requests have far fewer: long conversations hold thousands of parts, not millions.
    static let maxValues = 1_000_000

    private let bytes: [UInt8]
    private var position = 0
    private var depth = 0
    private var values = 0

    /// Parses `bytes` as exactly one JSON value surrounded by optional whitespace.
    package static func parse(_ bytes: [UInt8]) throws(NormalizationError) -> KeyJSONValue {
        var parser = KeyJSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue()
        parser.skipWhitespace()
        if parser.position != bytes.count {
            throw parser.unexpected()
        }
        return value
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    // MARK: - Values

    private mutating func parseValue() throws(NormalizationError) -> KeyJSONValue {
        guard position < bytes.count else { throw unexpected() }
        values += 1
        if values > Self.maxValues {
            throw invalid("More than \(Self.maxValues) values at byte \(position).")
        }
        switch bytes[position] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw unexpected()
        }
    }

    private mutating func parseObject() throws(NormalizationError) -> KeyJSONValue {
        try enterContainer()
        position += 1  // {
        var members: [(key: String, value: KeyJSONValue)] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw unexpected() }
            let key = try parseString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw unexpected() }
            position += 1
            skipWhitespace()
            members.append((key, try parseValue()))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                return .object(members)
            default: throw unexpected()
            }
        }
    }

    private mutating func parseArray() throws(NormalizationError) -> KeyJSONValue {
        try enterContainer()
        position += 1  // [
        var elements: [KeyJSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                return .array(elements)
            default: throw unexpected()
            }
        }
    }

    private mutating func enterContainer() throws(NormalizationError) {
        depth += 1
        if depth > Self.maxDepth {
            throw invalid("Nesting deeper than \(Self.maxDepth) levels at byte \(position).")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(NormalizationError) {
        let text = UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
        for byte in text {
            guard peek() == byte else { throw unexpected() }
            position += 1
        }
    }

    // MARK: - Strings

    private mutating func parseString() throws(NormalizationError) -> String {
        let start = position
        position += 1  // opening quote
        var utf8: [UInt8] = []
        while true {
            let runStart = position
            while position < bytes.count, bytes[position] != UInt8(ascii: "\""),
                bytes[position] != UInt8(ascii: "\\"), bytes[position] >= 0x20
            {
                position += 1
            }
            utf8.append(contentsOf: bytes[runStart..<position])
            guard let byte = peek() else { throw unexpected() }
            if byte == UInt8(ascii: "\"") {
                position += 1
                break
            }
            if byte < 0x20 {
                throw invalid("Unescaped control character in string at byte \(position).")
            }
            try parseEscape(into: &utf8)
        }
        guard let string = String(validating: utf8, as: UTF8.self) else {
            throw invalid("Invalid UTF-8 in string starting at byte \(start).")
        }
        return string
    }

    private mutating func parseEscape(into utf8: inout [UInt8]) throws(NormalizationError) {
        let escapeStart = position
        position += 1  // backslash
        guard let byte = peek() else { throw unexpected() }
        position += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(byte)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0c)
        case UInt8(ascii: "n"): utf8.append(0x0a)
        case UInt8(ascii: "r"): utf8.append(0x0d)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = UInt32(try parseHex4())
            if (0xD800...0xDBFF).contains(scalar) {
                guard peek() == UInt8(ascii: "\\"), position + 1 < bytes.count,
                    bytes[position + 1] == UInt8(ascii: "u")
                else {
                    throw invalid("Unpaired surrogate escape at byte \(escapeStart).")
                }
                position += 2
                let low = UInt32(try parseHex4())
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw invalid("Unpaired surrogate escape at byte \(escapeStart).")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw invalid("Unpaired surrogate escape at byte \(escapeStart).")
            }
            utf8.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
        default:
            throw invalid("Invalid escape sequence at byte \(escapeStart).")
        }
    }

    private mutating func parseHex4() throws(NormalizationError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard let byte = peek() else { throw unexpected() }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw unexpected()
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }

    // MARK: - Numbers

    private mutating func parseNumber() throws(NormalizationError) -> String {
        let start = position
        let negative = peek() == UInt8(ascii: "-")
        if negative { position += 1 }
        let integerStart = position
        if peek() == UInt8(ascii: "0") {
            position += 1
        } else {
            guard skipDigits() > 0 else { throw unexpected() }
        }
        let integerDigits = bytes[integerStart..<position]
        var fractionDigits = bytes[position..<position]
        if peek() == UInt8(ascii: ".") {
            position += 1
            let fractionStart = position
            guard skipDigits() > 0 else { throw unexpected() }
            fractionDigits = bytes[fractionStart..<position]
        }
        var exponent = 0
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            position += 1
            var exponentNegative = false
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") {
                exponentNegative = peek() == UInt8(ascii: "-")
                position += 1
            }
            let exponentStart = position
            guard skipDigits() > 0 else { throw unexpected() }
            for digit in bytes[exponentStart..<position] where exponent < 1_000_000_000 {
                exponent = exponent * 10 + Int(digit - UInt8(ascii: "0"))  // saturates well above any finite Double
            }
            if exponentNegative { exponent = -exponent }
        }
        let lexeme = String(decoding: bytes[start..<position], as: UTF8.self)
        guard
            let canonical = Self.canonicalNumber(
                lexeme: lexeme,
                negative: negative,
                integerDigits: integerDigits,
                fractionDigits: fractionDigits,
                exponent: exponent
            )
        else {
            throw invalid("Number out of range at byte \(start).")
        }
        return canonical
    }

    /// Advances over ASCII digits and returns how many there were.
    private mutating func skipDigits() -> Int {
        let start = position
        while let byte = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            position += 1
        }
        return position - start
    }

    /// The canonical text of a JSON number, or nil if it overflows a Double.
    ///
    /// Values that are exactly integral and fit Int64 print as that integer (decided on the
    /// decimal digits, so 9007199254740993 stays exact); anything else is parsed as a Double and
    /// printed as Swift's shortest round-trip `description`, except that a Double with an
    /// integral value inside Int64 range prints as an integer too. -0 and 0 both print "0".
    static func canonicalNumber(
        lexeme: String,
        negative: Bool,
        integerDigits: ArraySlice<UInt8>,
        fractionDigits: ArraySlice<UInt8>,
        exponent: Int
    ) -> String? {
        var digits = Array(integerDigits) + Array(fractionDigits)
        var scale = exponent - fractionDigits.count
        guard let firstNonZero = digits.firstIndex(where: { $0 != UInt8(ascii: "0") }) else {
            return "0"
        }
        digits.removeFirst(firstNonZero)
        while digits.last == UInt8(ascii: "0") {
            digits.removeLast()
            scale += 1
        }
        if scale >= 0, digits.count + scale <= 19, let integer = exactInt64(digits: digits, scale: scale, negative: negative) {
            return String(integer)
        }
        guard let double = Double(lexeme), double.isFinite else { return nil }
        if double == double.rounded(), abs(double) < 0x1p63 {
            return String(Int64(double))
        }
        return double.description
    }

    private static func exactInt64(digits: [UInt8], scale: Int, negative: Bool) -> Int64? {
        var magnitude: UInt64 = 0
        for digit in digits + Array(repeating: UInt8(ascii: "0"), count: scale) {
            let (shifted, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            magnitude = sum
        }
        if negative {
            if magnitude == UInt64(Int64.max) + 1 { return Int64.min }
            return magnitude <= UInt64(Int64.max) ? -Int64(magnitude) : nil
        }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    // MARK: - Helpers

    private func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek(),
            byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
        {
            position += 1
        }
    }

    private func unexpected() -> NormalizationError {
        position < bytes.count
            ? invalid("Unexpected token at byte \(position).")
            : invalid("Unexpected end of input at byte \(position).")
    }

    private func invalid(_ detail: String) -> NormalizationError {
        NormalizationError(message: "Invalid JSON payload received. " + detail)
    }
}
