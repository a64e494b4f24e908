import Foundation
import GemcacheKey
import GemcacheTestSupport
import Testing

@testable import GemcacheStore

/// `gemcache export` / `import` on real stores: identical round trips, the scope salt rules of SPEC §3,
/// malformed input; and the option parsing of `gemcache purge`.
@Suite(.timeLimit(.minutes(1)))
struct StoreTransferTests {
    static let now: Int64 = 1_800_000_000_000

    /// Opens a store in `path` the way a proxy does (creating its salt, unless `salt` is given).
    static func proxyStore(_ path: String, salt: [UInt8]? = nil) async throws -> CacheStore {
        var configuration = StoreConfiguration()
        configuration.path = path
        configuration.maxSize = 64 << 20
        return try await CacheStore.open(configuration: configuration, scopeSalt: salt, logger: quietLogger, now: { now })
    }

    /// A store as `gemcache import` opens it: created if missing, never given a salt of its own.
    static func commandStore(_ path: String) async throws -> CacheStore {
        var configuration = StoreConfiguration()
        configuration.path = path
        configuration.maxSize = 64 << 20
        return try await CacheStore.openForCommand(configuration: configuration, create: true)
    }

    static func key(_ name: String) -> CacheKey {
        CacheKey(bytes: Digest.sha256(Array(name.utf8)))!
    }

    /// Entries of every shape: namespaces nil, empty and named, every scope (per key, shared, unknown as
    /// in records of version 1), a stream with CRLF framing, non-UTF-8 bytes, an expired entry, and
    /// enough plain ones to span several export batches.
    static func sampleEntries() -> [(CacheKey, CacheEntry)] {
        let json = CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8"), ("Vary", "Origin")])
        func entry(
            _ body: [UInt8],
            headers: [UInt8] = json,
            namespace: String? = nil,
            expires: Int64 = now + 86_400_000,
            model: String = "gemini-2.5-flash",
            scope: CacheEntry.Scope? = .perKey
        ) -> CacheEntry {
            CacheEntry(
                status: 200,
                headerBlock: headers,
                body: body,
                storedAt: now - 5000,
                expiresAt: expires,
                model: model,
                namespace: namespace,
                endpoint: "generateContent",
                promptTokens: 7,
                totalTokens: 42,
                scope: scope
            )
        }
        var entries = [
            (key("named"), entry(Array(#"{"text":"Grüße, 世界 🌍"}"#.utf8), namespace: "team-a")),
            (key("empty-namespace"), entry(Array("{}".utf8), namespace: "", scope: .shared)),
            (
                key("stream"),
                entry(
                    Array("data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n\r\n".utf8),
                    headers: CacheEntry.headerBlock([("Content-Type", "text/event-stream")]),
                    scope: nil
                )
            ),
            (
                key("binary"),
                entry([0x1F, 0x8B, 0x08, 0x00, 0xFF, 0xFE, 0x00, 0xC3], headers: Array("X-Raw: ".utf8) + [0xFF, 0x80, 0x0D, 0x0A], scope: .shared)
            ),
            (key("expired"), entry(Array("{\"old\":true}".utf8), expires: now - 1000, model: "gemini-2.5-pro")),
        ]
        for index in 0..<1200 {
            entries.append(
                (key("plain-\(index)"), entry(Array("{\"n\":\(index)}".utf8), model: index % 2 == 0 ? "gemini-2.5-flash" : "gemini-embedding-001"))
            )
        }
        return entries
    }

    static func allEntries(_ store: CacheStore) async throws -> [CacheKey: CacheEntry] {
        let batch = try await store.entryBatch(after: nil, maxCount: .max, maxBytes: .max)
        return Dictionary(uniqueKeysWithValues: batch.entries)
    }

    /// Exports `store` to `file` and returns the summary.
    static func export(_ store: CacheStore, salt: [UInt8]?, to file: String) async throws -> StoreTransfer.ExportSummary {
        FileManager.default.createFile(atPath: file, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        defer { try? output.close() }
        return try await StoreTransfer.export(store, salt: salt, to: output)
    }

    static func `import`(
        _ file: String,
        into store: CacheStore,
        maxEntrySize: Int = 16 << 20,
        saltFromEnvironment: [UInt8]? = nil,
        assumeShared: Bool = false,
        refused: (Int, String) -> Void = { line, reason in Issue.record("line \(line) refused: \(reason)") }
    ) async throws -> StoreTransfer.ImportSummary {
        let input = try #require(FileHandle(forReadingAtPath: file))
        defer { try? input.close() }
        return try await StoreTransfer.import(
            store,
            from: input,
            totalBytes: nil,
            maxEntrySize: maxEntrySize,
            saltFromEnvironment: saltFromEnvironment,
            assumeShared: assumeShared,
            refused: refused
        )
    }

    @Test func anExportImportedIntoANewStoreGivesBackEveryEntryIdentically() async throws {
        try await withTemporaryDirectory { dir in
            let source = try await Self.proxyStore(dir.path + "/source")
            let samples = Self.sampleEntries()
            #expect(await source.storeAll(samples) == samples.count)
            let salt = try #require(try await source.storedScopeSalt())
            let exported = try await Self.export(source, salt: salt, to: dir.path + "/cache.jsonl")
            #expect(exported == .init(exported: samples.count, unreadable: 0))

            let target = try await Self.commandStore(dir.path + "/target")
            var seen: [Int] = []
            let input = try #require(FileHandle(forReadingAtPath: dir.path + "/cache.jsonl"))
            let summary = try await StoreTransfer.import(
                target,
                from: input,
                totalBytes: nil,
                maxEntrySize: 16 << 20,
                saltFromEnvironment: nil,
                assumeShared: false,
                refused: { line, reason in Issue.record("line \(line) refused: \(reason)") },
                progress: { seen.append($0.entries) }
            )
            #expect(summary == .init(imported: samples.count, skipped: 0, dropped: 0, salt: .adopted))
            #expect(seen.last == samples.count && seen == seen.sorted())
            #expect(try await Self.allEntries(target) == Self.allEntries(source))
            #expect(try await target.storedScopeSalt() == salt)
            await source.close()
            await target.close()

            // A proxy opening the imported store uses the adopted salt, so per-key entries keep working.
            let reopened = try await Self.proxyStore(dir.path + "/target")
            #expect(reopened.scopeSalt == salt)
            #expect(try reopened.lookup(Self.key("binary")) == samples[3].1)
            await reopened.close()
        }
    }

    @Test func theExportIsJSONLinesWithTheSaltInItsHeaderAndReadableText() async throws {
        try await withTemporaryDirectory { dir in
            let source = try await Self.proxyStore(dir.path + "/source")
            await source.storeAll(Array(Self.sampleEntries().prefix(4)))
            let salt = Array("a salt from the environment".utf8)
            _ = try await Self.export(source, salt: salt, to: dir.path + "/cache.jsonl")
            await source.close()

            let lines = try String(contentsOfFile: dir.path + "/cache.jsonl", encoding: .utf8).split(separator: "\n")
            #expect(lines.count == 5)
            let objects = try lines.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            #expect(objects[0]["gemcache_export"] as? Int == 1)
            #expect(objects[0]["store_format"] as? Int == Int(CacheStore.formatVersion))
            #expect(objects[0]["scope_salt"] as? String == Data(salt).base64EncodedString())
            let named = try #require(objects.first { $0["key"] as? String == Self.key("named").hex })
            #expect(named["body"] as? String == #"{"text":"Grüße, 世界 🌍"}"#)
            #expect(named["namespace"] as? String == "team-a")
            #expect(named["scope"] as? String == "per_key")
            #expect(objects.first { $0["key"] as? String == Self.key("stream").hex }?.keys.contains("scope") == false, "unknown scope: no field")
            #expect(named["expires_at"] as? Int == Int(Self.now + 86_400_000))
            let binary = try #require(objects.first { $0["key"] as? String == Self.key("binary").hex })
            #expect(
                binary["body"] == nil
                    && binary["body_base64"] as? String == Data([0x1F, 0x8B, 0x08, 0x00, 0xFF, 0xFE, 0x00, 0xC3]).base64EncodedString()
            )
            #expect(binary["headers_base64"] != nil)
        }
    }

    @Test func aStoreWithAnotherSaltSkipsPerKeyEntriesAndSaysHowMany() async throws {
        try await withTemporaryDirectory { dir in
            let source = try await Self.proxyStore(dir.path + "/source")
            let samples = Array(Self.sampleEntries().prefix(5))
            await source.storeAll(samples)
            _ = try await Self.export(source, salt: try await source.storedScopeSalt(), to: dir.path + "/cache.jsonl")
            await source.close()

            let target = try await Self.proxyStore(dir.path + "/target")
            #expect(await target.store(samples[0].1, for: Self.key("already here")))
            // Two shared entries come in; two per-key ones and the one of unknown scope stay out.
            let skipped = try await Self.import(dir.path + "/cache.jsonl", into: target)
            #expect(skipped == .init(imported: 2, skipped: 3, dropped: 0, salt: .differs))
            #expect(try await target.entryCount() == 3)
            #expect(try target.lookup(Self.key("binary")) == samples[3].1)
            #expect(try target.lookup(Self.key("named")) == nil)
            // --assume-shared takes the entry of unknown scope as shared; per-key ones still stay out.
            let forced = try await Self.import(dir.path + "/cache.jsonl", into: target, assumeShared: true)
            #expect(forced == .init(imported: 3, skipped: 2, dropped: 0, salt: .differs))
            #expect(try await target.entryCount() == 4)
            #expect(try target.lookup(Self.key("stream")) == samples[2].1)
            await target.close()
        }
    }

    @Test func anEmptyStoreAdoptsTheSaltAndTheEnvironmentSaltDecidesWhenSet() async throws {
        try await withTemporaryDirectory { dir in
            let salt = Array("shared-salt".utf8)
            let source = try await Self.proxyStore(dir.path + "/source", salt: salt)
            await source.storeAll(Array(Self.sampleEntries().prefix(3)))
            _ = try await Self.export(source, salt: salt, to: dir.path + "/cache.jsonl")
            await source.close()

            // An empty store a proxy already gave a random salt adopts the export's.
            let empty = try await Self.proxyStore(dir.path + "/empty")
            #expect(empty.scopeSalt != salt)
            #expect(try await Self.import(dir.path + "/cache.jsonl", into: empty).salt == .adopted)
            #expect(try await empty.storedScopeSalt() == salt)
            await empty.close()

            let withSalt = try await Self.commandStore(dir.path + "/env")
            let same = try await Self.import(dir.path + "/cache.jsonl", into: withSalt, saltFromEnvironment: salt)
            #expect(same == .init(imported: 3, skipped: 0, dropped: 0, salt: .matches))
            let other = try await Self.import(dir.path + "/cache.jsonl", into: withSalt, saltFromEnvironment: Array("other".utf8))
            #expect(other == .init(imported: 1, skipped: 2, dropped: 0, salt: .differs))
            #expect(try await withSalt.storedScopeSalt() == nil)
            await withSalt.close()
        }
    }

    @Test func anInputThatIsNoExportFailsAndMalformedLinesAreRefusedByNumber() async throws {
        try await withTemporaryDirectory { dir in
            let store = try await Self.commandStore(dir.path + "/store")
            let file = dir.path + "/bad.jsonl"
            for (text, message) in [
                ("{\"not\":\"an export\"}\n", "not a gemcache export: the first line is not an export header"),
                ("{\"gemcache_export\":9,\"store_format\":1}\n", "export file version 9, this gemcache reads 1"),
            ] {
                try text.write(toFile: file, atomically: true, encoding: .utf8)
                await #expect { try await Self.import(file, into: store) } throws: { ($0 as? StoreTransferError)?.description == message }
            }
            let good =
                "{\"key\":\"\(Self.key("good").hex)\",\"status\":200,\"stored_at\":1,\"expires_at\":2,\"model\":\"m\",\"endpoint\":\"e\",\"prompt_tokens\":0,\"total_tokens\":0,\"body\":\"\",\"headers\":\"\",\"scope\":\"shared\"}"
            let lines = [
                "{\"gemcache_export\":1,\"store_format\":1}",
                "{\"key\":\"abc\"}",
                "",
                good.replacingOccurrences(of: Self.key("good").hex, with: "zz"),
                good.replacingOccurrences(of: "\"scope\":\"shared\"", with: "\"scope\":\"everyone\""),
                "not json at all",
                good,
            ]
            try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
            var refusals: [String] = []
            let summary = try await Self.import(file, into: store) { refusals.append("line \($0): \($1)") }
            #expect(
                refusals == [
                    "line 2: missing status", "line 4: key must be 64 hex digits", "line 5: scope must be shared or per_key",
                    "line 6: malformed JSON",
                ]
            )
            #expect(summary.imported == 1 && summary.refused == 4)
            #expect(try store.lookup(Self.key("good")) != nil)
            await store.close()
        }
    }

    /// Issue #15, class 12: edited export lines. Each is refused with its line and reason, the rest
    /// imported, and none reaches the store.
    @Test func editedLinesAreRefusedWithTheirReasonAndTheRestImported() async throws {
        try await withTemporaryDirectory { dir in
            let source = try await Self.proxyStore(dir.path + "/source")
            let samples = Array(Self.sampleEntries().prefix(5))
            #expect(await source.storeAll(samples) == samples.count)
            _ = try await Self.export(source, salt: try await source.storedScopeSalt(), to: dir.path + "/cache.jsonl")
            await source.close()

            var lines = try String(contentsOfFile: dir.path + "/cache.jsonl", encoding: .utf8).split(separator: "\n").map(String.init)
            func edited(_ line: String, _ change: (inout [String: Any]) -> Void) throws -> String {
                var object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                change(&object)
                return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
            }
            let template = lines[1]
            let maxEntrySize = 1024
            let edits: [(String, (inout [String: Any]) -> Void, String)] = [
                ("split", { $0["headers"] = "x: y\r\nSet-Cookie: a=b" }, RecordProblem.unstoredHeader(line: 2).description),
                ("split-2", { $0["headers"] = "x: y\r\n\r\nHTTP/1.1 200 OK\r\n" }, RecordProblem.header(line: 2).description),
                ("lf", { $0["headers"] = "x: y\nSet-Cookie: a=b\r\n" }, RecordProblem.header(line: 1).description),
                ("cookie", { $0["headers"] = "x: y\r\nSet-Cookie: a=b\r\n" }, RecordProblem.unstoredHeader(line: 2).description),
                ("length", { $0["headers"] = "Content-Length: 0\r\n" }, RecordProblem.unstoredHeader(line: 1).description),
                ("old", { $0["stored_at"] = Int64.min }, RecordProblem.times(storedAt: .min, expiresAt: Self.now + 86_400_000).description),
                ("forever", { $0["expires_at"] = Int64.max }, RecordProblem.times(storedAt: Self.now - 5000, expiresAt: .max).description),
                ("status", { $0["status"] = 1000 }, RecordProblem.status(1000).description),
                ("huge-status", { $0["status"] = 70000 }, "status 70000 is not an HTTP status"),
                (
                    "big", { $0["body"] = String(repeating: "a", count: maxEntrySize + 1) },
                    "a body of 1025 bytes is over cache.max_entry_size (1024 bytes)"
                ),
                ("tokens", { $0["total_tokens"] = Int64.max }, "total_tokens 9223372036854775807 is outside 0...4294967295"),
                ("negative", { $0["prompt_tokens"] = -1 }, "prompt_tokens -1 is outside 0...4294967295"),
                ("model", { $0["model"] = String(repeating: "m", count: 70000) }, "model is longer than 65535 bytes"),
                ("time-1e300", { $0["stored_at"] = 1e300 }, "malformed JSON"),  // Foundation's decoder names no field here
            ]
            var expected: [String] = []
            for (name, change, reason) in edits {
                lines.append(
                    try edited(template) { object in
                        object["key"] = Self.key("edited-\(name)").hex
                        (object["stored_at"], object["expires_at"]) = (Self.now - 5000, Self.now + 86_400_000)
                        (object["headers_base64"], object["body_base64"]) = (nil, nil)
                        (object["headers"], object["body"]) = ("Content-Type: application/json\r\n", "{}")
                        change(&object)
                    }
                )
                expected.append("line \(lines.count): \(reason)")
            }
            let longest = StoreTransfer.longestLine(maxEntrySize: maxEntrySize)
            lines.append(try edited(template) { $0["body"] = String(repeating: "b", count: longest) })
            expected.append(
                "line \(lines.count): a line of \(lines.last!.utf8.count) bytes is longer than any entry within cache.max_entry_size (1024 bytes)"
            )
            try lines.joined(separator: "\n").write(toFile: dir.path + "/edited.jsonl", atomically: true, encoding: .utf8)

            let target = try await Self.commandStore(dir.path + "/target")
            var refusals: [String] = []
            let summary = try await Self.import(dir.path + "/edited.jsonl", into: target, maxEntrySize: maxEntrySize) {
                refusals.append("line \($0): \($1)")
            }
            #expect(refusals == expected)
            #expect(summary == .init(imported: 5, skipped: 0, dropped: 0, refused: edits.count + 1, salt: .adopted))
            #expect(try await target.entryCount() == 5)
            for (name, _, _) in edits { #expect(try target.lookup(Self.key("edited-\(name)")) == nil) }
            await target.close()
        }
    }
}
