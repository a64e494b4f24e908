import Foundation
import LMDBKit

/// A fresh path under the temporary directory; the caller removes it with `removeDirectory`.
func makeTemporaryPath() -> String {
    FileManager.default.temporaryDirectory
        .appendingPathComponent("lmdbkit-tests-\(UUID().uuidString)").path
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func bytes(_ string: String) -> [UInt8] {
    Array(string.utf8)
}

/// Zero-padded keys sort numerically under LMDB's lexicographic byte order.
func key(_ i: Int) -> [UInt8] {
    bytes(String(format: "key-%05d", i))
}

/// Opens an environment with one database named "main" in a fresh directory,
/// runs `body`, then closes the environment and removes the directory.
@discardableResult
func withTestEnvironment<T>(
    mapSize: Int = 16 << 20,
    _ body: (LMDBEnvironment, LMDBDatabase) async throws -> T
) async throws -> T {
    let path = makeTemporaryPath()
    defer { removeDirectory(path) }
    let env = try LMDBEnvironment(path: path, mapSize: mapSize)
    defer { env.close() }
    let db = try env.openDatabase("main", create: true)
    return try await body(env, db)
}
