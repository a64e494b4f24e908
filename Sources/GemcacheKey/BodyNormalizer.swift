/// How much of a request body is normalized before it enters the cache key (`cache.normalize`).
public enum NormalizationLevel: String, Sendable, CaseIterable {
    /// The body bytes as sent.
    case exact
    /// Canonical JSON: sorted keys, one number form, API field names in camelCase, null members dropped.
    case canonical
    /// Canonical, plus NFC, LF line ends and trimmed ends in every text part.
    case text
}

/// Which field-naming and text-part rules apply to a body.
public enum BodyDialect: Sendable {
    /// Native Gemini REST bodies: snake_case API field names become camelCase; text parts are
    /// the `text` members of `parts[]` elements.
    case gemini
    /// The OpenAI-compatible surface: no renaming; text parts are `messages[].content` strings,
    /// `text` members of content parts, and embedding `input` strings.
    case openAI
}

/// A request body the cache key cannot be built from; answered with 400 and no upstream call.
public struct NormalizationError: Error, Sendable, CustomStringConvertible {
    /// Client-facing explanation. Never contains more of the body than a field name.
    public let message: String

    /// Creates an error with a client-facing message.
    public init(message: String) {
        self.message = message
    }

    /// The client-facing message.
    public var description: String { message }
}

/// Turns a request body into the bytes that enter the cache key (SPEC §3).
///
/// Canonical form (levels `canonical` and `text`), which is part of the key contract:
/// - object members sorted by the UTF-8 bytes of their names; no whitespace;
/// - strings: `"` and `\` backslash-escaped, U+0008/09/0A/0C/0D as `\b \t \n \f \r`, other
///   controls below U+0020 as `\u00xx` (lowercase hex), everything else raw UTF-8 (`/` unescaped);
/// - numbers: see `KeyJSONParser.canonicalNumber` (1, 1.0, 1e0 → `1`; -0 → `0`; 0.5 → `0.5`);
/// - `null` members dropped recursively; `null` array elements kept;
/// - duplicate member names (after renaming) are rejected;
/// - free-form JSON (function-call `args`, function `response`/`parameters`/`parametersJsonSchema`,
///   `responseSchema`, `responseJsonSchema`, `labels`, `partMetadata`; for OpenAI `parameters`,
///   `schema`, `metadata`, `logit_bias`) is user data: names never renamed, strings never
///   text-normalized, `null` members kept; still sorted, numbers still canonical.
public enum BodyNormalizer {
    /// Validates `body` as a UTF-8 JSON object (at every level, `.exact` included) and returns the
    /// bytes that enter the key: the body as sent at `.exact`, its canonical form otherwise.
    public static func normalize(
        _ body: [UInt8],
        level: NormalizationLevel,
        dialect: BodyDialect
    ) throws(NormalizationError) -> [UInt8] {
        let value = try KeyJSONParser.parse(body)
        guard case .object = value else {
            throw NormalizationError(message: "Invalid JSON payload received. The request body must be a JSON object.")
        }
        if level == .exact {
            return body
        }
        var writer = CanonicalWriter(dialect: dialect, normalizesText: level == .text)
        try writer.write(value, role: dialect == .gemini ? .generic : .openAIRoot)
        return writer.output
    }
}

/// Serializes a parsed body in canonical form, applying the dialect's renaming and text rules.
package struct CanonicalWriter {
    /// Where a value sits in the body, as far as renaming, nulls and text rules are concerned.
    enum Role {
        case generic
        /// User data: no renaming, nulls kept, no text normalization.
        case freeForm
        /// An array of parts (Gemini `parts`).
        case partList
        /// A part object: its `text` member is a text part.
        case part
        /// A text string; as an object, a content part (OpenAI).
        case textual
        /// A text string or an array of texts/content parts (OpenAI `content`, `input`).
        case textualList
        case openAIRoot
        case messageList
        case message
    }

    static let geminiFreeFormKeys: Set<String> = [
        "args", "response", "parameters", "parametersJsonSchema",
        "responseSchema", "responseJsonSchema", "labels", "partMetadata",
    ]
    static let openAIFreeFormKeys: Set<String> = ["parameters", "schema", "metadata", "logit_bias"]

    let dialect: BodyDialect
    let normalizesText: Bool
    private(set) var output: [UInt8] = []

    init(dialect: BodyDialect, normalizesText: Bool) {
        self.dialect = dialect
        self.normalizesText = normalizesText
    }

    mutating func write(_ value: KeyJSONValue, role: Role) throws(NormalizationError) {
        switch value {
        case .null:
            append("null")
        case .bool(let flag):
            append(flag ? "true" : "false")
        case .number(let text):
            append(text)
        case .string(let string):
            let isText = normalizesText && (role == .textual || role == .textualList)
            writeString(isText ? TextNormalization.normalize(string) : string)
        case .array(let elements):
            let elementRole: Role =
                switch role {
                case .freeForm: .freeForm
                case .partList: .part
                case .messageList: .message
                case .textualList: .textual
                default: .generic
                }
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                try write(element, role: elementRole)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let members):
            try writeObject(members, role: role)
        }
    }

    private mutating func writeObject(
        _ members: [(key: String, value: KeyJSONValue)],
        role: Role
    ) throws(NormalizationError) {
        let renames = dialect == .gemini && role != .freeForm
        var entries = members.map { member in
            (key: renames ? Self.camelCased(member.key) : member.key, value: member.value)
        }
        entries.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        for (previous, next) in zip(entries, entries.dropFirst()) where previous.key.utf8.elementsEqual(next.key.utf8) {
            throw NormalizationError(
                message: "Invalid JSON payload received. Duplicate field \(Self.quoted(String(next.key.prefix(64))))."
            )
        }
        output.append(UInt8(ascii: "{"))
        var first = true
        for entry in entries {
            if case .null = entry.value, role != .freeForm { continue }
            if !first { output.append(UInt8(ascii: ",")) }
            first = false
            writeString(entry.key)
            output.append(UInt8(ascii: ":"))
            try write(entry.value, role: childRole(of: entry.key, in: role))
        }
        output.append(UInt8(ascii: "}"))
    }

    private func childRole(of key: String, in role: Role) -> Role {
        if role == .freeForm { return .freeForm }
        switch dialect {
        case .gemini:
            if Self.geminiFreeFormKeys.contains(key) { return .freeForm }
            if key == "parts" { return .partList }
            return role == .part && key == "text" ? .textual : .generic
        case .openAI:
            if Self.openAIFreeFormKeys.contains(key) { return .freeForm }
            switch role {
            case .openAIRoot:
                return key == "messages" ? .messageList : key == "input" ? .textualList : .generic
            case .message:
                return key == "content" ? .textualList : .generic
            case .part, .textual:
                return key == "text" ? .textual : .generic
            default:
                return .generic
            }
        }
    }

    /// Proto3 JSON naming: each `_` followed by `a`–`z` (not at the start) is dropped and the letter uppercased.
    static func camelCased(_ key: String) -> String {
        let bytes = Array(key.utf8)
        guard bytes.contains(UInt8(ascii: "_")) else { return key }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "_"), !out.isEmpty, index + 1 < bytes.count,
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(bytes[index + 1])
            {
                out.append(bytes[index + 1] - 0x20)
                index += 2
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `string` as a canonical JSON string literal.
    package static func quoted(_ string: String) -> String {
        var writer = CanonicalWriter(dialect: .openAI, normalizesText: false)
        writer.writeString(string)
        return String(decoding: writer.output, as: UTF8.self)
    }

    private mutating func writeString(_ string: String) {
        var string = string
        output.append(UInt8(ascii: "\""))
        string.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                output.append(contentsOf: utf8[runStart..<index])
                appendEscape(byte)
                runStart = index + 1
            }
            output.append(contentsOf: utf8[runStart...])
        }
        output.append(UInt8(ascii: "\""))
    }

    private mutating func appendEscape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): append("\\\"")
        case UInt8(ascii: "\\"): append("\\\\")
        case 0x08: append("\\b")
        case 0x09: append("\\t")
        case 0x0a: append("\\n")
        case 0x0c: append("\\f")
        case 0x0d: append("\\r")
        default:
            let hexDigits = Array("0123456789abcdef".utf8)
            append("\\u00")
            output.append(hexDigits[Int(byte >> 4)])
            output.append(hexDigits[Int(byte & 0x0f)])
        }
    }

    private mutating func append(_ text: String) {
        output.append(contentsOf: text.utf8)
    }
}
