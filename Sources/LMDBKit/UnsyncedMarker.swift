#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file `unsynced` in an environment's directory: present, on disk, while commits made without a
/// disk sync (`MDB_NOSYNC`) may not be on disk yet, and holding the ID of the boot that made them.
///
/// Such commits outlive their process (`kill -9` included): the kernel's page cache holds them. A
/// machine that stops loses the page cache, and LMDB says a store whose commits were not synced may
/// then be corrupt, not merely behind. So a marker left by an earlier boot means "do not trust this
/// store". It is created (and synced) before the first page of an unsynced commit can reach the disk,
/// and removed only after a sync, both under LMDB's writer lock, so that every process sharing the
/// environment agrees on it.
struct UnsyncedMarker: Sendable {
    static let fileName = "unsynced"

    let directory: String
    var path: String { directory + "/" + Self.fileName }

    /// True when the marker is there and was written by another boot than the running one (or when the
    /// running boot cannot be told apart: then any marker counts).
    var wasLeftByEarlierBoot: Bool {
        guard let written = Self.readFile(path) else { return false }
        guard let current = Self.currentBootID else { return true }
        return written != current
    }

    /// Creates the marker durably unless it is there. Call inside a write transaction.
    func ensurePresent() throws(LMDBError) {
        if isPresent { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LMDBError(code: errno, operation: "open(\(Self.fileName))") }
        let bytes = Array((Self.currentBootID ?? "unknown").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        let failure = errno
        close(fd)
        guard written == bytes.count, synced else { throw LMDBError(code: failure, operation: "write(\(Self.fileName))") }
        try syncDirectory()
    }

    /// Removes the marker, durably. Call inside a write transaction, after the data file's sync.
    func remove() throws(LMDBError) {
        guard unlink(path) == 0 else {
            if errno == ENOENT { return }
            throw LMDBError(code: errno, operation: "unlink(\(Self.fileName))")
        }
        try syncDirectory()
    }

    var isPresent: Bool { access(path, F_OK) == 0 }

    /// Makes the directory entry's creation or removal durable.
    private func syncDirectory() throws(LMDBError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LMDBError(code: errno, operation: "open(\(directory))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LMDBError(code: errno, operation: "fsync(\(directory))") }
    }

    /// The kernel's random ID of the running boot (Linux), nil where there is none.
    static let currentBootID: String? = readFile("/proc/sys/kernel/random/boot_id")

    /// A small file's text without surrounding whitespace, nil when it cannot be read.
    private static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { return nil }
        let text = String(decoding: buffer[..<count], as: UTF8.self)
        return String(text.filter { !$0.isWhitespace })
    }
}
