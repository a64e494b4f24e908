import Foundation
import LMDBKit
import Testing

/// Commits without the disk sync (`deferSync`) and the `unsynced` marker that guards them.
@Suite(.timeLimit(.minutes(1)))
struct DeferredSyncTests {
    private static func marker(_ path: String) -> String? {
        FileManager.default.contents(atPath: path + "/unsynced").map { String(decoding: $0, as: UTF8.self) }
    }

    private static let bootID = try! String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)
        .trimmingCharacters(in: .whitespacesAndNewlines)

    /// Writes `value` under "k" in "main" as a process that defers its syncs and ends without one
    /// (as `kill -9` leaves it).
    private static func writeWithoutSync(_ path: String, value: String) async throws {
        let env = try LMDBEnvironment(path: path, mapSize: 1 << 20, deferSync: true)
        defer { env.close() }
        let db = try env.openDatabase("main", create: true)
        try await env.write { try $0.put(db, key: bytes("k"), value: bytes(value)) }
    }

    @Test func deferredCommitsAreMarkedWithTheBootUntilTheSync() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        let env = try LMDBEnvironment(path: path, mapSize: 1 << 20, deferSync: true)
        defer { env.close() }
        let db = try env.openDatabase("main", create: true)
        #expect(Self.marker(path) == Self.bootID)

        try await env.syncDeferredWrites()
        #expect(Self.marker(path) == nil)

        try await env.write { try $0.put(db, key: bytes("k"), value: bytes("v")) }
        #expect(Self.marker(path) == Self.bootID)
        try await env.syncDeferredWrites()
        #expect(Self.marker(path) == nil)
        #expect(try await env.read { try $0.get(db, key: bytes("k")) } == bytes("v"))
    }

    @Test func syncedCommitsLeaveNoMarker() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        let env = try LMDBEnvironment(path: path, mapSize: 1 << 20)
        defer { env.close() }
        let db = try env.openDatabase("main", create: true)
        try await env.write { try $0.put(db, key: bytes("k"), value: bytes("v")) }
        #expect(Self.marker(path) == nil)
    }

    @Test func aMarkerOfThisBootOpensAndAnySyncClearsIt() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        try await Self.writeWithoutSync(path, value: "kept")
        #expect(Self.marker(path) == Self.bootID)

        // The page cache still holds those commits: the store opens, and a process that syncs every
        // commit clears the marker too.
        let env = try LMDBEnvironment(path: path, mapSize: 1 << 20)
        defer { env.close() }
        let db = try env.openDatabase("main", create: false)
        #expect(try await env.read { try $0.get(db, key: bytes("k")) } == bytes("kept"))
        try await env.syncDeferredWrites()
        #expect(Self.marker(path) == nil)
    }

    @Test func aMarkerOfAnEarlierBootStopsEveryOpen() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        try await Self.writeWithoutSync(path, value: "v")
        // The machine restarted before the sync.
        try Data("00000000-0000-0000-0000-000000000000\n".utf8).write(to: URL(fileURLWithPath: path + "/unsynced"))
        let data = FileManager.default.contents(atPath: path + "/data.mdb")

        for deferSync in [true, false] {
            let error = try #require(throws: UnsyncedCommitsLost.self) {
                try LMDBEnvironment(path: path, mapSize: 1 << 20, deferSync: deferSync)
            }
            #expect(error.path == path + "/unsynced")
            #expect("\(error)".contains("may be corrupt"))
        }
        #expect(FileManager.default.contents(atPath: path + "/data.mdb") == data)
        #expect(Self.marker(path) != nil)
    }
}
