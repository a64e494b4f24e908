import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import InMemoryLogging
import Logging
import Testing

/// Access control (SPEC §8) through a real server, fast path included: no secret leaks; start-up refusals.
/// The rest of access control is tested through the router (GemcacheCoreTests/AccessTests).
@Suite(.timeLimit(.minutes(1)))
struct AccessEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    @Test func managedModeWithoutKeysStopsStartupNamingTheVariable() async throws {
        try await withTemporaryDirectory { dir in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:9", dataDirectory: dir.path)
            configuration.auth.mode = .managed
            await #expect(throws: ConfigurationError.self) {
                try await withProxy(configuration, environment: ["GEMCACHE_CLIENT_TOKENS": "t"]) { _ in }
            }
        }
    }

    @Test func noSecretReachesTheStoreLogsStatsOrMetrics() async throws {
        let secret = "SECRET-gemini-key-ZZ9-plural-Z-alpha"
        let logs = InMemoryLogHandler()
        var logger = Logger(label: "gemcache.test", factory: { _ in logs })
        logger.logLevel = .trace
        try await withProxyBehindMock(logger: logger) { port, _, dir in
            let key = ["x-goog-api-key": secret]
            let generate = "/v1beta/models/gemini-2.5-flash:generateContent"
            _ = try await send(port: port, path: generate, body: generateBody("miss then hit"), headers: key)
            _ = try await send(port: port, path: generate, body: generateBody("miss then hit"), headers: key)
            _ = try await send(port: port, path: generate + "?key=\(secret)", body: generateBody("in the query"))
            _ = try await send(
                port: port,
                path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                body: generateBody("stream"),
                headers: key
            )
            _ = try await send(port: port, path: generate, body: generateBody("error [[fault:500]]"), headers: key)
            _ = try await send(port: port, path: generate, body: generateBody("retry [[fault:once-500]]"), headers: key)
            _ = try await send(port: port, path: generate, body: "not json", headers: key)
            _ = try await send("GET", port: port, path: "/v1beta/cachedContents", headers: key)
            let surfaces = [
                try await send("GET", port: port, path: "/_gemcache/stats").body,
                try await send("GET", port: port, path: "/metrics").body,
                try await send("GET", port: port, path: "/_gemcache/").body,
            ]
            let logged = logs.entries.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n")
            #expect(!logged.isEmpty, "debug logging was on")
            #expect(!logged.contains(secret))
            for surface in surfaces { #expect(!surface.contains(secret)) }
            #expect(dir.allBytes().firstRange(of: Array(secret.utf8)) == nil)
            #expect(dir.allBytes().firstRange(of: Array(secret.prefix(16).utf8)) == nil)
        }
    }
}
