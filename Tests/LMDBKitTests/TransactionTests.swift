import LMDBKit
import Testing

@Suite(.timeLimit(.minutes(1)))
struct TransactionTests {
    @Test func putGetDeleteRoundTrip() async throws {
        try await withTestEnvironment { env, db in
            try await env.write { txn in
                try txn.put(db, key: bytes("a"), value: bytes("alpha"))
                try txn.put(db, key: "b".utf8, value: [UInt8]())
                try bytes("c").withUnsafeBytes { try txn.put(db, key: $0, value: $0) }
            }
            let (a, b, c, missing, aCount, missingCount) = try await env.read { txn in
                (
                    try txn.get(db, key: bytes("a")),
                    try txn.get(db, key: bytes("b")),
                    try txn.get(db, key: bytes("c")),
                    try txn.get(db, key: bytes("missing")),
                    try txn.withValue(db, key: bytes("a")) { $0.count },
                    try txn.withValue(db, key: bytes("missing")) { $0.count }
                )
            }
            #expect(a == bytes("alpha"))
            #expect(b == [])
            #expect(c == bytes("c"))
            #expect(missing == nil)
            #expect(aCount == 5)
            #expect(missingCount == nil)
            let deleted = try await env.write { txn in
                (try txn.delete(db, key: bytes("a")), try txn.delete(db, key: bytes("a")))
            }
            #expect(deleted == (true, false))
            #expect(try env.withReadTransaction { try $0.get(db, key: bytes("a")) } == nil)
        }
    }

    @Test func putReplacesUnlessNoOverwrite() async throws {
        try await withTestEnvironment { env, db in
            try await env.write { try $0.put(db, key: bytes("k"), value: bytes("1")) }
            try await env.write { try $0.put(db, key: bytes("k"), value: bytes("2")) }
            await #expect(throws: LMDBError.keyExists) {
                try await env.write { try $0.put(db, key: bytes("k"), value: bytes("3"), flags: .noOverwrite) }
            }
            #expect(try env.withReadTransaction { try $0.get(db, key: bytes("k")) } == bytes("2"))
        }
    }

    @Test func throwingWriteClosureAbortsEverything() async throws {
        struct Boom: Error {}
        try await withTestEnvironment { env, db in
            await #expect(throws: Boom.self) {
                try await env.write { txn in
                    try txn.put(db, key: bytes("a"), value: bytes("1"))
                    try txn.put(db, key: bytes("b"), value: bytes("2"))
                    throw Boom()
                }
            }
            let count = try env.entryCount(db)
            #expect(count == 0)
        }
    }

    @Test func writingInReadTransactionFails() async throws {
        try await withTestEnvironment { env, db in
            #expect(throws: LMDBError(code: 13, operation: "")) {  // 13: EACCES
                try env.withReadTransaction { try $0.put(db, key: bytes("a"), value: bytes("1")) }
            }
        }
    }

    @Test func forEachVisitsKeysInOrder() async throws {
        try await withTestEnvironment { env, db in
            try await env.write { txn in
                for i in [5, 1, 9, 3, 7, 0, 2, 8, 4, 6] {
                    try txn.put(db, key: key(i), value: bytes("\(i)"))
                }
            }
            try env.withReadTransaction { txn in
                var all: [[UInt8]] = []
                try txn.forEach(db) { k, v in
                    #expect(Array(v) == bytes(String(k.last! - UInt8(ascii: "0"))))
                    all.append(Array(k))
                    return true
                }
                #expect(all == (0..<10).map(key))

                var fromMiddle: [[UInt8]] = []
                // "key-00003x" is not present: iteration starts at the next larger key.
                try txn.forEach(db, startingAt: key(3) + bytes("x")) { k, _ in
                    fromMiddle.append(Array(k))
                    return fromMiddle.count < 3
                }
                #expect(fromMiddle == [key(4), key(5), key(6)])

                var pastEnd = 0
                try txn.forEach(db, startingAt: bytes("zzz")) { _, _ in
                    pastEnd += 1
                    return true
                }
                #expect(pastEnd == 0)
            }
        }
    }

    @Test func forEachDeletingDeletesAcrossPages() async throws {
        let n = 2000  // enough entries to span many leaf pages
        try await withTestEnvironment { env, db in
            try await env.write { txn in
                for i in 0..<n { try txn.put(db, key: key(i), value: [UInt8](repeating: 1, count: 100)) }
            }
            let visited = try await env.write { txn in
                var visited = 0
                try txn.forEachDeleting(db) { k, _ in
                    visited += 1
                    let i = Int(String(decoding: k.dropFirst(4), as: UTF8.self))!
                    return i % 2 == 1 ? .delete : .keep
                }
                return visited
            }
            #expect(visited == n)
            #expect(try env.entryCount(db) == n / 2)
            try env.withReadTransaction { txn in
                var remaining: [[UInt8]] = []
                try txn.forEach(db) { k, _ in
                    remaining.append(Array(k))
                    return true
                }
                #expect(remaining == stride(from: 0, to: n, by: 2).map(key))
            }

            // .stop ends the walk without deleting the current entry.
            try await env.write { txn in
                var seen = 0
                try txn.forEachDeleting(db) { _, _ in
                    seen += 1
                    return seen <= 10 ? .delete : .stop
                }
            }
            #expect(try env.entryCount(db) == n / 2 - 10)
            #expect(try env.withReadTransaction { try $0.get(db, key: key(20)) } != nil)
            #expect(try env.withReadTransaction { try $0.get(db, key: key(18)) } == nil)
        }
    }

    @Test func dropEmptiesTheDatabase() async throws {
        try await withTestEnvironment { env, db in
            try await env.write { txn in
                for i in 0..<50 { try txn.put(db, key: key(i), value: bytes("v")) }
            }
            let counts = try await env.write { txn in
                let before = try txn.count(db)
                try txn.drop(db)
                return (before, try txn.count(db))
            }
            #expect(counts == (50, 0))
            try await env.write { try $0.put(db, key: key(1), value: bytes("again")) }
            #expect(try env.entryCount(db) == 1)
        }
    }
}
