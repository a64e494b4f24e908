import Foundation
import GemcacheTestSupport
import GeminiMock
import Testing

/// Text that is costly to normalize (issue 15, class 10; SPEC §3 `text`, §8 bounded work), tried on
/// the real executable, whose request handlers run on the event loops that also serve every other
/// connection and the fast path.
@Suite(.timeLimit(.minutes(3)))
struct CostlyTextEndToEndTests {
    let generate = "/v1beta/models/gemini-2.5-flash:generateContent"

    /// The issue's text: "a" and 100,000 pairs of combining marks of two classes, which NFC must reorder,
    /// as JSON escapes in a generateContent body of 1.2 MB (Foundation's NFC took 28 s on it, half as
    /// many pairs 7 s). `tag` makes bodies distinct.
    static func pathologicalBody(tag: Int = 0) -> String {
        #"{"contents":[{"role":"user","parts":[{"text":"\#(tag)a"# + String(repeating: #"\u0301\u0316"#, count: 100_000) + #""}]}]}"#
    }

    /// The proxy binary in front of the mock upstream, in passthrough mode: any made-up key is forwarded.
    private func withProcess<R: Sendable>(_ body: @Sendable (_ port: Int, _ recorder: MockUpstreamRecorder) async throws -> R) async throws -> R {
        try await withTemporaryDirectory { directory in
            try await withMockUpstream { upstreamPort, recorder in
                let process = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", directory.path + "/store"],
                    directory: directory.path
                )
                let result = try await body(process.port, recorder)
                #expect(await process.stop() == 0)
                return result
            }
        }
    }

    /// An answer and how long it took.
    struct Timed: Sendable {
        let label: String
        let answer: TestResponse
        let duration: Duration

        init(_ label: String, _ request: () async throws -> TestResponse) async throws {
            let start = ContinuousClock.now
            self.label = label
            answer = try await request()
            duration = ContinuousClock.now - start
        }
    }

    /// The pathological text on `/_gemcache/explain` and on a cached route, with a made-up key, is
    /// answered within 15 s (28 s on explain before, on an idle machine; the bound, generous for a debug build on a busy
    /// machine, tells linear from quadratic and is no speed target), with the standard's NFC: "á", then
    /// the marks of class 220 before those of class 230. On the cached route `only-if-cached` has the
    /// proxy answer itself once the request is keyed: the mock upstream's own handling of such a text
    /// is slow, and is not what is tried here.
    @Test func pathologicalTextIsAnsweredInBoundedTime() async throws {
        try await withProcess { port, recorder in
            let key = "made-up-key"
            let prompt = Self.pathologicalBody()
            let explainInput = #"{"path":"\#(generate)","headers":{"x-goog-api-key":"\#(key)"},"body":\#(prompt)}"#
            let explained = try await Timed("explain") { try await send(port: port, path: "/_gemcache/explain", body: explainInput) }
            #expect(explained.answer.status == 200, "\(explained.answer.body.prefix(300))")
            #expect(explained.duration < .seconds(15), "explain took \(explained.duration)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(explained.answer.body.utf8)) as? [String: Any])
            let canonical = try #require(document["canonical"] as? String)
            let text = "0\u{E1}" + String(repeating: "\u{316}", count: 100_000) + String(repeating: "\u{301}", count: 99_999)
            let isNFC = canonical.utf8.elementsEqual(#"{"contents":[{"parts":[{"text":"\#(text)"}],"role":"user"}]}"#.utf8)
            #expect(isNFC, "canonical form of \(canonical.utf8.count) bytes is not the expected NFC")

            let headers = ["x-goog-api-key": key, "cache-control": "only-if-cached"]
            let generated = try await Timed("generateContent") { try await send(port: port, path: generate, body: prompt, headers: headers) }
            #expect(generated.answer.status == 504, "\(generated.answer.body.prefix(300))")
            #expect(generated.answer.body.contains("DEADLINE_EXCEEDED"))
            #expect(generated.duration < .seconds(15), "generateContent took \(generated.duration)")
            #expect(recorder.totalRequests == 0)
        }
    }

    /// While four heavy requests are being keyed (generateContent, `only-if-cached` as above), a
    /// fast-path hit, a small miss and `/healthz` are each answered in less than half the time the
    /// quickest heavy request takes. With keying on the event loops,
    /// each would wait behind at least one whole heavy request. (Relative to the heavy requests of the
    /// same run, so that it holds on a slow or busy machine.)
    @Test func lightRequestsAreServedWhileHeavyBodiesAreKeyed() async throws {
        try await withProcess { port, _ in
            let key = ["x-goog-api-key": "made-up-key"]
            let small = generateBody("a light prompt")
            #expect(try await send(port: port, path: generate, body: small, headers: key).header("x-gemcache") == "MISS")

            let answers = try await withThrowingTaskGroup(of: Timed.self) { group in
                for tag in 1...4 {
                    group.addTask {
                        let prompt = Self.pathologicalBody(tag: tag)
                        let headers = key.merging(["cache-control": "only-if-cached"]) { $1 }
                        return try await Timed("heavy") { try await send(port: port, path: generate, body: prompt, headers: headers) }
                    }
                }
                // Real time is the subject: long enough for the heavy bodies to arrive (1.2 MB each, on loopback),
                // shorter than keying them.
                try await Task.sleep(for: .milliseconds(300))
                group.addTask { try await Timed("fast-path hit") { try await send(port: port, path: generate, body: small, headers: key) } }
                group.addTask {
                    try await Timed("miss") { try await send(port: port, path: generate, body: generateBody("another light prompt"), headers: key) }
                }
                group.addTask { try await Timed("healthz") { try await send("GET", port: port, path: "/healthz") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let heavy = answers.filter { $0.label == "heavy" }
            let quickestHeavy = try #require(heavy.map(\.duration).min())
            for answer in answers {
                #expect(answer.answer.status == (answer.label == "heavy" ? 504 : 200), "\(answer.label): \(answer.answer.body.prefix(300))")
            }
            for light in answers where light.label != "heavy" {
                #expect(light.duration < quickestHeavy / 2, "\(light.label) took \(light.duration), the quickest heavy request \(quickestHeavy)")
            }
            #expect(answers.first { $0.label == "fast-path hit" }?.answer.header("x-gemcache") == "HIT")
        }
    }
}
