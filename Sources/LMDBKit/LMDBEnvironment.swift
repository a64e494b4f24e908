import CLMDB
import Foundation
import NIOPosix
import Synchronization

/// An open LMDB environment: a directory holding `data.mdb` and `lock.mdb`.
///
/// Reads run on `NIOThreadPool.singleton` (or, with ``withReadTransaction(_:)``, on the calling
/// thread), writes on a single dedicated writer thread,
/// and every transaction lives only for the duration of one synchronous closure.
/// Open each path at most once per process, and call ``close()`` when done; `deinit`
/// closes silently if ``close()`` was not called.
//
// Why @unchecked Sendable is sound:
// - `env` is an immutable OpaquePointer; it is never reassigned, only freed exactly once,
//   after `state` says the environment is closed and no operation is in flight.
// - An MDB_env handle may be shared by threads; with MDB_NOTLS, reader slots belong to
//   MDB_txn objects rather than threads, so read transactions may begin on any thread.
// - Transactions (LMDBTransaction) are ~Copyable, non-Sendable and confined to synchronous
//   closures, so each begins and ends on one thread and never spans an `await`.
// - Writes go through `writerPool`, a 1-thread NIOThreadPool, so write transactions are
//   serialized on one OS thread as MDB_NOTLS requires of multiplexing applications: `write`'s
//   closures, and `onWriterThread`'s jobs through an LMDBWriter, which cannot leave its job.
//   (openDatabase writes on the caller's thread at startup; LMDB's writer lock covers it.)
// - `state` is protected by a Mutex; every other stored property is an immutable `let`.
public final class LMDBEnvironment: @unchecked Sendable {
    /// The environment directory.
    public let path: String
    /// Stale reader slots (left by dead processes) cleared by `mdb_reader_check` at open.
    public let staleReadersClearedAtOpen: Int

    private let env: OpaquePointer
    private let writerPool: NIOThreadPool
    private let unsyncedMarker: UnsyncedMarker
    /// Whether commits skip the sync (`MDB_NOSYNC`), under ``unsyncedMarker``.
    private let defersSync: Bool
    private let state = Mutex(State())
    private let counts = Mutex(Counts())

    private struct State {
        var isClosed = false
        var operationsInFlight = 0
        /// Read transactions reset after use (`mdb_txn_reset`), kept for ``withReadTransaction(_:)``
        /// to renew: no allocation and, with `MDB_NOTLS`, no reader-table lock (each keeps its slot,
        /// which holds no snapshot while reset). Aborted before the handle is closed.
        var idleReaders: [IdleReader] = []
    }

    /// A reset read transaction's handle, in ``State/idleReaders`` or in the one read that took it.
    private struct IdleReader: @unchecked Sendable {
        let handle: OpaquePointer
    }

    /// What this environment's handle has written and synced since it was opened.
    public struct Counts: Sendable, Equatable {
        /// Write transactions that committed changes (a commit that changed nothing writes nothing).
        public var commits = 0
        /// Disk syncs of the data file: one per commit unless `deferSync`, plus each forced sync.
        public var syncs = 0
    }

    /// The commits and syncs so far (this process's, not other processes' sharing the files).
    public var writeCounts: Counts { counts.withLock { $0 } }

    /// Opens (creating if needed) the environment in directory `path`.
    ///
    /// - Parameters:
    ///   - mapSize: maximum size of the database in bytes; `put` throws ``LMDBError/mapFull`` beyond it.
    ///   - maxDatabases: maximum number of named databases.
    ///   - maxReaders: size of the reader lock table (concurrent read transactions).
    ///   - deferSync: commit without the disk sync (`MDB_NOSYNC`), leaving it to ``syncDeferredWrites()``.
    ///     Commits still survive the process (`kill -9` included), not the machine: the ``UnsyncedMarker``
    ///     then makes the next open throw ``UnsyncedCommitsLost``.
    /// - Throws: ``UnsyncedCommitsLost`` when a process of an earlier boot left commits unsynced here
    ///   (whatever `deferSync` is now); otherwise an ``LMDBError``.
    public init(
        path: String,
        mapSize: Int,
        maxDatabases: Int = 8,
        maxReaders: Int = 512,
        deferSync: Bool = false
    ) throws {
        let marker = UnsyncedMarker(directory: path)
        if marker.wasLeftByEarlierBoot { throw UnsyncedCommitsLost(path: marker.path) }
        try MetaPage.requireWholeFile(path + "/data.mdb")
        // Only the owner may read what is stored (a cache holds answers to other people's prompts):
        // the folder is created 0700 and LMDB creates its files 0600 (modes of existing ones are kept).
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var created: OpaquePointer?
        try check(mdb_env_create(&created), "mdb_env_create")
        let env = created!
        var dead: Int32 = 0
        do {
            // > This function should be called after mdb_env_create() and before mdb_env_open().
            try check(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize")
            // > This function may only be called after mdb_env_create() and before mdb_env_open().
            try check(mdb_env_set_maxdbs(env, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, UInt32(maxReaders)), "mdb_env_set_maxreaders")
            // > MDB_NOTLS: Applications that multiplex many user threads over individual OS
            // > threads need this option.
            // > [MDB_NOMETASYNC] This optimization maintains database integrity, but a system
            // > crash may undo the last committed transaction.
            // MDB_WRITEMAP is deliberately never used.
            var flags = UInt32(MDB_NOTLS) | UInt32(MDB_NOMETASYNC)
            // > [MDB_NOSYNC] This optimization means a system crash can corrupt the database or lose
            // > the last transactions if buffers are not yet flushed to disk.
            if deferSync { flags |= UInt32(MDB_NOSYNC) }
            try check(mdb_env_open(env, path, flags, 0o600), "mdb_env_open")
            // > Stale reader transactions left behind by an aborted program cause further writes
            // > to grow the database quickly ... Fix: Check for stale readers periodically.
            try check(mdb_reader_check(env, &dead), "mdb_reader_check")
        } catch {
            // > If this function fails, mdb_env_close() must be called to discard the MDB_env handle.
            mdb_env_close(env)
            throw error
        }
        self.path = path
        self.env = env
        self.staleReadersClearedAtOpen = Int(dead)
        self.unsyncedMarker = marker
        self.defersSync = deferSync
        self.writerPool = NIOThreadPool(numberOfThreads: 1)
        self.writerPool.start()
    }

    deinit {
        close()
    }

    /// Closes the environment; idempotent.
    ///
    /// Later operations throw ``LMDBError/environmentClosed``; writes still queued on the
    /// writer lane fail with `CancellationError`. Transactions already running finish
    /// normally and the LMDB handle is released when the last one ends.
    public func close() {
        let (first, releaseNow) = state.withLock { state -> (Bool, Bool) in
            if state.isClosed { return (false, false) }
            state.isClosed = true
            return (true, state.operationsInFlight == 0)
        }
        guard first else { return }
        writerPool.shutdownGracefully { _ in }
        if releaseNow { closeHandle() }
    }

    /// Opens the named database, creating it when `create` is true. Call once per name at
    /// startup, before concurrent use, and never from inside a transaction closure.
    public func openDatabase(_ name: String, create: Bool) throws -> LMDBDatabase {
        try withWriteTransaction { txn in
            var dbi: MDB_dbi = 0
            // > The database handle will be private to the current transaction until the
            // > transaction is successfully committed.
            // > This function must not be called from multiple concurrent transactions in the same process.
            try check(
                mdb_dbi_open(txn.handle, name, create ? UInt32(MDB_CREATE) : 0, &dbi),
                "mdb_dbi_open(\(name))"
            )
            return LMDBDatabase(dbi: dbi)
        }
    }

    /// Runs `body` in a read-only transaction on `NIOThreadPool.singleton`.
    public func read<T: Sendable>(
        _ body: @escaping @Sendable (borrowing LMDBTransaction) throws -> T
    ) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive {
            try self.withReadTransaction(body)
        }
    }

    /// Runs `body` in a write transaction on the environment's single writer thread.
    /// Commits when `body` returns, aborts when it throws. A full map surfaces as
    /// ``LMDBError/mapFull`` from `put` or from the commit; nothing is written then.
    public func write<T: Sendable>(
        _ body: @escaping @Sendable (borrowing LMDBTransaction) throws -> T
    ) async throws -> T {
        try ensureOpen()
        do {
            return try await writerPool.runIfActive {
                try self.withWriteTransaction(body)
            }
        } catch is CancellationError where state.withLock({ $0.isClosed }) {
            throw LMDBError.environmentClosed
        }
    }

    /// Queues `job` for the environment's writer thread, behind the work already waiting there, and
    /// returns at once; `job` runs write transactions with ``LMDBWriter/write(_:)`` on that thread.
    ///
    /// For a caller that batches its own writes and answers its waiters from the writer thread: one
    /// thread switch there and one back to each waiter, where a task awaiting ``write(_:)`` adds a
    /// switch to that task and one from it. After ``close()`` the job still runs, on some other
    /// thread, and every write in it throws ``LMDBError/environmentClosed``.
    package func onWriterThread(_ job: @escaping @Sendable (borrowing LMDBWriter) -> Void) {
        // A pool that is shut down runs the job at once, on the caller's thread, and a job queued when
        // it shuts down on a Dispatch queue: the environment is closed by then, so the job never
        // reaches LMDB (`withOpenHandle`).
        writerPool.submit { _ in job(LMDBWriter(environment: self)) }
    }

    /// Makes every commit so far durable when some process (this one with `deferSync`, or one killed
    /// before it synced) may have left commits unsynced; otherwise only checks the ``UnsyncedMarker``.
    ///
    /// The bulk of the data is flushed while commits go on; a second sync, of what those commits wrote,
    /// holds LMDB's writer lock, so that the marker goes only once everything committed is on disk.
    public func syncDeferredWrites() async throws {
        let marker = unsyncedMarker
        try ensureOpen()
        guard marker.isPresent else { return }
        try await NIOThreadPool.singleton.runIfActive {
            try self.withOpenHandle { try check(mdb_env_sync(self.env, 1), "mdb_env_sync") }
        }
        try await writerPool.runIfActive {
            try self.withOpenHandle {
                var begun: OpaquePointer?
                try check(mdb_txn_begin(self.env, nil, 0, &begun), "mdb_txn_begin")
                let transaction = begun!
                defer { mdb_txn_abort(transaction) }
                // > Flush the data buffers to disk. ... [force:] If non-zero, force a synchronous flush.
                try check(mdb_env_sync(self.env, 1), "mdb_env_sync")
                self.counts.withLock { $0.syncs += 1 }
                try marker.remove()
            }
        }
    }

    /// Runs `body` in a read-only transaction on the calling thread.
    ///
    /// The caller's thread waits for the disk when a page is not in memory (page faults in the map):
    /// fine for a lookup of one key, as a cache's hot path does on its event loop; run scans and
    /// counts with ``read(_:)`` instead.
    public func withReadTransaction<T>(_ body: (borrowing LMDBTransaction) throws -> T) throws -> T {
        // ``withOpenHandle(_:)``'s bookkeeping, with the kept reader taken and returned under the same
        // two locks: every fast-path hit reads here, and two more locks would cost it more than the renew saves.
        let kept = try state.withLock { state throws(LMDBError) -> OpaquePointer? in
            if state.isClosed { throw LMDBError.environmentClosed }
            state.operationsInFlight += 1
            return state.idleReaders.popLast()?.handle
        }
        var handle: OpaquePointer?
        defer {
            let releaseNow = state.withLock { state in
                state.operationsInFlight -= 1
                if let handle { state.idleReaders.append(IdleReader(handle: handle)) }
                return state.isClosed && state.operationsInFlight == 0
            }
            if releaseNow { closeHandle() }
        }
        // > [mdb_txn_renew:] Renew a read-only transaction. This acquires a new reader lock for a
        // > transaction handle that had been released by mdb_txn_reset().
        if let kept, mdb_txn_renew(kept) == 0 {
            handle = kept
        } else {
            if let kept { mdb_txn_abort(kept) }
            var begun: OpaquePointer?
            // > If MDB_NOTLS is in use, [single-thread use] does not apply to read-only transactions.
            try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &begun), "mdb_txn_begin")
            handle = begun
        }
        // > [mdb_txn_reset:] Abort the read-only transaction like mdb_txn_abort(), but keep the
        // > transaction handle. Therefore mdb_txn_renew() may reuse the handle.
        defer { mdb_txn_reset(handle!) }
        return try body(LMDBTransaction(handle: handle!))
    }

    /// Clears reader slots left by dead processes; returns how many were cleared.
    public func checkReaders() throws -> Int {
        try withOpenHandle {
            var dead: Int32 = 0
            try check(mdb_reader_check(env, &dead), "mdb_reader_check")
            return Int(dead)
        }
    }

    /// The current memory map size in bytes (the maximum database size).
    public var mapSize: Int {
        get throws { try withOpenHandle { try info().me_mapsize } }
    }

    /// Bytes in use in the data file: pages up to the last used page, times the page size.
    public var usedBytes: Int {
        get throws {
            try withOpenHandle {
                var stat = MDB_stat()
                try check(mdb_env_stat(env, &stat), "mdb_env_stat")
                return (try info().me_last_pgno + 1) * Int(stat.ms_psize)
            }
        }
    }

    /// Bytes that the next write can use: the pages past the last used one up to the map size, plus the
    /// pages on LMDB's free list that it may reuse. LMDB reuses a page only two transactions after the
    /// one that freed it (and only once no reader still sees it), so pages freed by the last commit do
    /// not count; a few of the rest may still be held by readers.
    public var freeBytes: Int {
        get throws {
            try withOpenHandle {
                var stat = MDB_stat()
                try check(mdb_env_stat(env, &stat), "mdb_env_stat")
                let info = try info()
                // The free list is database 0; each value is a page list whose first word is its length.
                let listed = try withReadTransaction { txn in
                    var pages = 0
                    // Keys are the freeing transaction's id, in native byte order.
                    try txn.forEach(LMDBDatabase(dbi: 0)) { key, value in
                        guard key.count == MemoryLayout<Int>.size, key.loadUnaligned(as: Int.self) < info.me_last_txnid else { return false }
                        if value.count >= MemoryLayout<Int>.size { pages += value.loadUnaligned(as: Int.self) }
                        return true
                    }
                    return pages
                }
                let pageSize = Int(stat.ms_psize)
                return (info.me_mapsize / pageSize - info.me_last_pgno - 1 + listed) * pageSize
            }
        }
    }

    /// The number of entries in `db` in the latest committed state.
    public func entryCount(_ db: LMDBDatabase) throws -> Int {
        try withReadTransaction { try $0.count(db) }
    }

    // MARK: - Internals

    private func info() throws -> MDB_envinfo {
        var info = MDB_envinfo()
        try check(mdb_env_info(env, &info), "mdb_env_info")
        return info
    }

    /// A write transaction on the calling thread (the writer thread, or start-up's `openDatabase`),
    /// committed when `body` returns.
    fileprivate func withWriteTransaction<T>(_ body: (borrowing LMDBTransaction) throws -> T) throws -> T {
        try withOpenHandle {
            var begun: OpaquePointer?
            // > A transaction and its cursors must only be used by a single thread ...
            try check(mdb_txn_begin(env, nil, 0, &begun), "mdb_txn_begin")
            let handle = begun!
            let result: T
            do {
                // Holding the writer lock, before any page of this transaction can reach the file.
                if defersSync { try unsyncedMarker.ensurePresent() }
                result = try body(LMDBTransaction(handle: handle))
            } catch {
                // > Abandon all the operations of the transaction instead of saving them.
                mdb_txn_abort(handle)
                throw error
            }
            // > The transaction handle is freed. It and its cursors must not be used again
            // > after this call
            // This holds when commit fails too, so there is no abort after a failed commit.
            let id = mdb_txn_id(handle)
            try check(mdb_txn_commit(handle), "mdb_txn_commit")
            countCommit(id)
            return result
        }
    }

    /// Counts the commit of write transaction `id` if it wrote anything: LMDB then made it the last
    /// transaction, and (without `MDB_NOSYNC`) synced its data pages once in `mdb_txn_commit`.
    private func countCommit(_ id: Int) {
        guard let info = try? info(), info.me_last_txnid == id else { return }
        counts.withLock { counts in
            counts.commits += 1
            if !defersSync { counts.syncs += 1 }
        }
    }

    private func ensureOpen() throws {
        if state.withLock({ $0.isClosed }) { throw LMDBError.environmentClosed }
    }

    /// Runs `body` while holding the environment open, so `close()` cannot free it meanwhile.
    private func withOpenHandle<T>(_ body: () throws -> T) throws -> T {
        try state.withLock { state throws(LMDBError) in
            if state.isClosed { throw LMDBError.environmentClosed }
            state.operationsInFlight += 1
        }
        defer {
            let releaseNow = state.withLock { state in
                state.operationsInFlight -= 1
                return state.isClosed && state.operationsInFlight == 0
            }
            if releaseNow { closeHandle() }
        }
        return try body()
    }

    private func closeHandle() {
        // > Use mdb_txn_abort() to discard a reset handle, and to free its lock table slot if
        // > MDB_NOTLS is in use.
        for reader in state.withLock({ state in state.idleReaders }) { mdb_txn_abort(reader.handle) }
        // > Only a single thread may call this function. All transactions, databases, and
        // > cursors must already be closed before calling this function.
        mdb_env_close(env)
    }
}

/// The writer thread's write transactions, lent to a ``LMDBEnvironment/onWriterThread(_:)`` job for its
/// duration (it cannot outlive the job, so no other thread ever writes with it).
package struct LMDBWriter: ~Copyable {
    fileprivate let environment: LMDBEnvironment

    /// Runs `body` in a write transaction on the writer thread, as ``LMDBEnvironment/write(_:)`` does:
    /// commits when `body` returns, aborts when it throws.
    package func write<T>(_ body: (borrowing LMDBTransaction) throws -> T) throws -> T {
        try environment.withWriteTransaction(body)
    }
}
