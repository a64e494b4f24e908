#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the key/value pairs of an LMDB data file (`data.mdb`) page by page, from its leaf pages,
/// without liblmdb and without walking the B-tree: it still finds the pairs of a file whose meta pages,
/// root or branch pages are gone, which liblmdb refuses to open. See <doc:ReadingDamagedFiles>.
///
/// The file is read with plain `pread`s (no memory map), so that a read error is a skipped page, not a
/// crash, and every offset and length found in the file is checked against its page and the file's size
/// before use: a damaged page or node is skipped and counted in the ``Report``.
///
/// What it yields is raw, and callers must judge it:
/// - every pair on every leaf page of every database in the file (named databases, and LMDB's free
///   list, whose records are an 8-byte transaction ID and a list of page numbers);
/// - pages freed by later transactions keep their old contents until reused, so a key may come with
///   older values, or values since deleted, and several times: callers must choose among duplicates
///   (e.g. the newest record);
/// - a value whose bytes were damaged is yielded with those bytes.
///
/// It reads the 64-bit layout (`pgno_t` is 8 bytes) in this machine's byte order, as LMDB writes it.
///
/// A scan may run in steps (``scan(pages:_:)``), so that a caller can do asynchronous work (store what
/// it found) between them; ``scan(dataFile:_:)`` reads the whole file in one.
public final class LMDBPageScanner {
    /// What a scan read, yielded and skipped.
    public struct Report: Sendable, Equatable {
        /// The page size the file was read with.
        public var pageSize: Int
        /// Where ``pageSize`` came from.
        public var pageSizeSource: PageSizeSource
        /// Whole pages read from the file.
        public var pagesRead = 0
        /// Pages that are readable leaf pages (`P_LEAF`).
        public var leafPages = 0
        /// Pairs passed to the callback.
        public var pairsYielded = 0
        /// Pages skipped: unreadable, torn (a last page cut short), headers that are no page type or do
        /// not carry their own page number, leaf pages whose bounds are impossible. A freed overflow run
        /// whose first page was reused also lands here (its other pages hold value bytes, not headers).
        public var damagedPages = 0
        /// Leaf nodes skipped: bounds outside the page, unknown flags, or an overflow run that is missing,
        /// not an overflow page, too short for the value or cut short by the end of the file.
        public var damagedNodes = 0
        /// Leaf nodes skipped because they hold a named database's record (`F_SUBDATA`) or a set of
        /// sorted duplicates (`F_DUPDATA`) rather than one value.
        public var databaseNodesSkipped = 0
    }

    /// Where a scan's page size came from.
    public enum PageSizeSource: Sendable, Equatable {
        /// The meta page with this number (0 or 1) states it.
        case metaPage(Int)
        /// No meta page is readable: the system's page size, the one LMDB uses when it creates a file.
        case systemPageSize
    }

    private var state: Scan

    /// What the scan read, yielded and skipped so far.
    public var report: Report { state.report }

    /// Whether every page has been read.
    public var isFinished: Bool { state.nextPage >= state.pageCount }

    /// Opens the LMDB data file at `path` (`data.mdb`) read-only and finds its page size.
    /// - Throws: an ``LMDBError`` with the `errno` when the file cannot be opened or sized.
    public init(dataFile path: String) throws(LMDBError) {
        state = Scan(file: try ReadOnlyFile(path: path))
    }

    deinit {
        state.file.close()
    }

    /// Reads up to `pageLimit` more pages and calls `body` with each key/value pair found on them (and in
    /// the overflow runs their nodes point to, wherever those are).
    ///
    /// Blocks on file reads: run it where blocking is allowed, in steps small enough not to matter.
    /// - Parameter body: called with each pair; the buffers are valid only inside the call.
    /// - Throws: whatever `body` throws.
    public func scan(pages pageLimit: Int = .max, _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void) rethrows {
        try state.run(pageLimit: pageLimit, body)
    }

    /// Reads every leaf page of the LMDB data file at `path` and calls `body` with each key/value pair.
    ///
    /// Blocks on file reads: run it on a thread that may block.
    /// - Parameters:
    ///   - path: the data file (`data.mdb`), opened read-only.
    ///   - body: called with each pair; the buffers are valid only inside the call.
    /// - Returns: the counts of what was read, yielded and skipped.
    /// - Throws: an ``LMDBError`` with the `errno` when the file cannot be opened or sized; whatever
    ///   `body` throws.
    public static func scan(
        dataFile path: String,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void
    ) throws -> Report {
        let scanner = try LMDBPageScanner(dataFile: path)
        try scanner.scan(body)
        return scanner.report
    }
}

// MARK: - Page layout

/// The on-disk layout, from LMDB 0.9.x's `mdb.c` (64-bit: `pgno_t` is `size_t`).
enum Layout {
    /// `PAGEHDRSZ`, `offsetof(MDB_page, mp_ptrs)`: `mp_pgno` (8 bytes), `mp_pad` (2), `mp_flags` (2),
    /// then `mp_lower` and `mp_upper` (2 each), or in their place `mp_pages` (4) on overflow pages.
    static let pageHeaderSize = 16
    static let pgnoOffset = 0
    static let flagsOffset = 10
    static let lowerOffset = 12
    static let upperOffset = 14
    static let overflowPagesOffset = 12

    // Page flags (`mp_flags`).
    static let branch: UInt16 = 0x01  // P_BRANCH
    static let leaf: UInt16 = 0x02  // P_LEAF
    static let overflow: UInt16 = 0x04  // P_OVERFLOW
    static let meta: UInt16 = 0x08  // P_META
    static let leaf2: UInt16 = 0x20  // P_LEAF2, MDB_DUPFIXED keys without nodes
    /// The flags a page written to the file has (P_DIRTY and the other in-memory flags are cleared).
    static let pageTypes: Set<UInt16> = [branch, leaf, overflow, meta, leaf | leaf2]

    /// `NODESIZE`, `offsetof(MDB_node, mn_data)`: `mn_lo`, `mn_hi` (the data size, low and high 16 bits),
    /// `mn_flags`, `mn_ksize` (2 bytes each); the key follows, then the data.
    static let nodeHeaderSize = 8
    // Node flags (`mn_flags`).
    static let bigData: UInt16 = 0x01  // F_BIGDATA: the data is the page number of an overflow run
    static let subData: UInt16 = 0x02  // F_SUBDATA: the data is a named database's MDB_db
    static let dupData: UInt16 = 0x04  // F_DUPDATA: the data holds sorted duplicates
    /// `MDB_MAXKEYSIZE`: "default 511" (lmdb.h, mdb_env_get_maxkeysize); `mdb_put` refuses empty keys.
    static let keySizes = 1...511

    /// `MDB_meta` follows the page header on meta pages 0 and 1: `mm_magic` (4 bytes), `mm_version` (4),
    /// `mm_address` (8), `mm_mapsize` (8), then `mm_dbs[0]` whose `md_pad` is `mm_psize` (4).
    static let magicOffset = pageHeaderSize
    static let versionOffset = pageHeaderSize + 4
    static let pageSizeOffset = pageHeaderSize + 24
    /// `mm_last_pg` and `mm_txnid` follow `mm_dbs[2]` (48 bytes each: `md_pad`, `md_flags`, `md_depth`,
    /// then four `pgno_t`/`size_t` counts and `md_root`).
    static let lastPageOffset = pageSizeOffset + 2 * 48
    static let transactionOffset = lastPageOffset + 8
    static let magic: UInt32 = 0xBEEF_C0DE  // MDB_MAGIC
    static let dataVersion: UInt32 = 1  // MDB_DATA_VERSION
    /// Page sizes a meta page may state: powers of two up to `MAX_PAGESIZE` (0x10000 with MDB_DEVEL).
    static let pageSizes = (9...16).map { 1 << $0 }
}

// MARK: - Scan

private struct Scan {
    let file: ReadOnlyFile
    let pageSize: Int
    let pageCount: Int
    var report: LMDBPageScanner.Report
    /// The page ``run(pageLimit:_:)`` reads next.
    var nextPage = 0
    /// Pages before this one may be the body of an overflow run: value bytes, no header.
    var overflowRunEnd = 0
    /// The page being read, reused.
    var page: [UInt8]
    /// The value of the overflow run being read, reused; never longer than the file.
    var overflowValue: [UInt8] = []

    init(file: ReadOnlyFile) {
        let (pageSize, source) = Self.pageSize(of: file)
        self.file = file
        self.pageSize = pageSize
        self.pageCount = file.size / pageSize
        self.page = [UInt8](repeating: 0, count: pageSize)
        self.report = LMDBPageScanner.Report(pageSize: pageSize, pageSizeSource: source)
        if file.size % pageSize != 0 { report.damagedPages += 1 }  // the torn last page
    }

    /// The page size meta page 0 states; else meta page 1's; else the system's page size.
    static func pageSize(of file: ReadOnlyFile) -> (Int, LMDBPageScanner.PageSizeSource) {
        if let meta = MetaPage(file, number: 0) { return (meta.pageSize, .metaPage(0)) }
        if let meta = MetaPage(file, number: 1) { return (meta.pageSize, .metaPage(1)) }
        return (Int(sysconf(Int32(_SC_PAGESIZE))), .systemPageSize)
    }

    mutating func run(pageLimit: Int, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) rethrows {
        let end = nextPage + min(pageLimit, pageCount - nextPage)
        while nextPage < end {
            let pgno = nextPage
            nextPage += 1
            guard file.read(into: &page, at: pgno * pageSize) else {
                report.damagedPages += 1
                continue
            }
            report.pagesRead += 1
            let page = page  // read while `self` is mutated
            try page.withUnsafeBytes { page in
                let flags = page.value(UInt16.self, at: Layout.flagsOffset)
                // Every page header carries its own number (mdb_page_alloc sets mp_pgno): a page of
                // garbage, or value bytes in an overflow run's body, almost never does.
                guard page.value(Int.self, at: Layout.pgnoOffset) == pgno, Layout.pageTypes.contains(flags) else {
                    if pgno >= overflowRunEnd { report.damagedPages += 1 }
                    return
                }
                switch flags {
                case Layout.leaf:
                    try readLeaf(page, body)
                case Layout.overflow:
                    overflowRunEnd = max(overflowRunEnd, pgno + Int(page.value(UInt32.self, at: Layout.overflowPagesOffset)))
                default:
                    break  // branch, meta and LEAF2 pages hold no pairs
                }
            }
        }
    }

    /// Yields the pairs of a leaf page.
    mutating func readLeaf(_ page: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) rethrows {
        let lower = Int(page.value(UInt16.self, at: Layout.lowerOffset))
        let upper = Int(page.value(UInt16.self, at: Layout.upperOffset))
        // mp_lower ends the node offsets (mp_ptrs), mp_upper starts the nodes, which run to the page's end.
        guard lower >= Layout.pageHeaderSize, lower.isMultiple(of: 2), lower <= upper, upper <= pageSize else {
            report.damagedPages += 1
            return
        }
        report.leafPages += 1
        for index in 0..<(lower - Layout.pageHeaderSize) / 2 {
            // NODEPTR(p, i): the node at mp_ptrs[i] bytes from the page's start.
            let node = Int(page.value(UInt16.self, at: Layout.pageHeaderSize + 2 * index))
            guard node >= upper, node + Layout.nodeHeaderSize <= pageSize else {
                report.damagedNodes += 1
                continue
            }
            // NODEDSZ(node): mn_lo | mn_hi << 16.
            let dataSize = Int(page.value(UInt16.self, at: node)) | Int(page.value(UInt16.self, at: node + 2)) << 16
            let nodeFlags = page.value(UInt16.self, at: node + 4)
            let keySize = Int(page.value(UInt16.self, at: node + 6))
            let keyStart = node + Layout.nodeHeaderSize
            let dataStart = keyStart + keySize
            guard Layout.keySizes.contains(keySize), dataStart <= pageSize else {
                report.damagedNodes += 1
                continue
            }
            let key = UnsafeRawBufferPointer(rebasing: page[keyStart..<dataStart])
            switch nodeFlags {
            case 0:
                guard dataStart + dataSize <= pageSize else {
                    report.damagedNodes += 1
                    continue
                }
                try body(key, UnsafeRawBufferPointer(rebasing: page[dataStart..<dataStart + dataSize]))
            case Layout.bigData:
                guard dataStart + 8 <= pageSize, readOverflowRun(first: page.value(UInt64.self, at: dataStart), valueSize: dataSize) else {
                    report.damagedNodes += 1
                    continue
                }
                try overflowValue.withUnsafeBytes { try body(key, UnsafeRawBufferPointer(rebasing: $0[0..<dataSize])) }
            case Layout.subData, Layout.dupData, Layout.subData | Layout.dupData:
                report.databaseNodesSkipped += 1
                continue
            default:
                report.damagedNodes += 1
                continue
            }
            report.pairsYielded += 1
        }
    }

    /// Reads the value of `valueSize` bytes stored in the overflow run starting at page `first` into
    /// ``overflowValue``; false when the run is not there whole.
    mutating func readOverflowRun(first: UInt64, valueSize: Int) -> Bool {
        // Pages 0 and 1 are the meta pages.
        guard first >= 2, first < UInt64(pageCount) else { return false }
        let file = file  // read while `overflowValue` is written
        let start = Int(first) * pageSize
        var header = [UInt8](repeating: 0, count: Layout.pageHeaderSize)
        guard file.read(into: &header, at: start) else { return false }
        let isRun = header.withUnsafeBytes { header in
            // OVPAGES(size, psize): the run's mp_pages pages hold the header and the value.
            header.value(Int.self, at: Layout.pgnoOffset) == Int(first)
                && header.value(UInt16.self, at: Layout.flagsOffset) == Layout.overflow
                && Layout.pageHeaderSize + valueSize <= Int(header.value(UInt32.self, at: Layout.overflowPagesOffset)) * pageSize
        }
        let valueStart = start + Layout.pageHeaderSize
        guard isRun, valueStart + valueSize <= file.size else { return false }
        if overflowValue.count < valueSize { overflowValue = [UInt8](repeating: 0, count: valueSize) }
        return overflowValue.withUnsafeMutableBytes { file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<valueSize]), at: valueStart) }
    }
}

// MARK: - File

/// A file opened read-only, read with `pread`.
struct ReadOnlyFile {
    let descriptor: Int32
    /// The size in bytes when opened.
    let size: Int

    init(path: String) throws(LMDBError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw LMDBError(code: errno, operation: "open(\(path))") }
        // A folder opens too, and may state any size (a hash-indexed one on ext4, 2^63 - 1): a read
        // tells it from a file before its size counts.
        var first: UInt8 = 0
        let end = pread(descriptor, &first, 1, 0) < 0 ? -1 : lseek(descriptor, 0, SEEK_END)
        guard end >= 0 else {
            let failure = errno
            closeDescriptor(descriptor)
            throw LMDBError(code: failure, operation: "read(\(path))")
        }
        self.descriptor = descriptor
        self.size = Int(end)
    }

    func close() {
        closeDescriptor(descriptor)
    }

    /// Fills `buffer` from `offset`; false on a read error or when the file ends first.
    func read(into buffer: inout [UInt8], at offset: Int) -> Bool {
        buffer.withUnsafeMutableBytes { read(into: $0, at: offset) }
    }

    /// Fills `buffer` from `offset`; false on a read error or when the file ends first.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        var done = 0
        while done < buffer.count {
            let count = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            done += count
        }
        return true
    }
}

/// The C library's `close`, which ``ReadOnlyFile/close()`` hides inside the type.
private func closeDescriptor(_ descriptor: Int32) {
    _ = close(descriptor)
}

extension UnsafeRawBufferPointer {
    /// The integer at `offset`, in this machine's byte order; `offset` need not be aligned (offsets
    /// come from the file) but must leave room for it.
    func value<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        loadUnaligned(fromByteOffset: offset, as: T.self)
    }
}
