import Foundation
import GemcacheCore
import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import HummingbirdWSClient
import NIOCore
import NIOWebSocket
import Testing

/// `upstream.proxy` and the environment's proxy variables (SPEC §1): the proxy reaches the upstream
/// through an HTTP CONNECT proxy on loopback, for REST calls and Live sessions alike.
@Suite(.timeLimit(.minutes(1)))
struct EgressProxyEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    /// The mock, and in front of it the proxy with `configure`'s settings and `environment`.
    private func withStack(
        environment: [String: String] = [:],
        configure: @escaping @Sendable (inout ProxyConfiguration) -> Void,
        _ body: @Sendable (_ port: Int, _ upstreamPort: Int, _ recorder: MockUpstreamRecorder) async throws -> Void
    ) async throws {
        try await withTemporaryDirectory { directory in
            try await withMockUpstream { upstreamPort, recorder in
                var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: directory.path)
                configure(&configuration)
                try await withProxy(configuration, environment: environment) { port in try await body(port, upstreamPort, recorder) }
            }
        }
    }

    @Test func restCallsAndLiveSessionsGoThroughTheConfiguredProxyWithCredentialsFromTheEnvironment() async throws {
        let authorization = "Basic " + Data("egress-user:s3cret pass".utf8).base64EncodedString()
        try await ConnectProxy.run(requiredAuthorization: authorization) { egress in
            try await withStack(
                environment: ["GEMCACHE_PROXY_CREDENTIALS": "egress-user:s3cret pass"],
                configure: { $0.upstream.proxy = "http://127.0.0.1:\(egress.port)" }
            ) { port, upstreamPort, recorder in
                let miss = try await send(
                    port: port,
                    path: path,
                    body: generateBody("through the egress proxy"),
                    headers: ["x-goog-api-key": testKey]
                )
                #expect(miss.status == 200 && miss.header("x-gemcache") == "MISS")
                let passed = try await send("GET", port: port, path: "/v1beta/cachedContents", headers: ["x-goog-api-key": testKey])
                #expect(passed.header("x-gemcache") == "PASS")
                let closed = try await LiveEndToEndTests.setUp("ws://127.0.0.1:\(port)\(LiveEndToEndTests.livePath)?key=\(testKey)")
                #expect(closed?.closeCode == .normalClosure)
                #expect(recorder.requests(path: LiveEndToEndTests.livePath) == 1)
                let tunnels = egress.tunnels
                #expect(tunnels.count >= 2, "the REST client's pooled connection and the Live session's")
                #expect(tunnels.allSatisfy { $0 == .init(target: "127.0.0.1:\(upstreamPort)", authorization: authorization) })
            }
        }
    }

    @Test func theEnvironmentsProxyIsUsedUnlessNoProxyNamesTheUpstream() async throws {
        try await ConnectProxy.run { egress in
            try await withStack(environment: ["http_proxy": "http://127.0.0.1:\(egress.port)"], configure: { _ in }) { port, upstreamPort, _ in
                let miss = try await send(port: port, path: path, body: generateBody("via http_proxy"), headers: ["x-goog-api-key": testKey])
                #expect(miss.status == 200)
                #expect(egress.tunnels.map(\.target) == ["127.0.0.1:\(upstreamPort)"])
            }
            for noProxy in ["127.0.0.1", "*", "localhost, 127.0.0.1:443"] {
                let before = egress.tunnels.count
                try await withStack(
                    environment: ["http_proxy": "http://127.0.0.1:\(egress.port)", "NO_PROXY": noProxy],
                    configure: { _ in }
                ) { port, _, _ in
                    let miss = try await send(port: port, path: path, body: generateBody("direct \(noProxy)"), headers: ["x-goog-api-key": testKey])
                    #expect(miss.status == 200)
                }
                #expect(egress.tunnels.count == before, "NO_PROXY=\(noProxy)")
            }
        }
    }

    @Test func aProxyThatRefusesTheTunnelIsABadGatewayNotAHang() async throws {
        try await ConnectProxy.run(requiredAuthorization: "Basic bm9ib2R5Om5vcGU=") { egress in
            try await withStack(configure: { $0.upstream.proxy = "http://127.0.0.1:\(egress.port)" }) { port, _, recorder in
                let answer = try await send(port: port, path: path, body: generateBody("no credentials"), headers: ["x-goog-api-key": testKey])
                #expect(answer.status == 502)
                #expect(answer.body.contains("\"status\": \"UNAVAILABLE\"") || answer.body.contains("\"status\":\"UNAVAILABLE\""))
                #expect(recorder.totalRequests == 0)
            }
        }
    }

    @Test func badProxyValuesStopStartUpNamingTheSetting() async throws {
        let cases: [(setting: String?, environment: [String: String], named: String)] = [
            ("socks5://127.0.0.1:1080", [:], "upstream.proxy"),
            ("http://user:hunter2@127.0.0.1:3128", [:], "upstream.proxy"),
            ("http://", [:], "upstream.proxy"),
            ("http://127.0.0.1:3128/path", [:], "upstream.proxy"),
            (nil, ["HTTPS_PROXY": "ftp://proxy.example:21"], "upstream.proxy (HTTPS_PROXY)"),
            ("http://127.0.0.1:3128", ["GEMCACHE_PROXY_CREDENTIALS": "no-colon"], "upstream.proxy"),
        ]
        for (setting, environment, named) in cases {
            do {
                var configuration = try await ProxyConfiguration.load(
                    filePath: nil,
                    environment: environment,
                    overrides: setting.map { ["upstream.proxy": $0] } ?? [:]
                )
                configuration.store.path = NSTemporaryDirectory() + "/gemcache-egress-\(UUID())"
                _ = try await buildApplication(configuration: configuration, environment: environment, logger: quietLogger)
                Issue.record("started with \(setting ?? "nil") \(environment)")
            } catch let error as ConfigurationError {
                #expect(error.key.hasPrefix(named), "\(setting ?? "") \(environment): \(error)")
                #expect(!error.description.contains("hunter2"))
            }
        }
    }
}
