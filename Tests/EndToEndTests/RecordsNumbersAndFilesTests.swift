import Foundation
import GemcacheCore
import GemcacheKey
import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import LMDBKit
import Testing

/// Issue #15, classes 2 (stored records), 11 (token counts), 12 (edited exports), 13 (durations) and 14
/// (file modes), tried on the built binary: what an attacker or a damaged disk puts in a record, an
/// export line, an upstream answer, a setting or a command line never stops the process, never splits
/// an answer, and files holding answers stay private.
@Suite(.timeLimit(.minutes(3)))
struct RecordsNumbersAndFilesTests {
    static let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    /// Runs `body` with `gemcache serve <arguments>`, then stops the process and expects a clean exit
    /// (nothing it was sent stopped it); when `body` throws, kills it, so that no proxy outlives a test.
    static func serving(
        _ arguments: [String],
        directory: String,
        environment: [String: String] = [:],
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (GemcacheProcess) async throws -> Void
    ) async throws {
        let proxy = try await GemcacheProcess(arguments: arguments, directory: directory, environment: environment)
        do {
            try await body(proxy)
        } catch {
            await proxy.stop(signal: SIGKILL)
            throw error
        }
        #expect(await proxy.stop() == 0, "the proxy exits cleanly", sourceLocation: sourceLocation)
    }

    /// A generateContent request for `text` as raw bytes (byte-identical each time, so that a repeat can
    /// take the fast path).
    static func rawRequest(_ text: String) -> String {
        let body = generateBody(text)
        return "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nx-goog-api-key: \(testKey)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// The answers a connection received, cut by their `Content-Length`; nil when bytes are left over
    /// that are not a whole answer (a split or smuggled response).
    static func answers(in text: String) -> [(head: String, body: String)]? {
        var rest = Substring(text)
        var answers: [(String, String)] = []
        while !rest.isEmpty {
            guard rest.hasPrefix("HTTP/1.1 "), let end = rest.range(of: "\r\n\r\n"),
                let length = rest[..<end.lowerBound].firstMatch(of: /(?i)\r\ncontent-length: *(\d+)/).flatMap({ Int($0.1) }),
                rest.utf8.distance(from: end.upperBound, to: rest.endIndex) >= length
            else { return nil }
            let bodyEnd = rest.utf8.index(end.upperBound, offsetBy: length)
            answers.append((String(rest[..<end.lowerBound]), String(rest[end.upperBound..<bodyEnd])))
            rest = rest[bodyEnd...]
        }
        return answers
    }

    /// Sends the request for `text` and, pipelined behind it, a `GET /healthz` that closes the
    /// connection; returns the `X-Gemcache` of the first answer after checking that the connection
    /// carried exactly two whole answers and no header the test planted.
    static func askRaw(_ text: String, port: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws -> String? {
        let connection = try RawConnection(port: port)
        connection.send(rawRequest(text) + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        let (received, closed) = await connection.readToEnd(timeout: .seconds(20))
        #expect(closed, "\(text): the connection ends after the second answer", sourceLocation: sourceLocation)
        let answers = try #require(Self.answers(in: received), "\(text): only whole answers on the wire: \(received)", sourceLocation: sourceLocation)
        #expect(answers.count == 2, "\(text): one answer per request", sourceLocation: sourceLocation)
        #expect(!received.lowercased().contains("set-cookie") && !received.contains("planted"), "\(text)", sourceLocation: sourceLocation)
        return answers.first?.head.firstMatch(of: /(?i)\r\nx-gemcache: *([A-Z]+)/).map { String($0.1) }
    }

    /// Asks each prompt once through a proxy on `store` (a miss that stores the answer and the raw key
    /// that leads to it) and returns each entry's key.
    static func storeAnswers(_ prompts: [String], store: String, upstreamPort: Int, directory: String) async throws -> [String: String] {
        var keys: [String: String] = [:]
        try await serving(["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store], directory: directory) { proxy in
            for prompt in prompts {
                let answer = try await send(port: proxy.port, path: path, body: generateBody(prompt), headers: ["x-goog-api-key": testKey])
                #expect(answer.header("x-gemcache") == "MISS")
                keys[prompt] = try #require(answer.header("x-gemcache-key"))
            }
            #expect(try await askRaw(prompts[0], port: proxy.port) == "HIT", "the raw request finds what the proxy stored")
        }
        return keys
    }

    // MARK: - Stored records (classes 2 and 12)

    /// Records damaged in the store behind the proxy's back (an older build, a bad disk, another writer):
    /// each is a miss on the fast path and the slow path, never a trap or a split answer, and the miss
    /// replaces it with a good record.
    @Test func damagedRecordsAreMissesNeverTrapsOrSplitAnswers() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let store = dir.path + "/store"
                let damages: [(String, @Sendable (inout CacheEntry) -> Void)] = [
                    ("split", { $0.headerBlock += Array("x: y\r\n\r\nHTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 7\r\n\r\nplanted".utf8) }),
                    ("cookie", { $0.headerBlock += Array("x: y\r\nSet-Cookie: a=b\r\n".utf8) }),
                    ("length", { $0.headerBlock += Array("Content-Length: 0\r\n".utf8) }),
                    ("ancient", { $0.storedAt = .min }),
                    ("status", { $0.status = 1000 }),
                    ("backwards", { $0.expiresAt = $0.storedAt - 1 }),
                ]
                let keys = try await Self.storeAnswers(damages.map(\.0), store: store, upstreamPort: upstreamPort, directory: dir.path)

                var settings = ProxyConfiguration().store
                settings.path = store
                let cache = try await CacheStore.open(configuration: settings, scopeSalt: nil, logger: quietLogger)
                for (name, damage) in damages {
                    let key = try #require(CacheKey(hex: keys[name]!))
                    var entry = try #require(try cache.lookup(key))
                    damage(&entry)
                    #expect(await cache.store(entry, for: key), "written as is: the store's write path trusts its callers")
                    #expect(try cache.lookup(key) == nil, "\(name): the store's read refuses it")
                }
                await cache.close()

                try await Self.serving(["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store], directory: dir.path) { proxy in
                    for (name, _) in damages {
                        let answer = try await Self.askRaw(name, port: proxy.port)
                        #expect(answer == "MISS", "\(name)")
                    }
                    for (name, _) in damages {
                        let answer = try await Self.askRaw(name, port: proxy.port)
                        #expect(answer == "HIT", "\(name): the miss stored a good record")
                    }
                    #expect(recorder.totalRequests == 2 * damages.count)
                }
            }
        }
    }

    /// An export edited to carry a response split (`x: y\r\n…` in the headers), a stored_at of -2^63, a
    /// status of 1000, a Set-Cookie line and a body over `cache.max_entry_size`: `gemcache import` names
    /// each line it refuses and imports the rest, and a proxy on the store never serves any of them.
    @Test func editedExportLinesAreRefusedByLineAndNeverServed() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let store = dir.path + "/store"
                let export = dir.path + "/export.jsonl"
                let edited = dir.path + "/edited.jsonl"
                let prompts = ["split", "cookie", "ancient", "status", "big", "good"]
                let keys = try await Self.storeAnswers(prompts, store: store, upstreamPort: upstreamPort, directory: dir.path)
                #expect(try StoreCommandsTests.gemcache(["export", "--data", store, export], directory: dir.path).status == 0)

                let edits: [String: (String, (inout [String: Any]) -> Void)] = [
                    "split": (
                        "header line 2 is not a \"name: value\" line",
                        { $0["headers"] = "x: y\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nplanted" }
                    ),
                    "cookie": ("header line 2 names a header the proxy never stores", { $0["headers"] = "x: y\r\nSet-Cookie: a=b" }),
                    "ancient": ("stored_at -9223372036854775808 and expires_at", { $0["stored_at"] = Int64.min }),
                    "status": ("status 1000 is not one a stored answer is replayed with", { $0["status"] = 1000 }),
                    "big": ("a body of 3000 bytes is over cache.max_entry_size (2048 bytes)", { $0["body"] = String(repeating: "a", count: 3000) }),
                ]
                var lines = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n").map(String.init)
                var expected: [Int: String] = [:]
                for (prompt, (reason, change)) in edits {
                    let index = try #require(lines.firstIndex { $0.contains(keys[prompt]!) })
                    var object = try #require(try JSONSerialization.jsonObject(with: Data(lines[index].utf8)) as? [String: Any])
                    change(&object)
                    lines[index] = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
                    expected[index + 1] = reason
                }
                try lines.joined(separator: "\n").write(toFile: edited, atomically: true, encoding: .utf8)

                #expect(try StoreCommandsTests.gemcache(["purge", "--data", store, "--all"], directory: dir.path).output == "deleted 6 entries\n")
                let imported = try StoreCommandsTests.gemcache(
                    ["import", "--data", store, edited],
                    directory: dir.path,
                    environment: ["GEMCACHE_CACHE_MAX_ENTRY_SIZE": "2KiB"]
                )
                #expect(imported.status == 1, "some lines were refused")
                #expect(imported.output.hasPrefix("imported 1 entries into \(store); refused 5 lines (named above)\n"))
                let refusals = imported.errors.split(separator: "\n").map(String.init)
                #expect(refusals.count == 5)
                for (line, reason) in expected {
                    #expect(refusals.contains { $0.hasPrefix("gemcache: line \(line) refused: \(reason)") }, "line \(line): \(refusals)")
                }

                try await Self.serving(["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store], directory: dir.path) { proxy in
                    let good = try await Self.askRaw("good", port: proxy.port)
                    #expect(good == "HIT")
                    for prompt in edits.keys.sorted() {
                        let answer = try await Self.askRaw(prompt, port: proxy.port)
                        #expect(answer == "MISS", "\(prompt) was never imported")
                    }
                    #expect(recorder.totalRequests == prompts.count + edits.count)
                }
            }
        }
    }

    // MARK: - Token counts (class 11)

    /// Puts raw counter values into the store as an older build could have left them.
    static func poison(_ store: String, _ counters: [(String, Int64)]) async throws {
        let environment = try LMDBEnvironment(path: store, mapSize: 4 << 30)
        let database = try environment.openDatabase("counters", create: false)
        try await environment.write { txn in
            for (name, value) in counters {
                try txn.put(
                    database,
                    key: Array(name.utf8),
                    value: (0..<8).reversed().map { UInt8(truncatingIfNeeded: UInt64(bitPattern: value) >> (UInt64($0) * 8)) }
                )
            }
        }
        environment.close()
    }

    /// An upstream reporting 2^63-1 tokens: the counts are clamped at parse (to 2^32-1), the ledger's
    /// sums saturate, and stats, metrics, a restart and `gemcache stats` all work, also after counters
    /// past Int64 (and wrapped below zero) were left in the store by an older build.
    @Test func anUpstreamReportingTwoToTheSixtyThreeTokensStopsNothing() async throws {
        let upstream = try FixedAnswerUpstream(
            body: #"{"candidates":[{"content":{"parts":[{"text":"So many tokens."}],"role":"model"},"finishReason":"STOP","index":0}],"#
                + #""usageMetadata":{"promptTokenCount":9223372036854775807,"candidatesTokenCount":9223372036854775807,"totalTokenCount":9223372036854775807}}"#
        )
        defer { upstream.stop() }
        try await withTemporaryDirectory { dir in
            let store = dir.path + "/store"
            let arguments = ["--upstream", "http://127.0.0.1:\(upstream.port)", "--data", store]
            let most = Int64(UInt32.max)
            func ask(_ port: Int, _ text: String) async throws -> String? {
                try await send(port: port, path: Self.path, body: generateBody(text), headers: ["x-goog-api-key": testKey]).header("x-gemcache")
            }

            try await Self.serving(arguments, directory: dir.path) { proxy in
                #expect(try await ask(proxy.port, "count me") == "MISS")
                #expect(try await ask(proxy.port, "count me") == "HIT")
                #expect(try await ask(proxy.port, "count me") == "HIT")
                let stats = try await statsDocument(port: proxy.port) { $0["hits"] as? Int == 2 }
                #expect(stats["saved_tokens"] as? Int == Int(2 * most))
                let flash = try #require((stats["models"] as? [String: Any])?["gemini-2.5-flash"] as? [String: Any])
                #expect(flash["upstream_tokens"] as? Int == Int(most))
                #expect(try await send("GET", port: proxy.port, path: "/metrics").status == 200)
            }

            // Counters an older build left: past Int64 (stored at its top) and wrapped below zero.
            try await Self.poison(
                store,
                [
                    ("saved_tokens", .max), ("model/gemini-2.5-flash/saved_tokens", .max), ("hits", -7),
                    ("model/gemini-2.5-flash/upstream_tokens", .max - 1),
                ]
            )
            try await Self.serving(arguments, directory: dir.path) { proxy in
                #expect(try await ask(proxy.port, "count me") == "HIT")
                #expect(try await ask(proxy.port, "a new prompt") == "MISS")
                let poisoned = try await statsDocument(port: proxy.port) { $0["hits"] as? Int == 1 && $0["misses"] as? Int == 2 }
                #expect(poisoned["saved_tokens"] as? Int == Int(Int64.max), "saturated, not wrapped")
                #expect(poisoned["hits"] as? Int == 1, "a wrapped counter reads as 0")
                let models = try #require(poisoned["models"] as? [String: Any])
                #expect((models["gemini-2.5-flash"] as? [String: Any])?["upstream_tokens"] as? Int == Int(Int64.max))
                let metrics = try await send("GET", port: proxy.port, path: "/metrics")
                #expect(metrics.status == 200 && metrics.body.contains("gemcache_saved_tokens_total 9223372036854775807"))
            }

            try await Self.serving(arguments, directory: dir.path) { proxy in
                let reread = try await statsDocument(port: proxy.port)
                #expect(reread["saved_tokens"] as? Int == Int(Int64.max) && reread["hits"] as? Int == 1)
            }
            let table = try StoreCommandsTests.gemcache(["stats", "--data", store], directory: dir.path)
            #expect(table.status == 0 && table.output.contains("9,223,372,036,854,775,807"))
            #expect(upstream.requests == 2)
        }
    }

    // MARK: - Durations (class 13)

    /// A duration that is no duration, or is longer than ten years, stops start-up with one line naming
    /// the setting, whatever setting it is.
    @Test func durationSettingsOutOfRangeStopStartUpWithOneLine() async throws {
        let cases: [(String, String)] = [
            ("GEMCACHE_CACHE_DEFAULT_TTL", "1e300"), ("GEMCACHE_CACHE_DEFAULT_TTL", "-1"), ("GEMCACHE_CACHE_DEFAULT_TTL", "nan"),
            ("GEMCACHE_CACHE_DEFAULT_TTL", "inf"), ("GEMCACHE_CACHE_DEFAULT_TTL", "99999999999999999999d"),
            ("GEMCACHE_CACHE_DEFAULT_TTL", "9223372036854775807"), ("GEMCACHE_CACHE_DEFAULT_TTL", "315360001"),
            ("GEMCACHE_CACHE_TTL_GENERATE", "3651d"), ("GEMCACHE_UPSTREAM_TIMEOUT", "1e300"), ("GEMCACHE_STORE_SYNC_INTERVAL", "1e19"),
            ("GEMCACHE_CACHE_STALE_IF_ERROR", "inf"), ("GEMCACHE_AUTH_VERIFY_TTL", "1e300"), ("GEMCACHE_LIMITS_CLIENT_TIMEOUT", "1e300"),
        ]
        try await withTemporaryDirectory { dir in
            for (variable, value) in cases {
                let result = try StoreCommandsTests.gemcache(
                    ["serve", "--port", "0", "--data", dir.path + "/store"],
                    directory: dir.path,
                    environment: [variable: value]
                )
                #expect(result.status == 1, "\(variable)=\(value)")
                #expect(result.errors.split(separator: "\n").count == 1 && result.errors.contains(variable), "\(variable)=\(value): \(result.errors)")
            }
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/store"), "nothing started")
        }
    }

    /// The same values for `gemcache purge --older-than` (one line) and the admin purge's `older_than`
    /// (400 in Google's envelope, the proxy unharmed).
    @Test func purgeAgesOutOfRangeGetOneLineOrA400() async throws {
        let values = ["1e300", "-1", "nan", "inf", "99999999999999999999d", "9223372036854775807", "3651d"]
        try await withTemporaryDirectory { dir in
            for value in values {
                let result = try StoreCommandsTests.gemcache(["purge", "--data", dir.path + "/store", "--older-than=\(value)"], directory: dir.path)
                #expect(
                    result.status == 1 && result.errors.hasPrefix("gemcache: --older-than: ") && result.errors.split(separator: "\n").count == 1,
                    "\(value)"
                )
            }
            try await withMockUpstream { upstreamPort, _ in
                let arguments = ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"]
                try await Self.serving(arguments, directory: dir.path, environment: ["GEMCACHE_ADMIN_TOKEN": "admin-secret"]) { proxy in
                    let bodies =
                        values.map { #"{"older_than": "\#($0)"}"# } + [
                            #"{"older_than": 1e300}"#, #"{"older_than": -1}"#, #"{"older_than": 9223372036854775807}"#,
                        ]
                    for body in bodies {
                        let answer = try await send(
                            port: proxy.port,
                            path: "/_gemcache/purge",
                            body: body,
                            headers: ["authorization": "Bearer admin-secret"]
                        )
                        #expect(answer.status == 400, "\(body)")
                        let error = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: [String: Any]])["error"]
                        #expect(error?["code"] as? Int == 400 && error?["status"] as? String == "INVALID_ARGUMENT", "\(body)")
                        #expect((error?["message"] as? String)?.hasPrefix("older_than: ") == true, "\(body)")
                    }
                    let fine = try await send(
                        port: proxy.port,
                        path: "/_gemcache/purge",
                        body: #"{"older_than": "3650d"}"#,
                        headers: ["authorization": "Bearer admin-secret"]
                    )
                    #expect(fine.status == 200 && fine.body.contains(#""deleted":0"#))
                }
            }
        }
    }

    // MARK: - Files (classes 9 and 14)

    static func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
    }

    /// `gemcache export` writes a file only its owner can read: a new file, one that existed with
    /// another mode (a reader that had it open keeps the old bytes), and a path that was a link.
    @Test func exportsAreCreatedPrivate() async throws {
        try await withTemporaryDirectory { dir in
            let store = dir.path + "/store"
            _ = try await StoreCommandsTests.populate(store)
            let fresh = dir.path + "/fresh.jsonl"
            #expect(try StoreCommandsTests.gemcache(["export", "--data", store, fresh], directory: dir.path).output == "exported 8 entries\n")
            #expect(Self.mode(fresh) == 0o600)

            let existing = dir.path + "/existing.jsonl"
            #expect(FileManager.default.createFile(atPath: existing, contents: Data("before\n".utf8), attributes: [.posixPermissions: 0o644]))
            let reader = try #require(FileHandle(forReadingAtPath: existing))
            defer { try? reader.close() }
            #expect(try StoreCommandsTests.gemcache(["export", "--data", store, existing], directory: dir.path).status == 0)
            #expect(Self.mode(existing) == 0o600)
            #expect(try String(contentsOfFile: existing, encoding: .utf8).split(separator: "\n").count == 9)
            #expect(String(decoding: reader.readDataToEndOfFile(), as: UTF8.self) == "before\n", "an open handle never sees the export")

            let target = dir.path + "/target.txt"
            let link = dir.path + "/link.jsonl"
            #expect(FileManager.default.createFile(atPath: target, contents: Data("kept\n".utf8), attributes: [.posixPermissions: 0o644]))
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
            #expect(try StoreCommandsTests.gemcache(["export", "--data", store, link], directory: dir.path).status == 0)
            let replaced = try FileManager.default.attributesOfItem(atPath: link)
            #expect(
                replaced[.type] as? FileAttributeType == .typeRegular && replaced[.posixPermissions] as? Int == 0o600,
                "a private file, no longer a link"
            )
            #expect(try String(contentsOfFile: target, encoding: .utf8) == "kept\n", "the link's target is untouched")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).allSatisfy { !$0.contains(".jsonl.") }, "no temporary file left")
        }
    }

    /// A store whose folder and files are open to other users is used, with a warning at start-up that
    /// names the path and the modes; a store the proxy created gets none.
    @Test func aStoreOpenToOtherUsersIsUsedWithAWarning() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, _ in
                let loose = dir.path + "/loose"
                let own = dir.path + "/own"
                _ = try await StoreCommandsTests.populate(loose)
                try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: loose)
                for file in ["data.mdb", "lock.mdb"] {
                    try FileManager.default.setAttributes([.posixPermissions: 0o666], ofItemAtPath: loose + "/" + file)
                }
                try await Self.serving(["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", loose], directory: dir.path) { proxy in
                    let warning = try #require(proxy.log.split(separator: "\n").first { $0.contains("store is open to other users") })
                    #expect(warning.contains("warning"))
                    #expect(
                        warning.contains("\(loose) 0777") && warning.contains("\(loose)/data.mdb 0666") && warning.contains("\(loose)/lock.mdb 0666")
                    )
                    #expect(try await send("GET", port: proxy.port, path: "/healthz").status == 200, "the store is used")
                }

                try await Self.serving(["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", own], directory: dir.path) { proxy in
                    #expect(!proxy.log.contains("store is open to other users"))
                }
                #expect(Self.mode(own) == 0o700 && Self.mode(own + "/data.mdb") == 0o600)
            }
        }
    }
}
