import Foundation

/// Parsers for the value forms of `proxy.conf` (SPEC §1): durations, sizes, choices, URLs.
enum SettingValue {
    /// The longest duration anything takes: ten years, the bound of `X-Gemcache-TTL` (SPEC §4). No TTL,
    /// timeout or window needs more, and in milliseconds any duration up to it added to the clock
    /// stays far from the ends of `Int64`.
    static let longestDuration: Duration = .seconds(315_360_000)

    /// Seconds as a number, or a number with a unit: `90s`, `30m`, `24h`, `7d`; at most
    /// ``longestDuration``. Settings, `gemcache purge --older-than` and the admin purge's `older_than`
    /// all read durations here.
    static func duration(_ raw: String, positive: Bool) throws(SettingProblem) -> Duration {
        let (value, scale) = number(raw, units: [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)])
        guard let value, value.isFinite, value >= 0 else {
            throw SettingProblem("expected a duration such as 90, 90s, 30m, 24h or 7d, got \"\(raw)\"")
        }
        let milliseconds = (value * scale * 1000).rounded()
        // Compared as a Double, before the integer conversion (which would trap past Int64).
        guard milliseconds <= Double(longestDuration.wholeSeconds) * 1000 else {
            throw SettingProblem("must be at most 10 years (315360000 seconds), got \"\(raw)\"")
        }
        if positive && milliseconds == 0 {
            throw SettingProblem("must be greater than zero")
        }
        return .milliseconds(Int64(milliseconds))
    }

    /// Bytes as a number, or with a unit: `512KiB`, `100MiB`, `4GiB` (also KB/MB/GB as powers of 1000).
    static func size(_ raw: String, minimum: Int) throws(SettingProblem) -> Int {
        let (value, scale) = number(
            raw,
            units: [
                ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
                ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
            ]
        )
        guard let value, value.isFinite, value >= 0,
            value * scale < Double(Int.max)
        else {
            throw SettingProblem("expected a size such as 1048576, 512KiB, 100MiB or 4GiB, got \"\(raw)\"")
        }
        let bytes = Int(value * scale)
        guard bytes >= minimum else {
            throw SettingProblem("must be at least \(minimum) bytes, got \"\(raw)\"")
        }
        return bytes
    }

    /// The number before the first matching unit suffix, and that unit's scale (1 without a unit).
    private static func number(_ raw: String, units: [(suffix: String, scale: Double)]) -> (Double?, Double) {
        let unit = units.first { raw.hasSuffix($0.suffix) }
        let digits = unit.map { String(raw.dropLast($0.suffix.count)) } ?? raw
        return (Double(digits.trimmingCharacters(in: .whitespaces)), unit?.scale ?? 1)
    }

    static func integer(_ raw: String, in range: ClosedRange<Int>) throws(SettingProblem) -> Int {
        guard let value = Int(raw), range.contains(value) else {
            throw SettingProblem("expected a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(raw)\"")
        }
        return value
    }

    static func boolean(_ raw: String) throws(SettingProblem) -> Bool {
        switch raw.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw SettingProblem("expected true or false, got \"\(raw)\"")
        }
    }

    static func choice<Choice: RawRepresentable & CaseIterable>(_ raw: String) throws(SettingProblem) -> Choice
    where Choice.RawValue == String {
        guard let value = Choice(rawValue: raw) else {
            let choices = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw SettingProblem("expected one of \(choices), got \"\(raw)\"")
        }
        return value
    }

    static func nonEmpty(_ raw: String) throws(SettingProblem) -> String {
        guard !raw.isEmpty else { throw SettingProblem("must not be empty") }
        return raw
    }

    /// An `http`/`https` base URL with a host, without a trailing slash.
    static func httpURL(_ raw: String) throws(SettingProblem) -> String {
        guard let url = URLComponents(string: raw), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty, url.query == nil
        else {
            throw SettingProblem("expected an http:// or https:// URL, got \"\(raw)\"")
        }
        return raw.hasSuffix("/") ? String(raw.dropLast()) : raw
    }

    /// A URL with one of `schemes`, or nothing (`null`, empty).
    static func optionalURL(_ raw: String, schemes: Set<String>) throws(SettingProblem) -> String? {
        if ["", "~", "null"].contains(raw) { return nil }
        guard let url = URLComponents(string: raw), let scheme = url.scheme?.lowercased(), schemes.contains(scheme) else {
            throw SettingProblem("expected null or a \(schemes.sorted().joined(separator: "/"))://host/db URL")
        }
        guard url.password == nil else {
            throw SettingProblem("credentials belong in the environment, not in the URL")
        }
        return raw
    }

    /// `upstream.proxy`: nothing (`null`, empty), or `http://host[:port]` without credentials.
    static func egressProxy(_ raw: String) throws(SettingProblem) -> String? {
        if ["", "~", "null"].contains(raw) { return nil }
        _ = try EgressProxy(url: raw, credentialsAllowed: false)
        return raw
    }

    /// `telemetry.otlp_endpoint`: nothing (`null`, empty), or an OTLP/HTTP collector's `http://` or
    /// `https://` base URL, without credentials (the value is not echoed: it might hold some).
    static func otlpEndpoint(_ raw: String) throws(SettingProblem) -> String? {
        if ["", "~", "null"].contains(raw) { return nil }
        guard let url = URLComponents(string: raw), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host, !host.isEmpty, url.query == nil, url.fragment == nil
        else {
            throw SettingProblem("expected null or a collector's http:// or https:// base URL, such as http://collector:4318")
        }
        guard url.user == nil, url.password == nil else {
            throw SettingProblem("credentials belong in the environment (OTEL_EXPORTER_OTLP_HEADERS), not in the URL")
        }
        return raw.hasSuffix("/") ? String(raw.dropLast()) : raw
    }

    /// The name of an environment variable (holding a secret).
    static func variableName(_ raw: String) throws(SettingProblem) -> String {
        let valid =
            !raw.isEmpty && raw.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isUppercase || $0.isNumber)) }
            && !(raw.first?.isNumber ?? true)
        guard valid else {
            throw SettingProblem("expected an environment variable name such as GEMINI_API_KEY, got \"\(raw)\"")
        }
        return raw
    }
}

extension Duration {
    /// Whole seconds, rounded down.
    var wholeSeconds: Int64 { components.seconds }
}
