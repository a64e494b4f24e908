import Foundation
import GemcacheKey

/// A client's request target, checked to be in origin form (RFC 9112 §3.2.1) so that it can only ever
/// name a path on the configured upstream (SPEC §2).
///
/// The target must start with exactly one `/` and hold nothing but RFC 3986 path and query characters
/// minus `@` (no scheme, no authority, no userinfo, no `\`, no fragment, no spaces or control bytes),
/// no empty, `.` or `..` segment (so no `//` anywhere in the path) and no percent-encoded `.`, `/` or
/// `\`: no Gemini API path needs any of these,
/// and each is a way to make the upstream, or a library on the way, resolve another host or path than
/// the one this proxy routed. ``UpstreamClient`` still checks the host and port of every URL it builds.
struct UpstreamTarget: Sendable, Equatable {
    /// The path, starting with a single `/`.
    let path: String
    /// The query as sent (still percent-encoded), without the `?`; nil when there is none.
    let query: String?

    /// Parses a raw request target.
    /// - Throws: 400 `INVALID_ARGUMENT` for anything but a plain origin-form target.
    init(_ target: String) throws(ProxyError) {
        let bytes = Array(target.utf8)
        guard bytes.count >= 1, bytes.count <= Self.maxLength, bytes[0] == UInt8(ascii: "/"),
            bytes.count == 1 || bytes[1] != UInt8(ascii: "/"),
            bytes.allSatisfy(Self.isAllowed)
        else { throw .invalidRequestTarget }
        let mark = bytes.firstIndex(of: UInt8(ascii: "?"))
        let path = bytes[..<(mark ?? bytes.count)]
        let segments = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        guard !segments.dropLast().contains(where: \.isEmpty), !segments.contains(where: Self.isForbiddenSegment) else {
            throw .invalidRequestTarget
        }
        self.path = String(decoding: path, as: UTF8.self)
        self.query = mark.map { String(decoding: bytes[($0 + 1)...], as: UTF8.self) }
    }

    /// The target with another path (the fallback model's), checked like a client's.
    func replacingPath(_ path: String) throws(ProxyError) -> UpstreamTarget {
        try UpstreamTarget(path + (query.map { "?" + $0 } ?? ""))
    }

    /// `path?query`, as sent.
    var pathAndQuery: String { path + (query.map { "?" + $0 } ?? "") }

    /// The target without the credential parameters (`key`, `access_token`, `oauth_token`), the rest
    /// of the query as sent.
    var removingCredentials: UpstreamTarget {
        guard let query else { return self }
        let kept = query.split(separator: "&").filter { pair in
            let name = String(pair.prefix { $0 != "=" })
            return QueryParameter.role(of: name.removingPercentEncoding ?? name, isGET: false) != .credential
        }
        return UpstreamTarget(checkedPath: path, query: kept.isEmpty ? nil : kept.joined(separator: "&"))
    }

    private init(checkedPath: String, query: String?) {
        self.path = checkedPath
        self.query = query
    }

    /// `.`, `..`, or a segment holding a percent-encoded `.`, `/` or `\`.
    private static func isForbiddenSegment(_ segment: ArraySlice<UInt8>) -> Bool {
        if (1...2).contains(segment.count) && segment.allSatisfy({ $0 == UInt8(ascii: ".") }) { return true }
        return zip(segment, zip(segment.dropFirst(), segment.dropFirst(2))).contains { percent, encoded in
            guard percent == UInt8(ascii: "%") else { return false }
            switch (encoded.0, encoded.1 | 0x20) {
            case (UInt8(ascii: "2"), UInt8(ascii: "e")), (UInt8(ascii: "2"), UInt8(ascii: "f")), (UInt8(ascii: "5"), UInt8(ascii: "c")): return true
            default: return false
            }
        }
    }

    /// Longer targets are refused (Google's own front end refuses far shorter ones).
    static let maxLength = 16 << 10

    /// RFC 3986 `pchar`, `/` and `?` (path and query), without `@`.
    private static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "-._~%!$&'()*+,;=:/?".utf8.contains(byte)
        }
    }
}

/// The configured upstream base URL (`upstream.url`), and the one way to turn a target into an
/// upstream URL: the checked target after the base, then a check that the URL as parsed still names
/// the configured scheme, host and port and no user (SPEC §2).
struct UpstreamOrigin: Sendable {
    /// The base URL without a trailing slash; it may have a path of its own (a relay's prefix).
    let base: String
    private let scheme: String?
    private let host: String?
    private let port: Int?

    init(_ base: String) {
        self.base = base
        let url = URL(string: base)
        scheme = url?.scheme?.lowercased()
        host = url?.host?.lowercased()
        port = url.flatMap(Self.effectivePort)
    }

    /// The upstream URL of `target`.
    /// - Throws: 400 if the URL would name anything but the configured upstream (never expected of a
    ///   checked target; the check keeps it so whatever parsing rules change).
    func url(for target: UpstreamTarget) throws(ProxyError) -> String {
        let url = base + target.pathAndQuery
        guard let parsed = URL(string: url), parsed.scheme?.lowercased() == scheme, parsed.host?.lowercased() == host,
            Self.effectivePort(parsed) == port, parsed.user == nil, parsed.password == nil
        else {
            throw ProxyError.invalidArgument("Invalid request target: it does not name a path on the configured upstream.")
        }
        return url
    }

    private static func effectivePort(_ url: URL) -> Int? {
        url.port ?? (url.scheme?.lowercased() == "https" ? 443 : url.scheme?.lowercased() == "http" ? 80 : nil)
    }
}
