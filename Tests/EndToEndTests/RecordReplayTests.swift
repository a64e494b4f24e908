import Foundation
import GemcacheCore
import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import Testing

/// Record and replay (SPEC §11, issue 20) through the built binary: requests recorded against the mock
/// upstream, exported as fixtures, and served by `gemcache serve --replay FILE` with no upstream and no
/// credential.
@Suite(.timeLimit(.minutes(1)))
struct RecordReplayTests {
    /// One request of each cached kind, as the test sends it.
    struct Call: Sendable {
        let method: String
        let path: String
        let body: String?

        static func post(_ path: String, _ body: String) -> Call { Call(method: "POST", path: path, body: body) }
    }

    static let generate = Call.post(
        "/v1beta/models/gemini-2.5-flash:generateContent",
        #"{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}],"generationConfig":{"temperature":0.7}}"#
    )
    static let calls: [Call] = [
        generate,
        .post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", generateBody("Count to three")),
        .post("/v1beta/models/gemini-2.5-flash:streamGenerateContent", generateBody("Count to four")),
        .post("/v1beta/models/gemini-embedding-001:embedContent", #"{"content":{"parts":[{"text":"embed me"}]}}"#),
        .post("/v1beta/models/gemini-2.5-flash:countTokens", generateBody("how long is this")),
        .post(
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            #"{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}},{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]}}]}"#
        ),
        .post("/v1beta/openai/chat/completions", #"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Hi"}]}"#),
        .post("/v1beta/openai/chat/completions", #"{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#),
        Call(method: "GET", path: "/v1beta/models/gemini-2.5-flash", body: nil),
    ]

    /// Records `calls` in record mode against the mock; returns each answer and the store's folder.
    static func record(in directory: TemporaryDirectory) async throws -> [TestResponse] {
        try await withMockUpstream { upstreamPort, _ in
            var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: directory.path)
            configuration.cache.mode = .record
            return try await withProxy(configuration) { port in
                var answers: [TestResponse] = []
                for call in calls {
                    let answer = try await send(call.method, port: port, path: call.path, body: call.body, headers: ["x-goog-api-key": testKey])
                    #expect(answer.status == 200 && answer.header("x-gemcache") == "MISS", "\(call.path)")
                    answers.append(answer)
                }
                return answers
            }
        }
    }

    static func exportFixtures(_ directory: TemporaryDirectory, to name: String) throws -> [UInt8] {
        let result = try StoreCommandsTests.gemcache(["export", "--fixtures", "--data", directory.path + "/store", name], directory: directory.path)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output == "exported 10 recorded entries\n")
        return Array(FileManager.default.contents(atPath: directory.path + "/" + name) ?? Data())
    }

    /// A JSON body as a value to compare (the fixture file keeps whole JSON answers as JSON).
    static func json(_ body: String) -> NSDictionary? {
        try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? NSDictionary
    }

    @Test func recordedRequestsReplayWithoutUpstreamOrCredential() async throws {
        try await withTemporaryDirectory { directory in
            let recorded = try await Self.record(in: directory)
            let first = try Self.exportFixtures(directory, to: "fixtures.jsonl")
            #expect(try Self.exportFixtures(directory, to: "again.jsonl") == first)
            let lines = String(decoding: first, as: UTF8.self).split(separator: "\n")
            #expect(lines.first == #"{"gemcache_fixtures":1}"#)
            // The whole JSON answer is JSON in the file, the request canonical, the stream as text.
            #expect(lines.contains { $0.contains(#""request":{"body":{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}],"#) })
            #expect(lines.contains { $0.contains(#""body":{"candidates":"#) })
            #expect(lines.contains { $0.contains(#""body_text":"data: "#) })

            // The upstream is gone (port 1 refuses) and no request carries a credential.
            let replay = try await GemcacheProcess(
                arguments: ["--replay", "fixtures.jsonl", "--upstream", "http://127.0.0.1:1", "--data", directory.path + "/unused"],
                directory: directory.path
            )
            for (call, answer) in zip(Self.calls, recorded) {
                let replayed = try await send(call.method, port: replay.port, path: call.path, body: call.body)
                #expect(replayed.status == 200 && replayed.header("x-gemcache") == "HIT", "\(call.path): \(replayed.body)")
                if let whole = Self.json(answer.body) {
                    #expect(Self.json(replayed.body) == whole, "\(call.path)")
                } else {
                    #expect(replayed.body == answer.body, "\(call.path): streams replay byte for byte")
                }
            }
            // Each fixture's request is in the form /_gemcache/explain takes, and explains to its key (but
            // a batch item's, keyed as an item of its batch).
            for line in lines.dropFirst() {
                let fixture = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                guard fixture["endpoint"] as? String != "batchEmbedContents" else { continue }
                let request = try JSONSerialization.data(withJSONObject: try #require(fixture["request"]))
                let explained = try await send(port: replay.port, path: "/_gemcache/explain", body: String(decoding: request, as: UTF8.self))
                #expect(Self.json(explained.body)?["key"] as? String == fixture["key"] as? String, "\(line)")
            }
            // A client's key is accepted too, and changes nothing.
            let withKey = try await send(port: replay.port, path: Self.generate.path, body: Self.generate.body, headers: ["x-goog-api-key": testKey])
            #expect(withKey.header("x-gemcache") == "HIT")
            #expect(!FileManager.default.fileExists(atPath: directory.path + "/unused"))
            #expect(!replay.log.contains(testKey))
            await replay.stop()
        }
    }

    /// A recorded entry keeps its canonical request and never expires, whatever TTL it asks for; a
    /// request with `Cache-Control: no-cache` records its answer again (how a changed test re-records).
    @Test func recordedEntriesNeverExpireAndNoCacheRecordsAgain() async throws {
        try await withProxyBehindMock(configure: { $0.cache.mode = .record }) { port, recorder, directory in
            let headers = ["x-goog-api-key": testKey]
            let first = try await send(
                port: port,
                path: Self.generate.path,
                body: Self.generate.body,
                headers: headers.merging(["x-gemcache-ttl": "1"]) { $1 }
            )
            let again = try await send(
                port: port,
                path: Self.generate.path,
                body: Self.generate.body,
                headers: headers.merging(["cache-control": "no-cache"]) { $1 }
            )
            #expect(first.header("x-gemcache") == "MISS" && again.header("x-gemcache") == "REFRESH")
            #expect(recorder.totalRequests == 2)
            // The store as `gemcache export` sees it (another process: LMDB opens an environment once per process).
            let exported = try StoreCommandsTests.gemcache(["export", "--data", directory.path + "/store", "-"], directory: directory.path)
            let entries = exported.output.split(separator: "\n").dropFirst().compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            #expect(entries.count == 1)
            #expect(entries.first?["key"] as? String == again.header("x-gemcache-key"))
            #expect(entries.first?["expires_at"] as? Int64 == EntryRecord.times.upperBound)
            let request = try #require(entries.first?["request"] as? String)
            #expect(
                request.hasPrefix(#"{"body":{"contents":[{"parts":[{"text":"Why is the sky blue?"}]}],"generationConfig":{"temperature":0.7}},"#),
                "\(request)"
            )
            #expect(request.hasSuffix(#""path":"/v1beta/models/gemini-2.5-flash:generateContent"}"#), "\(request)")
        }
    }

    @Test func aChangedRequestGetsTheNearestRecordingAndWhereItDiffers() async throws {
        try await withTemporaryDirectory { directory in
            let recorded = try await Self.record(in: directory)
            _ = try Self.exportFixtures(directory, to: "fixtures.jsonl")
            let replay = try await GemcacheProcess(
                arguments: ["--replay", "fixtures.jsonl", "--upstream", "http://127.0.0.1:1"],
                directory: directory.path
            )
            let changed = Self.generate.body!.replacingOccurrences(of: "0.7", with: "0.2")
            let miss = try await send(port: replay.port, path: Self.generate.path, body: changed)
            #expect(miss.status == 404)
            let error = try #require(Self.json(miss.body)?["error"] as? [String: Any])
            #expect(error["status"] as? String == "NOT_FOUND")
            let message = try #require(error["message"] as? String)
            #expect(message.hasPrefix("gemcache replay:"))
            #expect(message.contains("generationConfig.temperature: 0.7 recorded, 0.2 asked"), "\(message)")
            #expect(message.contains("(key \(try #require(recorded[0].header("x-gemcache-key"))))"), "\(message)")

            // On the OpenAI surface the envelope is wrapped, as Google wraps it there.
            let chat = try await send(
                port: replay.port,
                path: "/v1beta/openai/chat/completions",
                body: #"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Hello"}]}"#
            )
            #expect(chat.status == 404 && chat.body.hasPrefix("[{\"error\""))
            #expect(chat.body.contains(#"messages[0].content: \"Hi\" recorded, \"Hello\" asked"#), "\(chat.body)")

            // A batch with one item that was not recorded is refused whole.
            let batch = try await send(
                port: replay.port,
                path: "/v1beta/models/gemini-embedding-001:batchEmbedContents",
                body:
                    #"{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]}},{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]},"taskType":"RETRIEVAL_QUERY"}]}"#
            )
            #expect(batch.status == 404 && batch.body.contains(#"taskType: (none) recorded, \"RETRIEVAL_QUERY\" asked"#), "\(batch.body)")

            // Nothing of another model was recorded; routes that would go upstream are not replayed.
            let other = try await send(port: replay.port, path: "/v1beta/models/gemini-2.5-pro:generateContent", body: generateBody("Hi"))
            #expect(other.status == 404 && other.body.contains("no request of gemini-2.5-pro generateContent was recorded"))
            let files = try await send("GET", port: replay.port, path: "/v1beta/files")
            #expect(files.status == 404 && files.body.contains("gemcache replay:"))
            await replay.stop()
        }
    }

    @Test func aFixtureFileWithABadLineIsRefusedNamingTheLine() async throws {
        try await withTemporaryDirectory { directory in
            _ = try await Self.record(in: directory)
            let fixtures = try Self.exportFixtures(directory, to: "fixtures.jsonl")
            let lines = String(decoding: fixtures, as: UTF8.self).split(separator: "\n").map(String.init)
            let hostile = [
                (lines[1].replacingOccurrences(of: #""status":200"#, with: #""status":99"#), "status must be an integer from 200 to 599"),
                ("{\"key\": [", "Invalid JSON payload received. Unexpected end of input at byte 9."),
                ("[1]", "not a JSON object"),
                (lines[1].replacingOccurrences(of: #""headers":["#, with: #""headers":["X: a\u0001b","#), "header line 1"),
                (String(repeating: "[", count: 100_000), "Invalid JSON payload received."),
            ]
            for (line, reason) in hostile {
                let file = directory.path + "/bad.jsonl"
                FileManager.default.createFile(atPath: file, contents: Data(([lines[0], lines[1], line] + lines[2...]).joined(separator: "\n").utf8))
                let result = try StoreCommandsTests.gemcache(["serve", "--port", "0", "--replay", file], directory: directory.path)
                #expect(result.status == 1)
                #expect(result.errors.hasPrefix("gemcache: \(file): fixture line 3: \(reason)"), "\(result.errors)")
            }
            // Sizes are bounded by cache.max_entry_size: the body, and the line, refused unread past what such an entry can take.
            let small = ["GEMCACHE_CACHE_MAX_ENTRY_SIZE": "10"]
            for (line, reason) in [
                (lines[1], "a body of"), (String(repeating: "x", count: 5 << 20), "a line of 5242880 bytes is longer than any entry"),
            ] {
                let file = directory.path + "/big.jsonl"
                FileManager.default.createFile(atPath: file, contents: Data((lines[0] + "\n" + line).utf8))
                let result = try StoreCommandsTests.gemcache(
                    ["serve", "--port", "0", "--replay", file],
                    directory: directory.path,
                    environment: small
                )
                #expect(result.status == 1 && result.errors.hasPrefix("gemcache: \(file): fixture line 2: \(reason)"), "\(result.errors)")
            }
            let notFixtures = try StoreCommandsTests.gemcache(["serve", "--port", "0", "--replay", "/dev/null"], directory: directory.path)
            #expect(notFixtures.status == 1 && notFixtures.errors.contains("fixture line 1: not a gemcache fixture file"))
        }
    }
}
