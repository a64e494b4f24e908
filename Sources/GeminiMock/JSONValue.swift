import Foundation
import NIOCore

/// A JSON value whose objects keep their key order, so answers serialize to fixed bytes.
enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    /// Single-line form as Google writes it in SSE events: `": "` after keys, no space after commas.
    var compact: String {
        var out = ""
        write(into: &out, indent: nil)
        return out
    }

    /// Pretty-printed with 2-space indentation, as in Google's JSON-array streams.
    var pretty: String {
        var out = ""
        write(into: &out, indent: 0)
        return out
    }

    private func write(into out: inout String, indent: Int?) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .int(let value): out += String(value)
        case .double(let value): out += String(value)
        case .string(let value): Self.writeString(value, into: &out)
        case .array(let items):
            writeContainer(open: "[", close: "]", count: items.count, into: &out, indent: indent) { index, out, inner in
                items[index].write(into: &out, indent: inner)
            }
        case .object(let members):
            writeContainer(open: "{", close: "}", count: members.count, into: &out, indent: indent) { index, out, inner in
                Self.writeString(members[index].0, into: &out)
                out += ": "
                members[index].1.write(into: &out, indent: inner)
            }
        }
    }

    private func writeContainer(
        open: String,
        close: String,
        count: Int,
        into out: inout String,
        indent: Int?,
        element: (Int, inout String, Int?) -> Void
    ) {
        out += open
        guard count > 0 else {
            out += close
            return
        }
        let inner = indent.map { $0 + 2 }
        for index in 0..<count {
            if index > 0 { out += "," }
            if let inner { out += "\n" + String(repeating: " ", count: inner) }
            element(index, &out, inner)
        }
        if let indent { out += "\n" + String(repeating: " ", count: indent) }
        out += close
    }

    private static func writeString(_ value: String, into out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

/// Read-only access to a parsed request body (the result of `JSONSerialization`).
struct RequestJSON {
    let root: [String: Any]

    /// Parses a JSON object; anything else (including malformed JSON) is an INVALID_ARGUMENT error.
    init(bytes: ByteBuffer) throws(GoogleError) {
        let data = Data(bytes.readableBytesView)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw .invalidArgument("Invalid JSON payload received. Unexpected token.")
        }
        guard let object = parsed as? [String: Any] else {
            throw .invalidArgument("Invalid JSON payload received. Expected an object.")
        }
        self.root = object
    }
}

/// Every string found under a `"text"` key anywhere in `value`: arrays in order, object keys sorted.
func textParts(in value: Any) -> [String] {
    if let object = value as? [String: Any] {
        return object.keys.sorted().flatMap { key -> [String] in
            if key == "text", let text = object[key] as? String { return [text] }
            return textParts(in: object[key]!)
        }
    }
    if let array = value as? [Any] { return array.flatMap(textParts(in:)) }
    return []
}
