import Foundation
import LMDBKit
import Testing

@Suite(.timeLimit(.minutes(1)))
struct EnvironmentTests {
    @Test func dataPersistsAcrossCloseAndReopen() async throws {
        let path = makeTemporaryPath() + "/nested/env"  // intermediate directories are created
        defer { removeDirectory(path) }
        do {
            let env = try LMDBEnvironment(path: path, mapSize: 1 << 20)
            let db = try env.openDatabase("main", create: true)
            try await env.write { try $0.put(db, key: bytes("k"), value: bytes("persisted")) }
            env.close()
        }
        #expect(FileManager.default.fileExists(atPath: path + "/data.mdb"))
        let env = try LMDBEnvironment(path: path, mapSize: 1 << 20)
        defer { env.close() }
        #expect(env.staleReadersClearedAtOpen == 0)
        let db = try env.openDatabase("main", create: false)
        #expect(try await env.read { try $0.get(db, key: bytes("k")) } == bytes("persisted"))
    }

    /// liblmdb maps the file and trusts its meta page: reading a page past the end of a file cut short
    /// would stop the process with SIGBUS. The open refuses such a file instead, as corrupt.
    @Test func aDataFileCutShortIsRefusedAtOpen() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        do {
            let env = try LMDBEnvironment(path: path, mapSize: 4 << 20)
            let db = try env.openDatabase("main", create: true)
            try await env.write { txn in
                for i in 0..<400 { try txn.put(db, key: key(i), value: [UInt8](repeating: UInt8(i % 256), count: 100)) }
            }
            env.close()
        }
        let file = URL(fileURLWithPath: path + "/data.mdb")
        let bytes = try Data(contentsOf: file)
        #expect(bytes.count >= 8 * 4096)
        try bytes.prefix(bytes.count - 2 * 4096).write(to: file)
        #expect(throws: LMDBError.corrupted) { _ = try LMDBEnvironment(path: path, mapSize: 4 << 20) }
    }

    @Test func openingMissingDatabaseWithoutCreateFails() async throws {
        try await withTestEnvironment { env, _ in
            #expect(throws: LMDBError(code: -30798, operation: "")) {  // -30798: MDB_NOTFOUND
                try env.openDatabase("absent", create: false)
            }
        }
    }

    @Test func mapFullIsReportedAndEnvironmentStaysUsable() async throws {
        try await withTestEnvironment(mapSize: 64 << 10) { env, db in
            let value = [UInt8](repeating: 0xAB, count: 1024)
            var failedAt: Int?
            for i in 0..<1000 {
                do {
                    try await env.write { try $0.put(db, key: key(i), value: value) }
                } catch let error as LMDBError {
                    #expect(error == .mapFull)
                    #expect(!error.isCorruption)
                    failedAt = i
                    break
                }
            }
            let failed = try #require(failedAt)
            #expect(failed > 0)
            #expect(try env.entryCount(db) == failed)
            #expect(try await env.read { try $0.get(db, key: key(0)) } == value)
            #expect(try await env.read { try $0.get(db, key: key(failed)) } == nil)
            // Copy-on-write: even a delete needs fresh pages, and pages freed by the last commit
            // are not reusable yet. Deleting key(0) and inserting "small" (two different leaves)
            // fails with mapFull again here; deleting the last key frees room in the leaf "small"
            // lands in, so the transaction fits.
            let deleted = try await env.write { txn in
                let deleted = try txn.delete(db, key: key(failed - 1))
                try txn.put(db, key: bytes("small"), value: bytes("ok"))
                return deleted
            }
            #expect(deleted)
            #expect(try env.withReadTransaction { try $0.get(db, key: bytes("small")) } == bytes("ok"))
            let (used, mapSize) = (try env.usedBytes, try env.mapSize)
            #expect(used <= mapSize)
        }
    }

    @Test func twoHundredConcurrentReads() async throws {
        try await withTestEnvironment { env, db in
            try await env.write { txn in
                for i in 0..<10 { try txn.put(db, key: key(i), value: bytes("value-\(i)")) }
            }
            let matches = try await withThrowingTaskGroup(of: Bool.self) { group in
                for n in 0..<200 {
                    group.addTask {
                        try await env.read { try $0.get(db, key: key(n % 10)) } == bytes("value-\(n % 10)")
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(matches == 200)
        }
    }

    /// Read transactions are reset and renewed rather than begun anew: a renewed one sees every commit
    /// made since (a reset one holds no snapshot), one that threw is reused too, and many readers at once
    /// and a close with readers kept idle leave the environment able to reopen and read.
    @Test func renewedReadsSeeLaterCommitsAndCloseReleasesTheKeptReaders() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        let env = try LMDBEnvironment(path: path, mapSize: 16 << 20)
        let db = try env.openDatabase("main", create: true)
        for version in 0..<50 {
            try await env.write { txn in try txn.put(db, key: key(0), value: bytes("v\(version)")) }
            #expect(try env.withReadTransaction { try $0.get(db, key: key(0)) } == bytes("v\(version)"))
            #expect(throws: CancellationError.self) { try env.withReadTransaction { _ in throw CancellationError() } }
        }
        let reads = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask { try env.withReadTransaction { try $0.get(db, key: key(0)) } == bytes("v49") } }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(reads == 200)
        env.close()
        let reopened = try LMDBEnvironment(path: path, mapSize: 16 << 20)
        defer { reopened.close() }
        let again = try reopened.openDatabase("main", create: false)
        #expect(try reopened.withReadTransaction { try $0.get(again, key: key(0)) } == bytes("v49"))
        #expect(try reopened.checkReaders() == 0)
    }

    @Test func concurrentWritesAllLand() async throws {
        try await withTestEnvironment { env, db in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<100 {
                    group.addTask {
                        try await env.write { txn in
                            // Read-modify-write of a counter: lost updates would show if writes overlapped.
                            let current = try txn.get(db, key: bytes("counter")).map { Int(String(decoding: $0, as: UTF8.self))! } ?? 0
                            try txn.put(db, key: bytes("counter"), value: bytes("\(current + 1)"))
                            try txn.put(db, key: key(n), value: bytes("\(n)"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try env.entryCount(db) == 101)
            #expect(try env.withReadTransaction { try $0.get(db, key: bytes("counter")) } == bytes("100"))
        }
    }

    /// Jobs queued with `onWriterThread` write on the writer thread, one at a time with `write(_:)`'s
    /// closures: read-modify-writes from both never lose an update, and all ran on one thread.
    @Test func writerThreadJobsTakeTurnsWithWritesOnOneThread() async throws {
        try await withTestEnvironment { env, db in
            @Sendable func increment(_ txn: borrowing LMDBTransaction) throws -> pthread_t {
                let current = try txn.get(db, key: bytes("counter")).map { Int(String(decoding: $0, as: UTF8.self))! } ?? 0
                try txn.put(db, key: bytes("counter"), value: bytes("\(current + 1)"))
                return pthread_self()
            }
            let threads = try await withThrowingTaskGroup(of: pthread_t.self) { group in
                for _ in 0..<50 {
                    group.addTask { try await env.write(increment) }
                    group.addTask {
                        try await withCheckedThrowingContinuation { continuation in
                            env.onWriterThread { writer in continuation.resume(with: Result { try writer.write(increment) }) }
                        }
                    }
                }
                return try await group.reduce(into: Set<pthread_t>()) { $0.insert($1) }
            }
            #expect(try env.withReadTransaction { try $0.get(db, key: bytes("counter")) } == bytes("100"))
            #expect(threads.count == 1)
        }
    }

    @Test func checkReadersSucceeds() async throws {
        try await withTestEnvironment { env, _ in
            let cleared = try env.checkReaders()
            #expect(cleared == 0)
            #expect(env.staleReadersClearedAtOpen == 0)
        }
    }

    @Test func statisticsAreSane() async throws {
        try await withTestEnvironment(mapSize: 8 << 20) { env, db in
            #expect(try env.mapSize == 8 << 20)
            let emptyUsed = try env.usedBytes
            #expect(emptyUsed > 0)
            try await env.write { txn in
                for i in 0..<500 { try txn.put(db, key: key(i), value: [UInt8](repeating: 7, count: 200)) }
            }
            #expect(try env.entryCount(db) == 500)
            let used = try env.usedBytes
            #expect(used >= emptyUsed + 500 * 200)
            let mapSize = try env.mapSize
            #expect(used < mapSize)
        }
    }

    @Test func garbageDataFileIsReportedAsCorruption() throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let garbage = Data((0..<(64 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: path + "/data.mdb"))
        let error = try #require(throws: LMDBError.self) {
            try LMDBEnvironment(path: path, mapSize: 1 << 20)
        }
        #expect(error == .invalid)
        #expect(error.isCorruption)
    }

    @Test func closeIsIdempotentAndLaterUseFails() async throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        let env = try LMDBEnvironment(path: path, mapSize: 1 << 20)
        let db = try env.openDatabase("main", create: true)
        env.close()
        env.close()
        await #expect(throws: LMDBError.environmentClosed) {
            try await env.write { try $0.put(db, key: bytes("k"), value: bytes("v")) }
        }
        await #expect(throws: LMDBError.environmentClosed) {
            try await env.read { try $0.get(db, key: bytes("k")) }
        }
        // A writer-thread job still runs (so that it can answer whoever waits on it), and cannot write.
        let job = await withCheckedContinuation { continuation in
            env.onWriterThread { writer in
                continuation.resume(returning: Result { try writer.write { try $0.put(db, key: bytes("k"), value: bytes("v")) } })
            }
        }
        #expect(throws: LMDBError.environmentClosed) { try job.get() }
        #expect(throws: LMDBError.environmentClosed) { try env.checkReaders() }
        #expect(throws: LMDBError.environmentClosed) { try env.mapSize }
        // The directory can be opened again once closed.
        let reopened = try LMDBEnvironment(path: path, mapSize: 1 << 20)
        reopened.close()
    }
}

@Suite struct ErrorTests {
    @Test func equalityComparesCodeOnly() {
        let error = LMDBError(code: LMDBError.mapFull.code, operation: "mdb_put")
        #expect(error == .mapFull)
        #expect(error != .readersFull)
        #expect(Set([error, .mapFull]).count == 1)
        let thrown: any Error = error
        switch thrown {
        case LMDBError.mapFull: break
        default: Issue.record("pattern match on any Error failed")
        }
    }

    @Test func corruptionClassification() {
        #expect(LMDBError.corrupted.isCorruption)
        #expect(LMDBError.invalid.isCorruption)
        #expect(LMDBError.versionMismatch.isCorruption)
        #expect(!LMDBError.mapFull.isCorruption)
        #expect(!LMDBError.panic.isCorruption)
        #expect(!LMDBError(code: ENOENT, operation: "mdb_env_open").isCorruption)
        #expect(!LMDBError(code: EACCES, operation: "mdb_env_open").isCorruption)
    }

    @Test func descriptionUsesStrerror() {
        #expect(
            LMDBError(code: LMDBError.mapFull.code, operation: "mdb_put").description
                == "mdb_put: MDB_MAP_FULL: Environment mapsize limit reached (-30792)"
        )
        #expect(
            LMDBError(code: ENOENT, operation: "mdb_env_open").description
                == "mdb_env_open: No such file or directory (2)"
        )
    }
}
