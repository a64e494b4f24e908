import Foundation
import GemcacheCore
import GemcacheTestSupport
import GeminiMock
import Testing

/// What clients send now (issue 16), through the real binary: keys of the newer `AQ.` form next to
/// `AIza` keys. Managed mode and Gemini 3's fields are tested through the router (KeyFormsAndGemini3Tests).
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
}
