import Foundation
import GemcacheCore
import GemcacheKey
import GemcacheStore
import GemcacheTestSupport
import GeminiMock
import LMDBKit
import Synchronization
import Testing

/// The store under pressure and faults (issue 6, SPEC §9): a full map, `kill -9` during a burst,
/// corrupt, foreign and unreadable stores, through the proxy and the real executable.
@Suite(.timeLimit(.minutes(1)))
struct StoreReliabilityTests {
    let path = "/v1beta/models/gemini-2.5-flash:generateContent"
    let key = ["x-goog-api-key": testKey]

    /// A 16 KiB entry stored at `storedAt` that expires at `expiresAt` (Unix milliseconds).
    private static func bigEntry(_ name: String, storedAt: Int64, expiresAt: Int64) -> CacheEntry {
        CacheEntry(
            status: 200,
            headerBlock: CacheEntry.headerBlock([("Content-Type", "application/json; charset=UTF-8")]),
            body: Array((name + String(repeating: "x", count: 16 << 10)).utf8),
            storedAt: storedAt,
            expiresAt: expiresAt,
            model: "gemini-2.5-flash",
            namespace: nil,
            endpoint: "generateContent",
            promptTokens: 1,
            totalTokens: 2,
            scope: .perKey
        )
    }

    private static func cacheKey(_ name: String) -> CacheKey {
        CacheKey(hex: Digest.hex(Digest.sha256(Array(name.utf8))))!
    }

    private static func storeSettings(_ dir: TemporaryDirectory, maxSize: Int = 1 << 20) -> ProxyConfiguration.Store {
        var settings = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:9", dataDirectory: dir.path).store
        settings.maxSize = maxSize
        return settings
    }

    @Test func aFullMapEvictsExpiredEntriesBeforeTheOldestLiveOnes() async throws {
        try await withTemporaryDirectory { dir in
            let clock = Mutex<Int64>(1_800_000_000_000)
            let store = try await CacheStore.open(configuration: Self.storeSettings(dir), scopeSalt: nil, logger: quietLogger) {
                clock.withLock { $0 }
            }
            let start = clock.withLock { $0 }
            // The live entries are older than the expired ones: eviction by age alone would take them first.
            for index in 0..<4 {
                #expect(
                    await store.store(
                        Self.bigEntry("old\(index)", storedAt: start + Int64(index), expiresAt: start + 3_600_000),
                        for: Self.cacheKey("old\(index)")
                    )
                )
            }
            for index in 0..<4 {
                #expect(
                    await store.store(
                        Self.bigEntry("exp\(index)", storedAt: start + 100 + Int64(index), expiresAt: start + 1000),
                        for: Self.cacheKey("exp\(index)")
                    )
                )
            }
            clock.withLock { $0 += 2000 }
            func present(_ prefix: String) async throws -> Int {
                var count = 0
                for index in 0..<4 where try store.lookup(Self.cacheKey("\(prefix)\(index)")) != nil { count += 1 }
                return count
            }
            var filler = 0
            while filler < 200 {
                clock.withLock { $0 += 1 }
                #expect(
                    await store.store(
                        Self.bigEntry("fill\(filler)", storedAt: clock.withLock { $0 }, expiresAt: start + 3_600_000),
                        for: Self.cacheKey("fill\(filler)")
                    )
                )
                filler += 1
                let (old, expired) = (try await present("old"), try await present("exp"))
                #expect(old == 4 || expired == 0, "a live entry was evicted while \(expired) expired ones remained")
                if old < 4 { break }
            }
            #expect(filler < 200, "the map never filled up")
            #expect(try store.lookup(Self.cacheKey("old0")) == nil)
            #expect(try store.lookup(Self.cacheKey("fill\(filler - 1)"))?.body == Self.bigEntry("fill\(filler - 1)", storedAt: 0, expiresAt: 0).body)
            await store.close()
        }
    }

    @Test func aFullStoreKeepsAnsweringMissesAndReplaysWhatRemainsIntact() async throws {
        try await withTemporaryDirectory { dir in
            // Some old entries first, so that the proxy has to evict entries it did not write itself.
            let now = CacheStore.wallClock()
            let prefill = try await CacheStore.open(configuration: Self.storeSettings(dir), scopeSalt: nil, logger: quietLogger)
            for index in 0..<8 {
                await prefill.store(
                    Self.bigEntry("old\(index)", storedAt: now - 60_000 + Int64(index), expiresAt: now + 3_600_000),
                    for: Self.cacheKey("old\(index)")
                )
            }
            await prefill.close()

            try await withMockUpstream { upstreamPort, recorder in
                var configuration = ProxyConfiguration.testing(upstreamURL: "http://127.0.0.1:\(upstreamPort)", dataDirectory: dir.path)
                configuration.store.maxSize = 1 << 20
                try await withProxy(configuration) { port in
                    let answers = Locked<[String: String]>([:])
                    var sent = 0
                    var evictedEnough = false
                    // Distinct misses, 16 at a time, until far more were stored than the map holds.
                    while !evictedEnough && sent < 6000 {
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            for index in sent..<(sent + 16) {
                                group.addTask {
                                    let body = generateBody("fill the store \(index)")
                                    let answer = try await send(port: port, path: path, body: body, headers: key)
                                    #expect(answer.status == 200)
                                    #expect(answer.header("x-gemcache") == "MISS")
                                    answers.withLock { $0[body] = answer.body }
                                }
                            }
                            try await group.waitForAll()
                        }
                        sent += 16
                        if sent % 64 == 0 {
                            let health = try await send("GET", port: port, path: "/healthz")
                            #expect(health.status == 200)
                            let stats = try #require(
                                try JSONSerialization.jsonObject(with: Data(try await send("GET", port: port, path: "/_gemcache/stats").body.utf8))
                                    as? [String: Any]
                            )
                            let entries = try #require(stats["entries"] as? Int)
                            evictedEnough = entries + 100 < sent + 8
                        }
                    }
                    #expect(evictedEnough, "sent \(sent) distinct answers without filling a 1 MiB store")
                    #expect(recorder.totalRequests == sent)
                    // The newest answers are still there, byte for byte, on either path.
                    for index in (sent - 16)..<sent {
                        let body = generateBody("fill the store \(index)")
                        let hit = try await send(port: port, path: path, body: body, headers: key)
                        #expect(hit.header("x-gemcache") == "HIT")
                        #expect(hit.body == answers.withLock { $0[body] })
                    }
                    #expect(try await send("GET", port: port, path: "/healthz").status == 200)
                }
            }
            // The proxy's evictions took the oldest entries; every entry left reads back whole.
            let reopened = try await CacheStore.open(configuration: Self.storeSettings(dir), scopeSalt: nil, logger: quietLogger)
            for index in 0..<8 { #expect(try reopened.lookup(Self.cacheKey("old\(index)")) == nil) }
            #expect(reopened.recoveredFrom == nil)
            await reopened.close()
        }
    }

    /// With each commit synced before its answer (`store.durability: commit`), and with the syncs deferred
    /// (the answered entries are then in the page cache only, which outlives the process).
    @Test(arguments: ["commit", "deferred"])
    func killNineDuringABurstOfMissesKeepsEveryAnsweredEntry(durability: String) async throws {
        try await withTemporaryDirectory { dir in
            try await withMockUpstream { upstreamPort, _ in
                let arguments = ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", dir.path + "/store"]
                let environment = ["GEMCACHE_STORE_DURABILITY": durability]
                var answered: [(body: String, answer: String)] = []
                // Three crashes in a row, each in the middle of 32 concurrent misses (answers spread over 2.5 s).
                for round in 0..<3 {
                    let process = try await GemcacheProcess(arguments: arguments, directory: dir.path, environment: environment)
                    let done = Locked<[(body: String, answer: String)]>([])
                    await withTaskGroup(of: Void.self) { group in
                        for index in 0..<32 {
                            group.addTask {
                                let body = generateBody("crash \(round) \(index) [[fault:slow:\(index * 80)]]")
                                guard let answer = try? await send(port: process.port, path: path, body: body, headers: key), answer.status == 200
                                else { return }
                                done.withLock { $0.append((body, answer.body)) }
                            }
                        }
                        // Real time is the subject: a real process is killed while answers are in flight.
                        for _ in 0..<1000 where done.withLock({ $0.count }) < 4 { try? await Task.sleep(for: .milliseconds(5)) }
                        #expect(await process.stop(signal: SIGKILL) != 0)
                        await group.waitForAll()
                    }
                    let finished = done.withLock { $0 }
                    #expect(finished.count >= 4 && finished.count < 32, "the kill did not land in the middle of the burst")
                    answered += finished
                }
                let restarted = try await GemcacheProcess(arguments: arguments, directory: dir.path, environment: environment)
                for (body, answer) in answered {
                    let hit = try await send(port: restarted.port, path: path, body: body, headers: key)
                    #expect(hit.header("x-gemcache") == "HIT")
                    #expect(hit.body == answer)
                }
                let stats = try Self.json(try await send("GET", port: restarted.port, path: "/_gemcache/stats").body)
                #expect(stats["store_recovered_from"] is NSNull)
                #expect(await restarted.stop() == 0)
                #expect(!restarted.log.contains("moved aside"))
                // What the killed processes left unsynced is synced by the time the last one stops.
                #expect(!FileManager.default.fileExists(atPath: dir.path + "/store/unsynced"))
            }
            // No reader slot is left behind by the killed processes once a proxy has opened the store.
            let environment = try LMDBEnvironment(path: dir.path + "/store", mapSize: 64 << 20, maxDatabases: 8)
            #expect(environment.staleReadersClearedAtOpen == 0)
            environment.close()
        }
    }

    /// A JSON object from `text`.
    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// Runs the executable to its exit; returns its status and everything it wrote. One that still runs
    /// after 30 s (a proxy that started when it should have stopped) is terminated.
    static func runToExit(_ arguments: [String], directory: String, environment: [String: String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: GemcacheProcess.executablePath)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ["PATH": "/usr/bin:/bin"].merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let deadline = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: deadline)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        deadline.cancel()
        return (process.terminationStatus, output)
    }

    /// Starts the real proxy on a store `damage` broke and checks it moved the old files aside
    /// untouched, started empty and says so in the log, the stats and `/healthz`.
    private func expectMovedAside(_ dir: TemporaryDirectory, file: String, damage: (String) async throws -> Void) async throws {
        let store = dir.path + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        try await damage(store)
        let before = FileManager.default.contents(atPath: store + "/" + file)

        // store.on_corrupt: fail stops start-up with one line and leaves the files where they are.
        let failing = try Self.runToExit(
            ["serve", "--port", "0", "--data", store],
            directory: dir.path,
            environment: ["GEMCACHE_STORE_ON_CORRUPT": "fail"]
        )
        #expect(failing.status != 0)
        #expect(failing.output.split(separator: "\n").count == 1)
        #expect(failing.output.contains("store.on_corrupt is fail"))
        #expect(FileManager.default.contents(atPath: store + "/" + file) == before)

        try await withMockUpstream { upstreamPort, _ in
            let process = try await GemcacheProcess(
                arguments: ["--upstream", "http://127.0.0.1:\(upstreamPort)", "--data", store],
                directory: dir.path
            )
            let health = try await send("GET", port: process.port, path: "/healthz")
            #expect(health.status == 200)
            let document = try Self.json(health.body)
            let aside = try #require(document["moved_to"] as? String)
            #expect(document["status"] as? String == "ok")
            #expect(document["store"] as? String == "recovered")
            #expect(aside.hasPrefix(store + ".corrupt-"))
            #expect(aside.wholeMatch(of: /.*\.corrupt-\d{8}T\d{6}Z/) != nil)
            #expect(FileManager.default.contents(atPath: aside + "/" + file) == before)
            let stats = try Self.json(try await send("GET", port: process.port, path: "/_gemcache/stats").body)
            #expect(stats["store_recovered_from"] as? String == aside)
            #expect(process.log.contains("moved aside and starting empty"))
            #expect(process.log.contains(aside))
            // The new, empty store works.
            let miss = try await send(port: process.port, path: path, body: generateBody("after recovery"), headers: key)
            #expect(miss.header("x-gemcache") == "MISS")
            #expect(try await send(port: process.port, path: path, body: generateBody("after recovery"), headers: key).header("x-gemcache") == "HIT")
            #expect(await process.stop() == 0)
        }
    }

    @Test func aDamagedDataFileIsMovedAsideThroughTheBinary() async throws {
        try await withTemporaryDirectory { dir in
            try await expectMovedAside(dir, file: "data.mdb") { store in
                let garbage = Data((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })
                FileManager.default.createFile(atPath: store + "/data.mdb", contents: garbage)
            }
        }
    }

    /// A data file cut short (a full disk, a bad copy): liblmdb would map it and stop the process with
    /// SIGBUS on the first page past its end; the open refuses it instead.
    @Test func aDataFileCutShortIsMovedAsideThroughTheBinary() async throws {
        try await withTemporaryDirectory { dir in
            try await expectMovedAside(dir, file: "data.mdb") { store in
                let environment = try LMDBEnvironment(path: store, mapSize: 64 << 20, maxDatabases: 8)
                let entries = try environment.openDatabase("entries", create: true)
                try await environment.write { txn in
                    for index in 0..<400 { try txn.put(entries, key: Array("entry \(index)".utf8), value: [UInt8](repeating: 7, count: 100)) }
                }
                environment.close()
                let file = URL(fileURLWithPath: store + "/data.mdb")
                let bytes = try Data(contentsOf: file)
                try bytes.prefix(bytes.count - 2 * 4096).write(to: file)
            }
        }
    }

    @Test func aStoreOfAnotherFormatVersionIsMovedAsideThroughTheBinary() async throws {
        try await withTemporaryDirectory { dir in
            try await expectMovedAside(dir, file: "data.mdb") { store in
                let environment = try LMDBEnvironment(path: store, mapSize: 64 << 20, maxDatabases: 8)
                let meta = try environment.openDatabase("meta", create: true)
                try await environment.write { txn in
                    try txn.put(meta, key: Array("format".utf8), value: [0, 0, 0, 99])
                }
                environment.close()
            }
        }
    }

    @Test func aStoreLeftUnsyncedWhenTheMachineStoppedIsMovedAsideThroughTheBinary() async throws {
        try await withTemporaryDirectory { dir in
            try await expectMovedAside(dir, file: "unsynced") { store in
                let environment = try LMDBEnvironment(path: store, mapSize: 64 << 20, maxDatabases: 8, deferSync: true)
                let meta = try environment.openDatabase("meta", create: true)
                try await environment.write { txn in
                    try txn.put(meta, key: Array("format".utf8), value: [0, 0, 0, 1])
                }
                environment.close()
                // Written by a boot before this one: the machine stopped before the sync.
                try Data("00000000-0000-0000-0000-000000000000".utf8).write(to: URL(fileURLWithPath: store + "/unsynced"))
            }
        }
    }

    @Test func anUnreadableStoreIsMovedAsideThroughTheBinary() async throws {
        try await withTemporaryDirectory { dir in
            // Where the data file should be there is a folder (permissions do not stop root, this does).
            try await expectMovedAside(dir, file: "data.mdb/keep") { store in
                try FileManager.default.createDirectory(atPath: store + "/data.mdb", withIntermediateDirectories: true)
                FileManager.default.createFile(atPath: store + "/data.mdb/keep", contents: Data("keep me".utf8))
            }
        }
    }
}

/// A value tasks share, behind a lock.
final class Locked<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    init(_ value: Value) { self.value = Mutex(value) }

    func withLock<R>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
}
