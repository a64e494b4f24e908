import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// What clients send now (issue 16): keys of the newer `AQ.` form next to `AIza` keys, and Gemini 3's
/// request fields and `thoughtSignature` parts.
@Suite(.timeLimit(.minutes(1)))
struct KeyFormsAndGemini3EndToEndTests {
    let generate = "/v1beta/models/gemini-2.5-flash:generateContent"

    /// The real binary, logging everything (`LOG_LEVEL=trace`): a key of either form is one credential
    /// in every place it can come (header, `?key=`, Bearer), has its own partition, reaches the upstream
    /// as sent, and is written nowhere: not the store, the log, the stats or the metrics.
    @Test(arguments: [classicFormKey, newerFormKey])
    func aKeyOfEitherFormIsOneCredentialAndIsNeverWrittenDown(credential: String) async throws {
        let other = String(credential.dropLast()) + "Z"
        try await withTemporaryDirectory { directory in
            try await withMockUpstream(.init(validKeys: [credential, other])) { upstreamPort, recorder in
                let process = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", directory.path + "/store"],
                    directory: directory.path,
                    environment: ["LOG_LEVEL": "trace"]
                )
                let body = generateBody("which key am I")
                func ask(_ path: String, _ headers: [String: String]) async throws -> TestResponse {
                    try await send(port: process.port, path: path, body: body, headers: headers)
                }
                let miss = try await ask(generate, ["x-goog-api-key": credential])
                #expect(recorder.lastHeaders["x-goog-api-key"] == credential, "forwarded as sent")
                let repeated = try await ask(generate, ["x-goog-api-key": credential])
                let query = try await ask(generate + "?key=" + credential, [:])
                let bearer = try await ask(generate, ["authorization": "Bearer " + credential])
                let otherKey = try await ask(generate, ["x-goog-api-key": other])
                let madeUp = try await ask(generate, ["x-goog-api-key": String(credential.dropLast()) + "Q"])
                #expect(miss.status == 200 && miss.header("x-gemcache") == "MISS")
                for hit in [repeated, query, bearer] {
                    #expect(hit.header("x-gemcache") == "HIT" && hit.body == miss.body)
                }
                #expect(otherKey.header("x-gemcache") == "MISS", "another key has its own partition")
                #expect(madeUp.status == 400 && madeUp.body.contains("API key not valid"))
                #expect(recorder.totalRequests == 3)

                let stats = try await send("GET", port: process.port, path: "/_gemcache/stats")
                let metrics = try await send("GET", port: process.port, path: "/metrics")
                #expect(await process.stop() == 0)
                let written =
                    [stats.body, metrics.body, process.log, String(decoding: directory.allBytes(), as: UTF8.self)]
                    + [miss, repeated, query, bearer, otherKey, madeUp].flatMap { $0.headers.values }
                for text in written {
                    #expect(!text.contains(credential) && !text.contains(String(credential.prefix(12))))
                    #expect(!text.contains(other))
                }
                #expect(process.log.contains("listen.port"), "the log was read")
            }
        }
    }

    @Test func managedModeSendsANewerFormUpstreamKeyAndShowsOnlyItsFingerprint() async throws {
        try await withProxyBehindMock(
            .init(validKeys: [newerFormKey]),
            environment: ["GEMINI_API_KEY": newerFormKey, "GEMCACHE_CLIENT_TOKENS": "team-token"],
            configure: { $0.auth.mode = .managed }
        ) { port, recorder, _ in
            let answer = try await send(port: port, path: generate, body: generateBody("managed"), headers: ["x-goog-api-key": "team-token"])
            #expect(answer.status == 200 && answer.header("x-gemcache") == "MISS")
            #expect(recorder.lastHeaders["x-goog-api-key"] == newerFormKey)
            let stats = try await statsDocument(port: port) { ($0["keys"] as? [String: Any])?.isEmpty == false }
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
        try await withProxyBehindMock { port, recorder, _ in
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

            let miss = try await send(port: port, path: path, body: camel, headers: key)
            #expect(miss.status == 200 && miss.header("x-gemcache") == "MISS")
            #expect(miss.body.contains("\"thoughtSignature\""))
            for variant in [camel, snake] {
                let hit = try await send(port: port, path: path, body: variant, headers: key)
                #expect(hit.header("x-gemcache") == "HIT")
                #expect(hit.header("x-gemcache-key") == miss.header("x-gemcache-key"))
                #expect(hit.body == miss.body)
            }
            let renamed = try await send(port: port, path: path, body: userKeyRenamed, headers: key)
            #expect(renamed.header("x-gemcache") == "MISS", "a schema's own keys are never rewritten")
            #expect(recorder.totalRequests == 2)
        }
    }
}
