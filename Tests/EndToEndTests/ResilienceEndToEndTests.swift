import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Timeouts and unreachable upstreams (SPEC §6) over real connections (AsyncHTTPClient's deadline, a
/// refused port); retries are tested through the router (`GemcacheCoreTests/ProxyTests`).
@Suite(.timeLimit(.minutes(1)))
struct ResilienceEndToEndTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]

    private func withStack<R: Sendable>(
        configure: @Sendable (inout ProxyConfiguration) -> Void = { _ in },
        _ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder) async throws -> R
    ) async throws -> R {
        try await withProxyBehindMock(configure: configure) { port, recorder, _ in try await body(port, recorder) }
    }

    @Test func aSlowUpstreamGetsA504InGooglesEnvelope() async throws {
        try await withStack(configure: {
            $0.upstream.timeout = .milliseconds(300)
            $0.upstream.retry.attempts = 1
        }) { port, _ in
            let answer = try await send(port: port, path: path, body: generateBody("take your time [[fault:slow:3000]]"), headers: key)
            #expect(answer.status == 504)
            #expect(answer.body.contains("\"status\":\"DEADLINE_EXCEEDED\""))
        }
    }

    @Test func anUnreachableUpstreamGetsA502Promptly() async throws {
        try await withTemporaryDirectory { dir in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:9", dataDirectory: dir.path)
            configuration.upstream.retry.budget = .seconds(1)
            try await withProxy(configuration) { port in
                let started = ContinuousClock.now
                let answer = try await send(port: port, path: path, body: generateBody("anyone there?"), headers: key)
                #expect(answer.status == 502)
                #expect(answer.body.contains("\"status\":\"UNAVAILABLE\""))
                #expect(ContinuousClock.now - started < .seconds(15), "promptly: not the 20 s request timeout")
            }
        }
    }
}
