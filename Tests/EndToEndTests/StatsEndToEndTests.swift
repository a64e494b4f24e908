import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// The stats endpoint, `/metrics`, the dashboard and `gemcache stats` against real traffic.
@Suite(.timeLimit(.minutes(1)))
struct StatsEndToEndTests {
    static let flash = "gemini-2.5-flash"
    static let unlisted = "gemini-unlisted-test"

    static func configuration(upstreamPort: Int, directory: String) -> ProxyConfiguration {
        var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: directory)
        configuration.limits.models = [flash: .init(rpm: 10, tpm: 250_000, rpd: 250)]
        configuration.prices = [flash: .init(input: 0.30, output: 2.50)]
        return configuration
    }

    static func ask(_ port: Int, model: String = flash, _ text: String, headers: [String: String] = [:]) async throws -> TestResponse {
        try await send(
            port: port,
            path: "/v1beta/models/\(model):generateContent",
            body: generateBody(text),
            headers: headers.merging(["x-goog-api-key": testKey]) { $1 }
        )
    }

    /// `(prompt, total)` tokens of an answer's usageMetadata.
    static func tokens(_ response: TestResponse) throws -> (prompt: Int, total: Int) {
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let usage = try #require(json["usageMetadata"] as? [String: Any])
        return (try #require(usage["promptTokenCount"] as? Int), try #require(usage["totalTokenCount"] as? Int))
    }

    /// A stats document without the fields that change by themselves (store size).
    static func withoutClock(_ stats: [String: Any]) -> [String: Any] {
        stats.filter { $0.key != "store_bytes" }
    }

    static func stats(_ port: Int) async throws -> [String: Any] {
        let response = try await send("GET", port: port, path: "/_gemcache/stats")
        #expect(response.status == 200)
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
    }

    /// A miss and two hits on flash, three concurrent identical flash requests (one miss, two
    /// coalesced), a miss and a hit on a model without limits, and a `no-store` bypass.
    /// - Returns: The tokens that the hits and coalesced answers saved, by model as (prompt, total).
    static func script(_ port: Int) async throws -> [String: (prompt: Int, total: Int)] {
        let first = try await ask(port, "alpha")
        #expect(first.header("x-gemcache") == "MISS")
        // Equivalent but not byte-identical repeats: hits of the slow path, which the middleware times.
        for variant in ["alpha ", " alpha"] { #expect(try await ask(port, variant).header("x-gemcache") == "HIT") }
        let together = try await withThrowingTaskGroup(of: TestResponse.self) { group in
            for _ in 0..<3 { group.addTask { try await ask(port, "beta, all at once") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(together.map { $0.header("x-gemcache") ?? "" }.sorted() == ["COALESCED", "COALESCED", "MISS"])
        #expect(try await ask(port, model: unlisted, "gamma").header("x-gemcache") == "MISS")
        let unlistedHit = try await ask(port, model: unlisted, "gamma ")
        #expect(unlistedHit.header("x-gemcache") == "HIT")
        #expect(try await ask(port, "delta", headers: ["cache-control": "no-store"]).header("x-gemcache") == "BYPASS")
        let (a, b, c) = (try tokens(first), try tokens(together[0]), try tokens(unlistedHit))
        return [flash: (2 * a.prompt + 2 * b.prompt, 2 * a.total + 2 * b.total), unlisted: c]
    }

    @Test func scriptedTrafficAddsUpInTheStatsDocument() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream(.init(latency: .milliseconds(400))) { upstreamPort, recorder in
                try await withProxy(Self.configuration(upstreamPort: upstreamPort, directory: dir.path)) { port in
                    let saved = try await Self.script(port)
                    let stats = try await Self.stats(port)
                    #expect(recorder.totalRequests == 4)
                    #expect(stats["requests"] as? Int == 9)
                    #expect(stats["hits"] as? Int == 3)
                    #expect(stats["coalesced"] as? Int == 2)
                    #expect(stats["misses"] as? Int == 3)
                    #expect(stats["bypassed"] as? Int == 1)
                    #expect(stats["refreshed"] as? Int == 0)
                    #expect(stats["errors"] as? Int == 0)
                    #expect(stats["hit_ratio"] as? Double == 0.625)
                    #expect(stats["saved_requests"] as? Int == 5)
                    #expect(stats["saved_tokens"] as? Int == saved[Self.flash]!.total + saved[Self.unlisted]!.total)
                    #expect(stats["upstream_requests"] as? Int == 4)
                    #expect(stats["entries"] as? Int == 3)
                    let (prompt, total) = saved[Self.flash]!
                    let usd = (Double(prompt) * 0.30 + Double(total - prompt) * 2.50) / 1_000_000
                    #expect(abs((stats["saved_usd"] as? Double ?? -1) - usd) < 0.000_001)
                    #expect(stats["quota_day"] as? String == QuotaDay(containing: Date()).id)

                    let models = try #require(stats["models"] as? [String: [String: Any]])
                    let flash = try #require(models[Self.flash])
                    #expect(flash["upstream_requests_today"] as? Int == 3)
                    #expect(flash["saved_requests_today"] as? Int == 4)
                    #expect(flash["saved_tokens_today"] as? Int == total)
                    #expect(flash["rpd_used_pct"] as? Double == 1.2)
                    #expect(flash["rpd_without_cache_pct"] as? Double == 2.8)
                    #expect((flash["free_tier"] as? [String: Int]) == ["rpm": 10, "rpd": 250, "tpm": 250_000])
                    let unlisted = try #require(models[Self.unlisted])
                    #expect(unlisted["hits"] as? Int == 1 && unlisted["misses"] as? Int == 1)
                    #expect(unlisted["upstream_requests_today"] as? Int == 1)
                    let limits = try #require(unlisted["free_tier"] as? [String: Any])
                    #expect(limits.values.allSatisfy { $0 is NSNull })
                    #expect(unlisted["rpd_used_pct"] is NSNull && unlisted["saved_usd"] is NSNull)
                }
            }
        }
    }

    /// The Grafana dashboard of the compose file's `observability` profile asks only for series that
    /// `/metrics` exports once the proxy has seen traffic (a renamed metric would leave a panel empty).
    @Test func theGrafanaDashboardQueriesOnlyMetricsTheProxyExports() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = root.appendingPathComponent("observability/grafana/dashboards/gemcache.json")
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let queries = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        let names = Set(queries.flatMap { $0.matches(of: /gemcache_[a-z_]+/).map { String($0.output) } })
        #expect(panels.count >= 8 && names.count >= 10)
        try await withTemporaryDirectory { dir in
            try await withMockUpstream(.init(latency: .milliseconds(400))) { upstreamPort, _ in
                try await withProxy(Self.configuration(upstreamPort: upstreamPort, directory: dir.path)) { port in
                    _ = try await Self.script(port)
                    #expect(try await Self.ask(port, "zeta", headers: ["x-gemcache-namespace": "team-a"]).header("x-gemcache") == "MISS")
                    let exposition = try await send("GET", port: port, path: "/metrics").body
                    for name in names.sorted() { #expect(exposition.contains(name + "{") || exposition.contains(name + " "), "\(name)") }
                }
            }
        }
    }

    @Test func metricsShowTheSameNumbersAsTheStats() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream(.init(latency: .milliseconds(400))) { upstreamPort, _ in
                try await withProxy(Self.configuration(upstreamPort: upstreamPort, directory: dir.path)) { port in
                    _ = try await Self.script(port)
                    // Counting lags an answer slightly (fast-path hits are reported in batches): compare
                    // a scrape taken between two identical stats documents.
                    var stats = try await Self.stats(port)
                    var response = try await send("GET", port: port, path: "/metrics")
                    for _ in 0..<50 {
                        let after = try await Self.stats(port)
                        if NSDictionary(dictionary: Self.withoutClock(after)).isEqual(to: Self.withoutClock(stats)) { break }
                        // Real time is the subject: the fast path's batched reports and the ledger's flush run on real timers.
                        try await Task.sleep(for: .milliseconds(100))
                        stats = try await Self.stats(port)
                        response = try await send("GET", port: port, path: "/metrics")
                    }
                    #expect(response.status == 200)
                    #expect(response.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
                    #expect(!response.body.contains(testKey))
                    let samples = Self.samples(response.body)
                    for name in [
                        "requests", "hits", "coalesced", "misses", "refreshed", "bypassed", "stale", "errors", "upstream_requests", "saved_requests",
                        "saved_tokens", "saved_items",
                    ] {
                        #expect(samples["gemcache_\(name)_total"] == (stats[name] as? NSNumber)?.doubleValue, "\(name)")
                    }
                    for name in ["hit_ratio", "saved_usd", "entries"] {
                        #expect(samples["gemcache_\(name)"] == (stats[name] as? NSNumber)?.doubleValue, "\(name)")
                    }
                    let models = try #require(stats["models"] as? [String: [String: Any]])
                    for (model, fields) in models {
                        for name in ["hits", "coalesced", "misses", "upstream_requests", "saved_requests", "saved_tokens"] {
                            #expect(samples["gemcache_model_\(name)_total{model=\"\(model)\"}"] == (fields[name] as? NSNumber)?.doubleValue)
                        }
                        for name in [
                            "upstream_requests_today", "saved_requests_today", "upstream_requests_minute", "rpd_used_pct", "rpd_without_cache_pct",
                            "saved_usd",
                        ] {
                            #expect(
                                samples["gemcache_model_\(name){model=\"\(model)\"}"] == (fields[name] as? NSNumber)?.doubleValue,
                                "\(model) \(name)"
                            )
                        }
                    }
                    #expect(samples["gemcache_model_free_tier_rpd{model=\"\(Self.unlisted)\"}"] == nil)
                    #expect(samples["gemcache_model_free_tier_rpd{model=\"\(Self.flash)\"}"] == 250)
                    #expect(samples["gemcache_hit_duration_seconds_count"] == 3)
                    #expect(samples["gemcache_upstream_duration_seconds_count"] == 4)
                    #expect((samples["gemcache_upstream_duration_seconds_sum"] ?? 0) >= 3 * 0.4)

                    // A second scrape after more traffic moves the counters by exactly that traffic.
                    #expect(try await Self.ask(port, "alpha").header("x-gemcache") == "HIT")
                    // Fast-path hits reach the ledger in batches (FastPathHandler.reportDelay): poll, bounded.
                    var again = Self.samples(try await send("GET", port: port, path: "/metrics").body)
                    for _ in 0..<100 where again["gemcache_hits_total"] != 4 {
                        // Real time is the subject: fast-path hits reach the ledger after a real delay.
                        try await Task.sleep(for: .milliseconds(50))
                        again = Self.samples(try await send("GET", port: port, path: "/metrics").body)
                    }
                    #expect(again["gemcache_hits_total"] == 4)
                    #expect(again["gemcache_model_hits_total{model=\"\(Self.flash)\"}"] == 3)
                    // Fast-path hits are timed too (from the parsed head to the written answer).
                    #expect(again["gemcache_hit_duration_seconds_count"] == 4)
                    #expect((again["gemcache_hit_duration_seconds_sum"] ?? 0) > (samples["gemcache_hit_duration_seconds_sum"] ?? 0))
                }
            }
        }
    }

    /// Sample values by series (`name{labels}`), from the Prometheus text format.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }
}

/// Counters shared by `gemcache serve` processes on one store, kept across restarts, and read by
/// `gemcache stats`.
@Suite(.timeLimit(.minutes(1)))
struct StatsProcessTests {
    /// Runs `gemcache <arguments>` to its end; returns its exit status and standard output.
    static func gemcache(_ arguments: [String], directory: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: GemcacheProcess.executablePath)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ["PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static func totals(_ stats: [String: Any]) -> [String: Int] {
        ["requests", "hits", "misses", "upstream_requests", "saved_requests"].reduce(into: [:]) { $0[$1] = stats[$1] as? Int }
    }

    @Test func twoProcessesShareTheCountersAndTheySurviveARestart() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let store = dir.path + "/store"
                let arguments = ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store]
                let first = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                let second = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                // first: a miss and a hit; second: a hit on the first's entry, a miss and a hit of its own.
                let script: [(GemcacheProcess, String, String)] = [
                    (first, "one", "MISS"), (first, "one ", "HIT"), (second, " one", "HIT"), (second, "two", "MISS"), (second, "two ", "HIT"),
                ]
                for (process, text, expected) in script {
                    #expect(try await StatsEndToEndTests.ask(process.port, text).header("x-gemcache") == expected)
                }
                #expect(recorder.totalRequests == 2)
                let expected = ["requests": 5, "hits": 3, "misses": 2, "upstream_requests": 2, "saved_requests": 3]

                // Each process flushes its counters to the store every second: both see the sums soon.
                for process in [first, second] {
                    var seen: [String: Int] = [:]
                    for _ in 0..<40 where seen != expected {
                        seen = Self.totals(try await StatsEndToEndTests.stats(process.port))
                        // Real time is the subject: real processes flush their counters every second.
                        if seen != expected { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    #expect(seen == expected)
                }
                // Read straight from the store while both proxies run on it.
                let live = try Self.gemcache(["stats", "--data", store, "--json"], directory: dir.path)
                #expect(live.status == 0)
                #expect(Self.totals(try Self.json(live.output)) == expected)

                #expect(await first.stop() == 0)
                #expect(await second.stop() == 0)
                let stopped = try Self.gemcache(["stats", "--data", store, "--json"], directory: dir.path)
                #expect(Self.totals(try Self.json(stopped.output)) == expected)

                let restarted = try await GemcacheProcess(arguments: arguments, directory: dir.path)
                let afterRestart = try await StatsEndToEndTests.stats(restarted.port)
                #expect(Self.totals(afterRestart) == expected)
                #expect(afterRestart["since"] as? String == (try Self.json(stopped.output))["since"] as? String)
                let table = try Self.gemcache(["stats", "--url", "http://127.0.0.1:\(restarted.port)"], directory: dir.path)
                #expect(table.status == 0)
                #expect(table.output.contains("hit ratio"))
                #expect(table.output.contains("60.0 %"))
                #expect(table.output.contains("gemini-2.5-flash"))
                #expect(await restarted.stop() == 0)
                for process in [first, second, restarted] { #expect(!process.log.contains(testKey)) }
            }
        }
    }

    /// Two namespaces and two clients counted apart (slow-path and fast-path hits alike), under names
    /// that hold no credential; a window that holds the run and one that does not, through the
    /// endpoint and `gemcache stats`; a malformed window is a 400 naming its parameter.
    @Test func namespacesClientsAndWindowsOfARun() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, _ in
                let started = Date()
                let proxy = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"],
                    directory: dir.path
                )
                let otherKey = "test-key-second"
                let teamA = ["x-gemcache-namespace": "team-a", "x-goog-api-key": testKey]
                let script: [(String, [String: String], String)] = [
                    ("one", teamA, "MISS"), ("one ", teamA, "HIT"), ("one", teamA, "HIT"),  // the last a byte-identical repeat
                    ("two", ["x-goog-api-key": otherKey], "MISS"), ("two", ["x-goog-api-key": otherKey], "HIT"),
                ]
                for (text, headers, expected) in script {
                    let path = "/v1beta/models/\(StatsEndToEndTests.flash):generateContent"
                    let answer = try await send(port: proxy.port, path: path, body: generateBody(text), headers: headers)
                    #expect(answer.header("x-gemcache") == expected)
                }
                var stats: [String: Any] = [:]
                for _ in 0..<40 {
                    stats = try await StatsEndToEndTests.stats(proxy.port)
                    if stats["requests"] as? Int == 5 { break }
                    try await Task.sleep(for: .milliseconds(100))  // the fast path reports its hits within 200 ms
                }
                let namespaces = try #require(stats["namespaces"] as? [String: [String: Any]])
                #expect(namespaces["team-a"]?["requests"] as? Int == 3 && namespaces["team-a"]?["hits"] as? Int == 2)
                #expect(namespaces[""]?["requests"] as? Int == 2 && namespaces[""]?["misses"] as? Int == 1)
                let clients = try #require(stats["clients"] as? [String: [String: Any]])
                #expect(clients.count == 2)
                #expect(clients.keys.allSatisfy { $0.count == 12 && $0.allSatisfy(\.isHexDigit) })
                #expect(clients.values.map { $0["requests"] as? Int ?? 0 }.sorted() == [2, 3])

                let url = "http://127.0.0.1:\(proxy.port)"
                let formatter = ISO8601DateFormatter()
                let since = formatter.string(from: started)
                let holding = try await send("GET", port: proxy.port, path: "/_gemcache/stats?since=\(since)")
                #expect(holding.status == 200)
                let window = try Self.json(holding.body)
                #expect(window["requests"] as? Int == 5 && window["hits"] as? Int == 3)
                #expect((window["namespaces"] as? [String: Any])?.count == 2 && (window["clients"] as? [String: Any])?.count == 2)
                let before = (formatter.string(from: started - 600), formatter.string(from: started - 300))
                let empty = try await send("GET", port: proxy.port, path: "/_gemcache/stats?since=\(before.0)&until=\(before.1)")
                #expect(try Self.json(empty.body)["requests"] as? Int == 0)

                let malformed = try await send("GET", port: proxy.port, path: "/_gemcache/stats?since=yesterday")
                #expect(malformed.status == 400)
                let error = try #require(try Self.json(malformed.body)["error"] as? [String: Any])
                #expect(error["status"] as? String == "INVALID_ARGUMENT")
                #expect((error["message"] as? String)?.hasPrefix("since: ") == true)

                let command = try Self.gemcache(["stats", "--url", url, "--since", since, "--json"], directory: dir.path)
                #expect(command.status == 0)
                #expect(Self.totals(try Self.json(command.output))["requests"] == 5)
                let table = try Self.gemcache(["stats", "--url", url, "--since", "15m"], directory: dir.path)
                #expect(table.output.contains("team-a") && table.output.contains("(none)") && table.output.contains(" until "))
                let refused = try Self.gemcache(["stats", "--url", url, "--until", "later"], directory: dir.path)
                #expect(refused.status == 1)

                let metrics = try await send("GET", port: proxy.port, path: "/metrics")
                #expect(metrics.body.contains(#"gemcache_namespace_requests_total{namespace="team-a"} 3"#))
                for text in [String(describing: stats), metrics.body] { #expect(!text.contains(testKey) && !text.contains(otherKey)) }
                #expect(await proxy.stop() == 0)
                #expect(!proxy.log.contains(testKey) && !proxy.log.contains(otherKey))
            }
        }
    }

    @Test func statsOfAMissingStoreFailsWithOneLine() async throws {
        try await withTemporaryDirectory { dir in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: GemcacheProcess.executablePath)
            process.arguments = ["stats", "--data", dir.path + "/nothing-here"]
            process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            let pipe = Pipe()
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 1)
            #expect(output == "gemcache: no gemcache store at \(dir.path)/nothing-here\n")
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/nothing-here"))
        }
    }
}

/// The dashboard rendered by a real browser (Debian's headless chromium, installed by `make test`).
@Suite(.timeLimit(.minutes(1)))
struct DashboardBrowserTests {
    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The DOM after the page's script ran (`--dump-dom`, waiting for its requests).
    static func renderedDOM(_ url: String, profile: String) throws -> String {
        let browser = try #require(chromium, "chromium is not installed: run `make deps` (apt-get install chromium)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: browser)
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)",
            "--virtual-time-budget=4000", "--dump-dom", url,
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return output
    }

    /// The text of every element marked `data-stat="name"`, and of every `data-model="m" data-field="f"` as `m/f`.
    static func shownValues(_ dom: String) -> [String: String] {
        var values: [String: String] = [:]
        for match in dom.matches(of: /data-stat="([a-z_]+)"[^>]*>([^<]*)</) { values[String(match.1)] = String(match.2) }
        for match in dom.matches(of: /data-model="([^"]+)" data-field="([a-z_]+)"[^>]*>([^<]*)</) {
            values["\(match.1)/\(match.2)"] = String(match.3)
        }
        for match in dom.matches(of: /data-group="([a-z]+)" data-name="([^"]*)" data-field="([a-z_]+)"[^>]*>([^<]*)</) {
            values["\(match.1):\(match.2)/\(match.3)"] = String(match.4)
        }
        return values
    }

    @Test func theDashboardShowsTheNumbersOfTheStatsEndpoint() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream(.init(latency: .milliseconds(400))) { upstreamPort, _ in
                try await withProxy(StatsEndToEndTests.configuration(upstreamPort: upstreamPort, directory: dir.path)) { port in
                    _ = try await StatsEndToEndTests.script(port)
                    let page = try await send("GET", port: port, path: "/_gemcache/")
                    #expect(page.status == 200)
                    #expect(page.header("content-type") == "text/html; charset=utf-8")
                    // Self-contained: nothing is loaded from anywhere (the one URL is the SVG namespace name).
                    let outside = page.body.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "")
                    #expect(!outside.contains("://") && !outside.contains("src=") && !outside.contains("<link"))
                    #expect(page.body.contains("setInterval(load"))

                    let stats = try await StatsEndToEndTests.stats(port)
                    let dom = try Self.renderedDOM("http://127.0.0.1:\(port)/_gemcache/", profile: dir.path + "/chromium")
                    #expect(dom.contains(#"data-loaded="true""#))
                    let shown = Self.shownValues(dom)
                    func number(_ text: String?) -> Double? {
                        text.flatMap {
                            Double(
                                $0.replacingOccurrences(of: ",", with: "").replacingOccurrences(of: "$", with: "").replacingOccurrences(
                                    of: " %",
                                    with: ""
                                )
                            )
                        }
                    }
                    for field in ["requests", "saved_requests", "saved_tokens", "upstream_requests", "hits", "coalesced", "misses", "entries"] {
                        #expect(number(shown[field]) == (stats[field] as? NSNumber)?.doubleValue, "\(field)")
                    }
                    #expect(shown["hit_ratio"] == String(format: "%.1f %%", (stats["hit_ratio"] as? Double ?? -1) * 100))
                    #expect(shown["saved_usd"] == String(format: "$%.4f", stats["saved_usd"] as? Double ?? -1))
                    #expect(shown["quota_day"] == stats["quota_day"] as? String)
                    let models = try #require(stats["models"] as? [String: [String: Any]])
                    let flash = try #require(models[StatsEndToEndTests.flash])
                    let flashShown = { (field: String) in shown["\(StatsEndToEndTests.flash)/\(field)"] }
                    #expect(flashShown("rpd_used_pct") == String(format: "%.1f %%", flash["rpd_used_pct"] as? Double ?? -1))
                    #expect(flashShown("rpd_without_cache_pct") == String(format: "%.1f %%", flash["rpd_without_cache_pct"] as? Double ?? -1))
                    #expect(number(flashShown("rpd")) == 250)
                    #expect(number(flashShown("upstream_requests_today")) == (flash["upstream_requests_today"] as? NSNumber)?.doubleValue)
                    #expect(number(flashShown("saved_requests_today")) == (flash["saved_requests_today"] as? NSNumber)?.doubleValue)
                    let unlisted = { (field: String) in shown["\(StatsEndToEndTests.unlisted)/\(field)"] }
                    #expect(unlisted("rpd") == "no known limit")
                    #expect(unlisted("rpd_used_pct") == nil)
                    #expect(unlisted("saved_usd") == "no price")
                    // The chart's totals are this minute's hits (with coalesced answers) and misses.
                    #expect(number(shown["history_hits"]) == Double((stats["hits"] as? Int ?? -1) + (stats["coalesced"] as? Int ?? -1)))
                    #expect(number(shown["history_misses"]) == (stats["misses"] as? NSNumber)?.doubleValue)
                    #expect(shown["namespaces:/requests"] == "9")

                    // The last hour, chosen in the address: the window's numbers, per namespace too.
                    let answer = try await StatsEndToEndTests.ask(port, "epsilon", headers: ["x-gemcache-namespace": "team-a"])
                    #expect(answer.header("x-gemcache") == "MISS")
                    let hour = try Self.json(try await send("GET", port: port, path: "/_gemcache/stats?since=1h").body)
                    let windowDOM = try Self.renderedDOM("http://127.0.0.1:\(port)/_gemcache/#since=1h", profile: dir.path + "/chromium")
                    #expect(windowDOM.contains(#"<button data-since="1h" class="active">"#))
                    let windowShown = Self.shownValues(windowDOM)
                    #expect(number(windowShown["requests"]) == 10 && (hour["requests"] as? Int) == 10)
                    #expect(windowShown["namespaces:team-a/requests"] == "1" && windowShown["namespaces:team-a/misses"] == "1")
                    let clients = try #require(hour["clients"] as? [String: [String: Any]])
                    #expect(clients.keys.allSatisfy { windowShown["clients:\($0)/requests"] != nil })
                }
            }
        }
    }
}
