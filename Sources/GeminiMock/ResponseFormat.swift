import Foundation

/// What a request's `alt` query parameter asks for: `sse`, `json` or `json;enum-encoding=int`. Google
/// reads `alt` and `$alt` alike; its generated REST clients send `%24alt=json%3Benum-encoding%3Dint`.
struct ResponseFormat {
    /// The last `alt` or `$alt` value, percent-decoded; nil without one.
    let alt: String?

    /// Reads the raw query string of a request target (`request.uri.query`).
    init(query: String?) {
        var alt: String?
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding
            if name == "alt" || name == "$alt" {
                alt = parts.count > 1 ? String(parts[1]).removingPercentEncoding : ""
            }
        }
        self.alt = alt
    }

    /// A stream as server-sent events rather than a JSON array.
    var isSSE: Bool { alt == "sse" }

    /// Enums by number with `enum-encoding=int`, else by name.
    var enums: EnumEncoding {
        alt?.split(separator: ";").contains("enum-encoding=int") == true ? .numbers : .names
    }
}
