import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// What clients send now (issue 16), through the router: managed mode with a newer-form upstream key,
/// and Gemini 3's request fields and `thoughtSignature` parts. Keys of either form through the real
/// binary: KeyFormsAndGemini3EndToEndTests.
@Suite(.timeLimit(.minutes(1)))
struct KeyFormsAndGemini3Tests {
    let generate = "/v1beta/models/gemini-2.5-flash:generateContent"

    @Test func managedModeSendsANewerFormUpstreamKeyAndShowsOnlyItsFingerprint() async throws {
        try await withInProcessProxyBehindMock(
            .init(validKeys: [newerFormKey]),
            environment: ["GEMINI_API_KEY": newerFormKey, "GEMCACHE_CLIENT_TOKENS": "team-token"],
            configure: { $0.auth.mode = .managed }
        ) { proxy, recorder, _ in
            let answer = try await proxy.send(path: generate, body: generateBody("managed"), headers: ["x-goog-api-key": "team-token"])
            #expect(answer.status == 200 && answer.header("x-gemcache") == "MISS")
            #expect(recorder.lastHeaders["x-goog-api-key"] == newerFormKey)
            let stats = try await proxy.statsDocument()
            let keys = try #require(stats["keys"] as? [String: [String: Int]])
            #expect(keys.count == 1 && keys.first?.key.hasPrefix("sha256:") == true && keys.first?.value["upstream_requests"] == 1)
            #expect(!String(decoding: try JSONSerialization.data(withJSONObject: stats), as: UTF8.self).contains(newerFormKey.prefix(12)))
        }
    }

    /// Gemini 3 fields enter the key like any other (snake_case spellings of the API's names are the
    /// same request; the keys of a `responseJsonSchema` are the user's, never renamed), and answers
    /// carrying `thoughtSignature` parts replay byte for byte, streams included.
    @Test(arguments: ["generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent"])
    func gemini3FieldsAndThoughtSignaturesReplayByteForByte(operation: String) async throws {
        try await withInProcessProxyBehindMock { proxy, recorder, _ in
            let path = "/v1beta/models/gemini-3-flash-preview:\(operation)"
            let key = ["x-goog-api-key": newerFormKey]
            let schema = #"{"type":"object","properties":{"first_name":{"type":"string"},"lastName":{"type":"string"}},"required":["first_name"]}"#
            func body(_ config: String) -> String {
                #"{"contents":[{"role":"user","parts":[{"text":"Who wrote it?"}]}],\#(config)}"#
            }
            let camel = body(
                #""generationConfig":{"thinkingConfig":{"thinkingLevel":"high"},"mediaResolution":"MEDIA_RESOLUTION_HIGH","responseMimeType":"application/json","responseJsonSchema":\#(schema)}"#
            )
            let snake = body(
                #""generation_config":{"thinking_config":{"thinking_level":"high"},"media_resolution":"MEDIA_RESOLUTION_HIGH","response_mime_type":"application/json","response_json_schema":\#(schema)}"#
            )
            let userKeyRenamed = camel.replacingOccurrences(of: "first_name", with: "firstName")

            let miss = try await proxy.send(path: path, body: camel, headers: key)
            #expect(miss.status == 200 && miss.header("x-gemcache") == "MISS")
            #expect(miss.body.contains("\"thoughtSignature\""))
            for variant in [camel, snake] {
                let hit = try await proxy.send(path: path, body: variant, headers: key)
                #expect(hit.header("x-gemcache") == "HIT")
                #expect(hit.header("x-gemcache-key") == miss.header("x-gemcache-key"))
                #expect(hit.body == miss.body)
            }
            let renamed = try await proxy.send(path: path, body: userKeyRenamed, headers: key)
            #expect(renamed.header("x-gemcache") == "MISS", "a schema's own keys are never rewritten")
            #expect(recorder.totalRequests == 2)
        }
    }
}
