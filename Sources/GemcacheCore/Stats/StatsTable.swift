import Foundation

/// The stats document as a table for a terminal (`gemcache stats` without `--json`).
public enum StatsTable {
    /// Renders `document` (the JSON values of `/_gemcache/stats`).
    public static func render(_ document: [String: Any]) -> String {
        // Read from the number's text: `int64Value` turns a number past Int64 (a proxy's JSON may hold any) into a wrong one.
        func int(_ value: Any?) -> String { (value as? NSNumber).flatMap { Int64($0.description) }.map(grouped) ?? "-" }
        func pct(_ value: Any?) -> String { (value as? NSNumber).map { String(format: "%.1f %%", $0.doubleValue) } ?? "-" }
        func usd(_ value: Any?) -> String { (value as? NSNumber).map { String(format: "$%.4f", $0.doubleValue) } ?? "-" }
        var lines = [
            "gemcache stats since \(document["since"] as? String ?? "-")" + ((document["until"] as? String).map { " until " + $0 } ?? ""),
            "quota day \(document["quota_day"] as? String ?? "-") (America/Los_Angeles), resets \(document["quota_day_resets_at"] as? String ?? "-")",
            "",
        ]
        let totals: [(String, String, String, String)] = [
            ("requests", int(document["requests"]), "hit ratio", pct((document["hit_ratio"] as? NSNumber).map { $0.doubleValue * 100 })),
            ("hits", int(document["hits"]), "saved requests", int(document["saved_requests"])),
            ("coalesced", int(document["coalesced"]), "saved tokens", int(document["saved_tokens"])),
            ("misses", int(document["misses"]), "saved USD", usd(document["saved_usd"])),
            ("refreshed", int(document["refreshed"]), "upstream requests", int(document["upstream_requests"])),
            ("bypassed", int(document["bypassed"]), "entries", int(document["entries"])),
            ("stale", int(document["stale"]), "store bytes", int(document["store_bytes"])),
            ("errors", int(document["errors"]), "saved items", int(document["saved_items"])),
            ("damaged", int(document["damaged"]), "", ""),
        ]
        for (leftName, leftValue, rightName, rightValue) in totals {
            let right = rightName.isEmpty ? "" : "    " + pad(rightName, 18) + padLeft(rightValue, 12)
            lines.append(pad(leftName, 12) + padLeft(leftValue, 10) + right)
        }
        let models = document["models"] as? [String: [String: Any]] ?? [:]
        table(
            ["model", "upstream today", "saved today", "RPD", "RPD used", "without cache", "req/min", "tok/min", "saved USD"],
            models.keys.sorted().map { name in
                let model = models[name]!
                let limits = model["free_tier"] as? [String: Any] ?? [:]
                return [
                    name, int(model["upstream_requests_today"]), int(model["saved_requests_today"]), int(limits["rpd"]),
                    pct(model["rpd_used_pct"]), pct(model["rpd_without_cache_pct"]), int(model["upstream_requests_minute"]),
                    int(model["upstream_tokens_minute"]), usd(model["saved_usd"]),
                ]
            },
            into: &lines
        )
        for (title, field) in [("namespace", "namespaces"), ("client", "clients")] {
            let groups = document[field] as? [String: [String: Any]] ?? [:]
            table(
                [title, "requests", "hits", "coalesced", "misses", "errors", "upstream", "hit ratio"],
                groups.keys.sorted().map { name in
                    let group = groups[name]!
                    return [
                        name.isEmpty ? "(none)" : name, int(group["requests"]), int(group["hits"]), int(group["coalesced"]),
                        int(group["misses"]), int(group["errors"]), int(group["upstream_requests"]),
                        pct((group["hit_ratio"] as? NSNumber).map { $0.doubleValue * 100 }),
                    ]
                },
                into: &lines
            )
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Appends a blank line and `rows` under `header`, the first column left-aligned, the rest right;
    /// nothing when there are no rows.
    private static func table(_ header: [String], _ rows: [[String]], into lines: inout [String]) {
        guard !rows.isEmpty else { return }
        let rows = [header] + rows
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        lines.append("")
        for row in rows {
            let cells = row.indices.map { column in column == 0 ? pad(row[column], widths[column]) : padLeft(row[column], widths[column]) }
            lines.append(cells.joined(separator: "  "))
        }
    }

    /// `1234567` as `1,234,567`.
    static func grouped(_ value: Int64) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return (value < 0 ? "-" : "") + out
    }

    private static func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(0, width - text.count)) }
    private static func padLeft(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
}
