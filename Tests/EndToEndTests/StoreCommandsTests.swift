import Foundation
import GemcacheCore
import GemcacheKey
import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import Testing

/// `gemcache purge`, `export` and `import` run as the built binary, on a stopped store and on one a
/// running proxy uses.
@Suite(.timeLimit(.minutes(1)))
struct StoreCommandsTests {
    /// Runs `gemcache <arguments>` to its end with `environment`; returns its exit status, standard
    /// output and standard error.
    static func gemcache(
        _ arguments: [String],
        directory: String,
        environment: [String: String] = [:]
    ) throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: GemcacheProcess.executablePath)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ["PATH": "/usr/bin:/bin"].merging(environment) { $1 }
        let (output, errors) = (Pipe(), Pipe())
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, out, err)
    }

    static func key(_ name: String) -> CacheKey {
        CacheKey(bytes: Digest.sha256(Array(name.utf8)))!
    }

    /// A store at `path` holding, per model, entries stored an hour ago and just now, one in a namespace.
    static func populate(_ path: String) async throws -> [CacheKey: CacheEntry] {
        var configuration = ProxyConfiguration().store
        configuration.path = path
        configuration.maxSize = 64 << 20
        let store = try await CacheStore.open(configuration: configuration, scopeSalt: nil, logger: quietLogger)
        let now = CacheStore.wallClock()
        var entries: [CacheKey: CacheEntry] = [:]
        for (index, model) in ["gemini-2.5-flash", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001"].enumerated() {
            for (age, suffix) in [(3_600_000 as Int64, "old"), (0, "new")] {
                let entry = CacheEntry(
                    status: 200,
                    headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
                    body: Array("{\"answer\":\(index),\"age\":\"\(suffix)\"}".utf8),
                    storedAt: now - age,
                    expiresAt: now + 86_400_000,
                    model: model,
                    namespace: index == 1 ? "team-a" : nil,
                    endpoint: "generateContent",
                    promptTokens: 3,
                    totalTokens: 9,
                    scope: index == 2 ? .shared : .perKey
                )
                entries[key("\(index)-\(suffix)")] = entry
                #expect(await store.store(entry, for: key("\(index)-\(suffix)")))
            }
        }
        await store.close()
        return entries
    }

    static func contents(_ path: String) async throws -> [CacheKey: CacheEntry] {
        var configuration = ProxyConfiguration().store
        configuration.path = path
        let store = try await CacheStore.openForCommand(configuration: configuration, create: false)
        var entries: [CacheKey: CacheEntry] = [:]
        for name in ["0", "1", "2", "3"].flatMap({ ["\($0)-old", "\($0)-new"] }) {
            if let entry = try store.lookup(key(name)) { entries[key(name)] = entry }
        }
        #expect(try await store.entryCount() == entries.count)
        await store.close()
        return entries
    }

    @Test func purgeCountsDryRunsAndDeletesByEachFilter() async throws {
        try await withTemporaryDirectory { dir in
            let store = dir.path + "/store"
            _ = try await Self.populate(store)
            let steps: [([String], String, Int)] = [
                (["--model", "gemini-2.5-flash", "--dry-run"], "would delete 4 entries (dry run)", 8),
                (["--namespace", "team-a", "--older-than", "30m"], "deleted 1 entry", 7),
                (["--model", "models/gemini-2.5-flash"], "deleted 3 entries", 4),
                (["--key", Self.key("2-new").hex], "deleted 1 entry", 3),
                (["--older-than", "1800"], "deleted 2 entries", 1),
                (["--all"], "deleted 1 entry", 0),
            ]
            for (options, message, remaining) in steps {
                let result = try Self.gemcache(["purge", "--data", store] + options, directory: dir.path)
                #expect(result.status == 0)
                #expect(result.output == message + "\n", "purge \(options)")
                #expect(try await Self.contents(store).count == remaining, "after purge \(options)")
            }
        }
    }

    @Test func purgeFailsWithOneLineOnBadOptionsOrAMissingStore() async throws {
        try await withTemporaryDirectory { dir in
            let cases: [([String], String)] = [
                (
                    ["purge", "--data", dir.path + "/store", "--older-than", "soon"],
                    "gemcache: --older-than: expected a duration such as 90, 90s, 30m, 24h or 7d, got \"soon\"\n"
                ),
                (
                    ["purge", "--data", dir.path + "/store"],
                    "gemcache: say what to purge: --all, or any of --model, --namespace, --key, --older-than\n"
                ),
                (["purge", "--data", dir.path + "/store", "--all"], "gemcache: no gemcache store at \(dir.path)/store\n"),
                (["export", "--data", dir.path + "/store", dir.path + "/out.jsonl"], "gemcache: no gemcache store at \(dir.path)/store\n"),
            ]
            for (arguments, message) in cases {
                let result = try Self.gemcache(arguments, directory: dir.path)
                #expect(result.status == 1)
                #expect(result.errors == message)
            }
            #expect(!FileManager.default.fileExists(atPath: dir.path + "/store"), "a command never creates a store it only reads")
        }
    }

    @Test func exportThenImportIntoAnotherStoreIsIdentical() async throws {
        try await withTemporaryDirectory { dir in
            let original = try await Self.populate(dir.path + "/source")
            let exported = try Self.gemcache(["export", "--data", dir.path + "/source", dir.path + "/cache.jsonl"], directory: dir.path)
            #expect(exported.status == 0)
            #expect(exported.output == "exported 8 entries\n")
            #expect(exported.errors.isEmpty, "no progress line when standard error is not a terminal")

            let imported = try Self.gemcache(["import", "--data", dir.path + "/target", dir.path + "/cache.jsonl"], directory: dir.path)
            #expect(imported.status == 0)
            #expect(imported.output.hasPrefix("imported 8 entries into \(dir.path)/target\nthe store was empty and adopted the export's scope salt"))
            #expect(try await Self.contents(dir.path + "/target") == original)

            // Standard output and input work too; the same salt imports everything again.
            let piped = try Self.gemcache(["export", "--data", dir.path + "/target", "-"], directory: dir.path)
            #expect(piped.output.split(separator: "\n").count == 9)
            #expect(piped.errors == "exported 8 entries\n")
            let again = try Self.gemcache(["import", "--data", dir.path + "/target", dir.path + "/cache.jsonl"], directory: dir.path)
            #expect(again.output == "imported 8 entries into \(dir.path)/target\n")

            // Another store with entries and its own salt takes the shared entries, skips the per-key ones, and says why.
            _ = try await Self.populate(dir.path + "/other")
            let other = try Self.gemcache(["import", "--data", dir.path + "/other", dir.path + "/cache.jsonl"], directory: dir.path)
            #expect(other.status == 0)
            #expect(other.output.contains("imported 2 entries"))
            #expect(other.output.contains("skipped 6 per-key entries (or of unknown scope): the export's scope salt differs"))
        }
    }

    /// SPEC §3: an import into a store with another salt keeps what a proxy stored with shared scope and
    /// leaves out what it stored per key, so a proxy on the target answers the one and not the other.
    @Test func anImportUnderAnotherSaltKeepsSharedEntriesAndSkipsPerKeyOnes() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                /// The `X-Gemcache` of each prompt, asked in order of one proxy on `store`.
                func ask(_ texts: [String], store: String, scope: String) async throws -> [String?] {
                    let proxy = try await GemcacheProcess(
                        arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store],
                        directory: dir.path,
                        environment: ["GEMCACHE_CACHE_SCOPE": scope]
                    )
                    var answers: [String?] = []
                    for text in texts {
                        answers.append(
                            try await send(
                                port: proxy.port,
                                path: "/v1beta/models/gemini-2.5-flash:generateContent",
                                body: generateBody(text),
                                headers: ["x-goog-api-key": testKey]
                            ).header("x-gemcache")
                        )
                    }
                    #expect(await proxy.stop() == 0)
                    return answers
                }
                let source = dir.path + "/source"
                let target = dir.path + "/target"
                #expect(try await ask(["for everyone"], store: source, scope: "shared") == ["MISS"])
                #expect(try await ask(["for this key"], store: source, scope: "per_key") == ["MISS"])
                #expect(try await ask(["already there"], store: target, scope: "per_key") == ["MISS"], "the target has entries and a salt of its own")
                let exported = try Self.gemcache(["export", "--data", source, dir.path + "/cache.jsonl"], directory: dir.path)
                #expect(exported.output == "exported 2 entries\n")
                let scopes = try String(contentsOfFile: dir.path + "/cache.jsonl", encoding: .utf8).split(separator: "\n").dropFirst().map {
                    try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])["scope"] as? String
                }
                #expect(scopes.sorted { ($0 ?? "") < ($1 ?? "") } == ["per_key", "shared"])

                let imported = try Self.gemcache(["import", "--data", target, dir.path + "/cache.jsonl"], directory: dir.path)
                #expect(imported.status == 0)
                #expect(imported.output.hasPrefix("imported 1 entries into \(target)\nskipped 1 per-key entries"))
                // With shared scope a proxy serves stored answers to keys the upstream accepted lately (SPEC §8):
                // the first request, a new prompt, has the key accepted.
                #expect(try await ask(["a new prompt", "for everyone"], store: target, scope: "shared") == ["MISS", "HIT"])
                #expect(try await ask(["for this key"], store: target, scope: "per_key") == ["MISS"], "its key holds the source's salt")
                #expect(recorder.totalRequests == 5)
            }
        }
    }

    @Test func theCommandsWorkOnAStoreARunningProxyUses() async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, recorder in
                let store = dir.path + "/store"
                let proxy = try await GemcacheProcess(
                    arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store],
                    directory: dir.path
                )
                func ask(_ text: String) async throws -> String? {
                    try await send(
                        port: proxy.port,
                        path: "/v1beta/models/gemini-2.5-flash:generateContent",
                        body: generateBody(text),
                        headers: ["x-goog-api-key": testKey]
                    ).header("x-gemcache")
                }
                #expect(try await ask("one") == "MISS")
                #expect(try await ask("two") == "MISS")
                #expect(try await ask("one") == "HIT")

                let exported = try Self.gemcache(["export", "--data", store, dir.path + "/live.jsonl"], directory: dir.path)
                #expect(exported.output == "exported 2 entries\n")
                let text = try String(contentsOfFile: dir.path + "/live.jsonl", encoding: .utf8)
                #expect(!text.contains(testKey), "an export never carries an API key")

                let purged = try Self.gemcache(["purge", "--data", store, "--all"], directory: dir.path)
                #expect(purged.output == "deleted 2 entries\n")
                #expect(try await ask("one") == "MISS", "the running proxy sees the purge")

                let imported = try Self.gemcache(["import", "--data", store, dir.path + "/live.jsonl"], directory: dir.path)
                #expect(imported.output == "imported 2 entries into \(store)\n", "same store, same salt")
                #expect(try await ask("two") == "HIT", "the running proxy serves the imported entry")
                #expect(recorder.totalRequests == 3)
                #expect(await proxy.stop() == 0)
                let siblings = try FileManager.default.contentsOfDirectory(atPath: dir.path)
                #expect(!siblings.contains { $0.contains(".corrupt-") }, "no command moved the store aside")
            }
        }
    }
}
