import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error returned by an LMDB call.
///
/// Equality and hashing compare ``code`` only, so `error == .mapFull` holds for
/// every map-full error regardless of which ``operation`` produced it.
/// `catch LMDBError.mapFull { … }` also works on an untyped error (see ``~=(_:_:)``).
public struct LMDBError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The LMDB error code (`MDB_*`, negative) or a POSIX `errno` value (positive).
    public let code: Int32
    /// The C function (or wrapper operation) that failed, e.g. `"mdb_put"`.
    public let operation: String

    /// Creates an error for `code` raised by `operation`.
    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// Compares ``code`` only; ``operation`` is diagnostic context.
    public static func == (lhs: LMDBError, rhs: LMDBError) -> Bool {
        lhs.code == rhs.code
    }

    /// Hashes ``code`` only, consistent with `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
    }

    /// Matches any error that is an `LMDBError` with the same ``code`` as `pattern`.
    public static func ~= (pattern: LMDBError, value: any Error) -> Bool {
        (value as? LMDBError)?.code == pattern.code
    }

    /// `"operation: message (code)"`, the message coming from `mdb_strerror`.
    public var description: String {
        // > If the error code is greater than or equal to 0, then the string returned by
        // > the system function strerror(3) is returned.
        "\(operation): \(String(cString: mdb_strerror(code))) (\(code))"
    }

    /// True when the data file is damaged or unreadable as LMDB:
    /// ``corrupted``, ``invalid`` or ``versionMismatch``. File-system errors such as
    /// `ENOENT` or `EACCES` are not corruption.
    public var isCorruption: Bool {
        self == .corrupted || self == .invalid || self == .versionMismatch
    }

    /// `MDB_MAP_FULL`: the environment map size has been reached.
    public static let mapFull = LMDBError(code: MDB_MAP_FULL, operation: "")
    /// `MDB_READERS_FULL`: the reader lock table is full (see `maxReaders`).
    public static let readersFull = LMDBError(code: MDB_READERS_FULL, operation: "")
    /// `MDB_CORRUPTED`: a located page was of the wrong type.
    public static let corrupted = LMDBError(code: MDB_CORRUPTED, operation: "")
    /// `MDB_INVALID`: the file is not an LMDB data file (bad header).
    public static let invalid = LMDBError(code: MDB_INVALID, operation: "")
    /// `MDB_VERSION_MISMATCH`: the environment was written by an incompatible LMDB version.
    public static let versionMismatch = LMDBError(code: MDB_VERSION_MISMATCH, operation: "")
    /// `MDB_PANIC`: an earlier fatal error; the environment must be closed.
    public static let panic = LMDBError(code: MDB_PANIC, operation: "")
    /// `MDB_MAP_RESIZED`: another process grew the map beyond this process's map size.
    public static let mapResized = LMDBError(code: MDB_MAP_RESIZED, operation: "")
    /// `MDB_BAD_RSLOT`: invalid reuse of a reader locktable slot.
    public static let badReaderSlot = LMDBError(code: MDB_BAD_RSLOT, operation: "")
    /// `MDB_KEYEXIST`: `put` with ``LMDBPutFlags/noOverwrite`` found the key present.
    public static let keyExists = LMDBError(code: MDB_KEYEXIST, operation: "")
    /// `EBADF`: the ``LMDBEnvironment`` has been closed.
    public static let environmentClosed = LMDBError(code: EBADF, operation: "LMDBEnvironment.close")
}

/// Throws an ``LMDBError`` when `rc` is non-zero.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if rc != 0 { throw LMDBError(code: rc, operation: operation()) }
}

/// An environment that a process of an earlier boot wrote without disk syncs and did not sync: the
/// machine stopped with those commits in its page cache, so the data file may be corrupt. It is not
/// opened; the caller decides what becomes of it (gemcache moves it aside).
public struct UnsyncedCommitsLost: Error, Sendable, CustomStringConvertible {
    /// The marker file that says so.
    public let path: String

    public var description: String {
        "commits made without disk syncs were not synced before the machine restarted (\(path)); the store may be corrupt"
    }
}
