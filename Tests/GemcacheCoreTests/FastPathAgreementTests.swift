import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import NIOCore
import NIOEmbedded
import Testing

@testable import GemcacheCore

/// The fast path and the slow path decide the same key for the same bytes: every request below goes
/// through the slow path (Hummingbird's router, the real key, an in-process mock upstream), then its
/// bytes go to ``FastPathHandler`` over the same store, which must answer it with the key and body the
/// slow path gave, for every kind of hit and every credential form: first a variant whose bytes it has
/// not seen (keyed from its parts), then the bytes the slow path saw (through their alias).
@Suite(.timeLimit(.minutes(1)))
struct FastPathAgreementTests {
    struct Sent: CustomTestStringConvertible, Sendable {
        let method: String
        let target: String
        let headers: [String: String]
        let body: String?

        var testDescription: String { "\(method) \(target) \(headers.keys.sorted())" }

        /// An equivalent request in other bytes: JSON whitespace after the body's first brace.
        var variant: Sent? { body.map { Sent(method: method, target: target, headers: headers, body: "{ \n" + $0.dropFirst()) } }

        /// The request as HTTP/1.1 bytes, as a client sends it.
        var bytes: String {
            var text = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            for (name, value) in headers.sorted(by: { $0.key < $1.key }) { text += "\(name): \(value)\r\n" }
            guard let body else { return text + "\r\n" }
            return text + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
    }

    static let generate = #"{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}]}"#
    static let header = ["x-goog-api-key": testKey]
    static let bearer = ["Authorization": "Bearer \(testKey)"]
    static let model = "/v1beta/models/gemini-2.5-flash"

    static let requests: [Sent] = [
        Sent(method: "POST", target: "\(model):generateContent", headers: header, body: generate),
        Sent(method: "POST", target: "\(model):generateContent?key=\(testKey)", headers: [:], body: generate),
        Sent(method: "POST", target: "/v1/models/gemini-2.5-flash:generateContent?alt=json", headers: bearer, body: generate),
        Sent(method: "POST", target: "\(model):generateContent", headers: header.merging(["X-Gemcache-Namespace": "team-a"]) { $1 }, body: generate),
        Sent(method: "POST", target: "\(model):streamGenerateContent?alt=sse", headers: header, body: generate),
        Sent(method: "POST", target: "\(model):streamGenerateContent?key=\(testKey)", headers: [:], body: generate),
        Sent(method: "POST", target: "\(model):countTokens", headers: header, body: generate),
        Sent(
            method: "POST",
            target: "/v1beta/models/gemini-embedding-001:embedContent",
            headers: header,
            body: #"{"content":{"parts":[{"text":"sky"}]}}"#
        ),
        Sent(method: "GET", target: "/v1beta/models?pageSize=5", headers: header, body: nil),
        Sent(method: "GET", target: "\(model)?key=\(testKey)", headers: [:], body: nil),
        Sent(
            method: "POST",
            target: "/v1beta/openai/chat/completions",
            headers: bearer,
            body: #"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Why is the sky blue?"}]}"#
        ),
        Sent(
            method: "POST",
            target: "/v1beta/openai/chat/completions",
            headers: bearer,
            body: #"{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"Why is the sky blue?"}]}"#
        ),
        Sent(
            method: "POST",
            target: "/v1beta/openai/embeddings",
            headers: bearer,
            body: #"{"model":"gemini-embedding-001","input":"sky"}"#
        ),
    ]

    @Test func theFastPathAnswersWhatTheSlowPathStoredWithTheSameKeyAndBytes() async throws {
        try await withTemporaryDirectory { directory in
            let clock = ManualClock()
            var configuration = ProxyConfiguration.testing(upstreamURL: InProcessUpstream.url, dataDirectory: directory.path)
            configuration.cache.scope = .perKey
            let upstream = InProcessUpstream(mock: .init(), recorder: MockUpstreamRecorder())
            let slow = try await withInProcessProxy(configuration, upstream: upstream, clock: clock) { proxy in
                var answers: [TestResponse] = []
                for request in Self.requests {
                    answers.append(try await proxy.send(request.method, path: request.target, body: request.body, headers: request.headers))
                }
                await GeminiProxy.aliasWritesLanded()
                return answers
            }

            let store = try await CacheStore.open(configuration: configuration.store, scopeSalt: nil, logger: quietLogger, now: clock.now)
            let fastPath = FastPath.over(store, configuration: configuration, now: clock.now)
            let channel = EmbeddedChannel(handler: FastPathHandler(fastPath: fastPath))
            var answered = 0
            for (request, slowAnswer) in zip(Self.requests, slow) {
                #expect(slowAnswer.status == 200, "\(request.testDescription): \(slowAnswer.body)")
                #expect(["MISS", "HIT"].contains(slowAnswer.header("x-gemcache")))
                for sent in [request.variant, request].compactMap({ $0 }) {
                    try channel.writeInbound(ByteBuffer(string: sent.bytes))
                    let passed: ByteBuffer? = try channel.readInbound()
                    #expect(passed == nil, "the fast path passed on \(sent.testDescription)")
                    let answer = try #require(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) })
                    let parts = answer.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                    try #require(parts.count == 2)
                    let (head, body) = (parts[0], parts[1])
                    #expect(head.contains("\r\nX-Gemcache: HIT\r\n"))
                    #expect(head.contains("\r\nX-Gemcache-Key: \(slowAnswer.header("x-gemcache-key") ?? "none")\r\n"), "\(sent.testDescription)")
                    #expect(head.contains("\r\nContent-Type: \(slowAnswer.header("content-type") ?? "none")\r\n"))
                    #expect(body == slowAnswer.body, "\(sent.testDescription)")
                    answered += 1
                }
            }
            #expect(fastPath.hits == answered)
            #expect(answered == Self.requests.count + Self.requests.filter { $0.body != nil }.count)
            _ = try? channel.finish()
            await store.close()
        }
    }
}
