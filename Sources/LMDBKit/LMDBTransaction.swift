import CLMDB

/// A handle to a named database inside an ``LMDBEnvironment``, obtained once at startup
/// from ``LMDBEnvironment/openDatabase(_:create:)`` and valid until the environment closes.
public struct LMDBDatabase: Sendable, Hashable {
    let dbi: MDB_dbi
}

/// Options for ``LMDBTransaction/put(_:key:value:flags:)``.
public struct LMDBPutFlags: OptionSet, Sendable {
    /// The raw `mdb_put` flag bits.
    public let rawValue: UInt32
    /// Creates flags from raw `mdb_put` bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `MDB_NOOVERWRITE`: fail with ``LMDBError/keyExists`` instead of replacing a present key.
    public static let noOverwrite = LMDBPutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
}

/// What ``LMDBTransaction/forEachDeleting(_:_:)`` does with the current entry.
public enum LMDBCursorAction: Sendable {
    /// Keep the entry and move to the next one.
    case keep
    /// Delete the entry and move to the next one.
    case delete
    /// Keep the entry and end the iteration.
    case stop
}

/// An open LMDB transaction, lent to the closure given to ``LMDBEnvironment/read(_:)``,
/// ``LMDBEnvironment/write(_:)`` or ``LMDBEnvironment/withReadTransaction(_:)``.
///
/// It cannot be copied, stored, sent to another task or used after the closure returns.
/// Buffers it hands out point into the memory map and are valid only inside the call
/// that provides them and never after a later write in the same transaction.
/// Writing methods throw `EACCES` in a read-only transaction.
public struct LMDBTransaction: ~Copyable {
    let handle: OpaquePointer

    /// Returns a copy of the value stored under `key`, or nil if the key is absent.
    public func get(_ db: LMDBDatabase, key: some Collection<UInt8>) throws -> [UInt8]? {
        try withValue(db, key: key) { Array($0) }
    }

    /// Calls `body` with the value stored under `key` without copying it, or returns nil
    /// if the key is absent. The buffer must not escape `body`.
    public func withValue<R>(
        _ db: LMDBDatabase,
        key: some Collection<UInt8>,
        _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R? {
        try withBytes(key) { keyBytes -> R? in
            var result: R?
            try withRawValue(db, key: keyBytes) { value in result = try value.map(body) }
            return result
        }
    }

    /// Calls `body` with the value stored under `key` in place, or with nil if the key is absent;
    /// the buffer must not escape `body`. ``withValue(_:key:_:)`` without generics: a caller in
    /// another module pays no generic-metadata lookups per read (they showed in profiles of the
    /// cache-hit path), so the fast path reads through this.
    public func withRawValue(
        _ db: LMDBDatabase,
        key: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer?) throws -> Void
    ) throws {
        var k = MDB_val(key)
        var v = MDB_val()
        // > Values returned from the database are valid only until a subsequent
        // > update operation, or the end of the transaction.
        let rc = mdb_get(handle, db.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return try body(nil) }
        try check(rc, "mdb_get")
        try body(UnsafeRawBufferPointer(v))
    }

    /// Stores `value` under `key`, replacing any existing value unless `flags`
    /// contains ``LMDBPutFlags/noOverwrite``. Throws ``LMDBError/mapFull`` when the map is full.
    public func put(
        _ db: LMDBDatabase,
        key: some Collection<UInt8>,
        value: some Collection<UInt8>,
        flags: LMDBPutFlags = []
    ) throws {
        let txn = handle
        try withBytes(key) { keyBytes in
            try withBytes(value) { valueBytes in
                var k = MDB_val(keyBytes)
                var v = MDB_val(valueBytes)
                try check(mdb_put(txn, db.dbi, &k, &v, flags.rawValue), "mdb_put")
            }
        }
    }

    /// Deletes `key`; returns false if it was not present.
    @discardableResult
    public func delete(_ db: LMDBDatabase, key: some Collection<UInt8>) throws -> Bool {
        let txn = handle
        return try withBytes(key) { keyBytes in
            var k = MDB_val(keyBytes)
            // > This function will return MDB_NOTFOUND if the specified key/data pair is not in the database.
            let rc = mdb_del(txn, db.dbi, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try check(rc, "mdb_del")
            return true
        }
    }

    /// The number of entries in `db` as seen by this transaction.
    public func count(_ db: LMDBDatabase) throws -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(handle, db.dbi, &stat), "mdb_stat")
        return stat.ms_entries
    }

    /// Removes every entry of `db`, keeping the database itself.
    public func drop(_ db: LMDBDatabase) throws {
        // > del 0 to empty the DB, 1 to delete it from the environment and close the DB handle.
        try check(mdb_drop(handle, db.dbi, 0), "mdb_drop")
    }

    /// Calls `body` for each entry in key order, starting at the first key `>= key`
    /// (or the first entry), until `body` returns false. Buffers are valid only inside `body`.
    public func forEach(
        _ db: LMDBDatabase,
        startingAt key: [UInt8]? = nil,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try withCursor(db) { cursor in
            var k = MDB_val()
            var v = MDB_val()
            var rc: Int32
            if let key {
                rc = key.withUnsafeBytes { keyBytes in
                    k = MDB_val(keyBytes)
                    // > MDB_SET_RANGE: Position at first key greater than or equal to specified key.
                    return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
                }
            } else {
                rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
            }
            while rc == 0 {
                guard try body(UnsafeRawBufferPointer(k), UnsafeRawBufferPointer(v)) else { return }
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            if rc != MDB_NOTFOUND { throw LMDBError(code: rc, operation: "mdb_cursor_get") }
        }
    }

    /// Walks all entries in key order, deleting those for which `body` returns
    /// ``LMDBCursorAction/delete``, until ``LMDBCursorAction/stop`` or the end.
    /// Requires a write transaction. Buffers are valid only inside `body`.
    public func forEachDeleting(
        _ db: LMDBDatabase,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> LMDBCursorAction
    ) throws {
        try withCursor(db) { cursor in
            var k = MDB_val()
            var v = MDB_val()
            var rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
            while rc == 0 {
                switch try body(UnsafeRawBufferPointer(k), UnsafeRawBufferPointer(v)) {
                case .stop:
                    return
                case .keep:
                    break
                case .delete:
                    // > This does not invalidate the cursor, so operations such as MDB_NEXT can
                    // > still be used on it. Both MDB_NEXT and MDB_GET_CURRENT will return the
                    // > same record after this operation.
                    try check(mdb_cursor_del(cursor, 0), "mdb_cursor_del")
                }
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            if rc != MDB_NOTFOUND { throw LMDBError(code: rc, operation: "mdb_cursor_get") }
        }
    }

    private func withCursor<R>(_ db: LMDBDatabase, _ body: (OpaquePointer) throws -> R) throws -> R {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, db.dbi, &cursor), "mdb_cursor_open")
        // > A cursor in a read-only transaction must be closed explicitly, before or after its
        // > transaction ends.
        // > [mdb_cursor_close:] Its transaction must still be live if it is a write-transaction.
        defer { mdb_cursor_close(cursor) }
        return try body(cursor!)
    }
}

/// Transactions are confined to the thread running the closure they were lent to.
@available(*, unavailable)
extension LMDBTransaction: Sendable {}

extension MDB_val {
    /// Points at `bytes` without copying; LMDB only reads input keys and values.
    init(_ bytes: UnsafeRawBufferPointer) {
        self.init(mv_size: bytes.count, mv_data: UnsafeMutableRawPointer(mutating: bytes.baseAddress))
    }
}

extension UnsafeRawBufferPointer {
    init(_ value: MDB_val) {
        self.init(start: value.mv_data, count: value.mv_size)
    }
}

/// Calls `body` with the contiguous bytes of `bytes`, copying only if it has no contiguous storage.
private func withBytes<R>(_ bytes: some Collection<UInt8>, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
    if let result = try bytes.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    return try Array(bytes).withUnsafeBytes(body)
}
