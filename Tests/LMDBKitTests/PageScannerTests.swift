import Foundation
import GemcacheTestSupport
import LMDBKit
import Testing

/// ``LMDBPageScanner`` on stores made with LMDBKit, intact and damaged on purpose.
@Suite(.timeLimit(.minutes(1)))
struct PageScannerTests {
    @Test func anIntactStoreYieldsExactlyThePairsLMDBHolds() async throws {
        try await withStore { store in
            let scan = try Scan(store.dataFile)
            #expect(scan.report.pageSizeSource == .metaPage(0))
            #expect(scan.dataPairs == store.pairs)
            #expect(scan.otherPairsAreFreeListRecords)
            #expect(scan.report.pairsYielded == scan.pairs.count)
            #expect(scan.report.damagedPages == 0)
            #expect(scan.report.damagedNodes == 0)
            #expect(scan.report.databaseNodesSkipped > 0)  // the record of the database "main"
            #expect(scan.report.pagesRead == store.pageCount)
            // A multi-level tree, with values on overflow pages.
            let file = try store.contents()
            #expect(!file.pages(withFlags: PageLayout.branch).isEmpty)
            #expect(!file.pages(withFlags: PageLayout.overflow).isEmpty)
            #expect(scan.report.leafPages > file.pages(withFlags: PageLayout.branch).count)
        }
    }

    @Test func bothMetaPagesZeroed() async throws {
        try await withStore { store in
            var file = try store.contents()
            file.zero(pages: [0, 1])
            try file.write(to: store.dataFile)
            let refusal = #expect(throws: LMDBError.self) {
                try LMDBEnvironment(path: store.directory, mapSize: store.mapSize)
            }
            #expect(refusal?.isCorruption == true)
            let scan = try Scan(store.dataFile)
            #expect(scan.report.pageSizeSource == .systemPageSize)
            #expect(scan.report.pageSize == file.pageSize)
            #expect(scan.dataPairs == store.pairs)
            #expect(scan.report.damagedPages == 2)
        }
    }

    @Test func metaPageZeroZeroedTakesThePageSizeFromMetaPageOne() async throws {
        try await withStore { store in
            var file = try store.contents()
            file.zero(pages: [0])
            try file.write(to: store.dataFile)
            let scan = try Scan(store.dataFile)
            #expect(scan.report.pageSizeSource == .metaPage(1))
            #expect(scan.dataPairs == store.pairs)
        }
    }

    @Test func branchPagesZeroed() async throws {
        try await withStore { store in
            var file = try store.contents()
            let branches = file.pages(withFlags: PageLayout.branch)
            try #require(!branches.isEmpty)
            file.zero(pages: branches)
            try file.write(to: store.dataFile)
            let scan = try Scan(store.dataFile)
            #expect(scan.dataPairs == store.pairs)
            #expect(scan.report.damagedPages == branches.count)
        }
    }

    @Test func valuesWithFlippedBytesAreYieldedWithTheirBytes() async throws {
        try await withStore { store in
            var file = try store.contents()
            let small = Pair(key: key(7), value: value(7))
            let big = Pair(key: key(100), value: value(100))
            try #require(big.value.count > 2 * file.pageSize)
            let flippedSmall = file.flipEveryCopy(of: small.value, at: small.value.count / 2)
            let flippedBig = file.flipEveryCopy(of: big.value, at: big.value.count - 3)
            try #require(flippedSmall != small.value && flippedBig != big.value)
            try file.write(to: store.dataFile)

            let scan = try Scan(store.dataFile)
            var expected = store.pairs
            expected.subtract([small, big])
            expected.formUnion([Pair(key: small.key, value: flippedSmall), Pair(key: big.key, value: flippedBig)])
            #expect(scan.dataPairs == expected)
            #expect(scan.report.damagedNodes == 0)
        }
    }

    @Test func aLeafPageWithImpossibleBoundsIsSkippedAndCounted() async throws {
        try await withStore { store in
            let intact = try Scan(store.dataFile)
            var file = try store.contents()
            let leaf = try #require(file.pages(withFlags: PageLayout.leaf).first { file.nodeCount(page: $0) > 1 })
            let nodes = file.nodeCount(page: leaf)
            file.setUInt16(0xFFFF, page: leaf, offset: PageLayout.lowerOffset)
            file.setUInt16(0x0001, page: leaf, offset: PageLayout.upperOffset)
            try file.write(to: store.dataFile)

            let scan = try Scan(store.dataFile)
            #expect(scan.report.damagedPages == 1)
            #expect(scan.report.leafPages == intact.report.leafPages - 1)
            #expect(scan.nodesRead == intact.nodesRead - nodes)
            #expect(Set(scan.pairs).isSubset(of: Set(intact.pairs)))
        }
    }

    @Test func aNodeOffsetOutsideItsPageIsSkippedAndCounted() async throws {
        try await withStore { store in
            let intact = try Scan(store.dataFile)
            var file = try store.contents()
            let leaf = try #require(file.pages(withFlags: PageLayout.leaf).first { file.nodeCount(page: $0) > 1 })
            file.setUInt16(0xFFFF, page: leaf, offset: PageLayout.pageHeaderSize)  // mp_ptrs[0]
            try file.write(to: store.dataFile)

            let scan = try Scan(store.dataFile)
            #expect(scan.report.damagedNodes == 1)
            #expect(scan.report.leafPages == intact.report.leafPages)
            #expect(scan.nodesRead == intact.nodesRead - 1)
        }
    }

    @Test func anOverflowRunCutShortSkipsItsPairOnly() async throws {
        try await withStore { store in
            // The last commit stores one more big value, whose overflow run is among the file's last pages.
            let last = Pair(key: key(store.count), value: value(100_000))
            do {
                let env = try LMDBEnvironment(path: store.directory, mapSize: store.mapSize)
                defer { env.close() }
                let db = try env.openDatabase("main", create: false)
                try await env.write { try $0.put(db, key: last.key, value: last.value) }
            }
            var file = try store.contents()
            let run = try #require(
                file.pages(withFlags: PageLayout.overflow).first { file.overflowValue(page: $0).starts(with: last.value.prefix(64)) }
            )
            file.truncate(toBytes: (run + 1) * file.pageSize + file.pageSize / 2)
            try file.write(to: store.dataFile)

            let scan = try Scan(store.dataFile)
            #expect(!scan.pairs.contains { $0.key == last.key })
            #expect(scan.dataPairs == store.pairs)
            #expect(scan.report.damagedNodes > 0)
            #expect(scan.report.damagedPages == 1)  // the torn last page
        }
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func randomlyFlippedBytesNeverCrashTheScan(seed: UInt64) async throws {
        try await withStore { store in
            var file = try store.contents()
            var random = SplitMix64(seed: seed)
            for _ in 0..<2000 {
                file.bytes[Int(random.next() % UInt64(file.bytes.count))] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            }
            try file.write(to: store.dataFile)
            let scan = try Scan(store.dataFile)
            #expect(scan.report.pairsYielded == scan.pairs.count)
            #expect(scan.report.pagesRead <= store.pageCount)
        }
    }

    @Test func randomGarbageYieldsNothing() throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        var random = SplitMix64(seed: 42)
        let garbage = (0..<(64 << 10) + 100).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        try writeFile(garbage, to: path)
        let scan = try Scan(path)
        #expect(scan.pairs.isEmpty)
        #expect(scan.report.pairsYielded == 0)
        #expect(scan.report.leafPages == 0)
        #expect(scan.report.pageSizeSource == .systemPageSize)
        #expect(scan.report.damagedPages == scan.report.pagesRead + 1)  // every page, and the torn last one
    }

    @Test func anEmptyFileYieldsNothing() throws {
        let path = makeTemporaryPath()
        defer { removeDirectory(path) }
        try writeFile([], to: path)
        let scan = try Scan(path)
        #expect(scan.pairs.isEmpty)
        #expect(scan.report.pagesRead == 0)
        #expect(scan.report.damagedPages == 0)
    }

    @Test func aFileShorterThanAPageYieldsNothing() async throws {
        try await withStore { store in
            var file = try store.contents()
            file.truncate(toBytes: 100)  // the start of meta page 0, which states the page size
            try file.write(to: store.dataFile)
            let scan = try Scan(store.dataFile)
            #expect(scan.pairs.isEmpty)
            #expect(scan.report.pageSizeSource == .metaPage(0))
            #expect(scan.report.pagesRead == 0)
            #expect(scan.report.damagedPages == 1)
        }
    }

    @Test func aMissingFileThrows() throws {
        #expect(throws: LMDBError(code: ENOENT, operation: "")) {
            try LMDBPageScanner.scan(dataFile: makeTemporaryPath()) { _, _ in }
        }
    }

    /// A folder opens like a file and may state any size; it is refused, not read as 2^51 pages.
    @Test func aFolderInPlaceOfTheFileThrows() throws {
        let folder = makeTemporaryPath()
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(throws: LMDBError(code: EISDIR, operation: "")) {
            try LMDBPageScanner.scan(dataFile: folder) { _, _ in }
        }
    }
}

// MARK: - Fixtures

private struct Pair: Hashable {
    let key: [UInt8]
    let value: [UInt8]
}

/// Every 50th value is big enough for an overflow run of three pages; the others fit on a leaf.
/// The value names its key, so no two are alike.
private func value(_ i: Int) -> [UInt8] {
    let unit = bytes(i.isMultiple(of: 50) ? "big-\(i)|" : "value-\(i)|")
    let length = i.isMultiple(of: 50) ? 10_000 : 100
    return Array((0..<length).map { unit[$0 % unit.count] })
}

/// A closed store in a temporary directory: `count` pairs in the database "main", written in several
/// commits (so that the file also holds freed pages and free-list records).
private struct Store {
    let directory: String
    let count = 2000
    let mapSize = 64 << 20
    /// The pairs as LMDB reads them back.
    var pairs: Set<Pair> = []
    var pageCount = 0

    var dataFile: String { directory + "/data.mdb" }

    func contents() throws -> DataFile {
        try DataFile(path: dataFile, pageSize: Int(sysconf(Int32(_SC_PAGESIZE))))
    }
}

private func withStore(_ body: (Store) async throws -> Void) async throws {
    var store = Store(directory: makeTemporaryPath())
    defer { removeDirectory(store.directory) }
    do {
        let env = try LMDBEnvironment(path: store.directory, mapSize: store.mapSize)
        defer { env.close() }
        let db = try env.openDatabase("main", create: true)
        for batch in stride(from: 0, to: store.count, by: 500) {
            try await env.write { txn in
                for i in batch..<batch + 500 { try txn.put(db, key: key(i), value: value(i)) }
            }
        }
        store.pairs = try await env.read { txn in
            var pairs: Set<Pair> = []
            try txn.forEach(db) { key, value in
                pairs.insert(Pair(key: Array(key), value: Array(value)))
                return true
            }
            return pairs
        }
    }
    let file = try store.contents()
    store.pageCount = file.bytes.count / file.pageSize
    try #require(store.pairs.count == store.count)
    try await body(store)
}

/// What a scan of a file yielded, copied out.
private struct Scan {
    let pairs: [Pair]
    let report: LMDBPageScanner.Report

    init(_ path: String) throws {
        var pairs: [Pair] = []
        report = try LMDBPageScanner.scan(dataFile: path) { key, value in
            pairs.append(Pair(key: Array(key), value: Array(value)))
        }
        self.pairs = pairs
    }

    /// Leaf nodes read whole: pairs and database records.
    var nodesRead: Int { report.pairsYielded + report.databaseNodesSkipped }

    /// The pairs of the database "main": the keys made by `key(_:)`.
    var dataPairs: Set<Pair> { Set(pairs.filter { $0.key.starts(with: bytes("key-")) }) }

    /// Whether the other pairs have the shape of LMDB's free-list records: an 8-byte transaction ID, and
    /// page numbers (8 bytes each).
    var otherPairsAreFreeListRecords: Bool {
        pairs.filter { !$0.key.starts(with: bytes("key-")) }.allSatisfy { $0.key.count == 8 && $0.value.count.isMultiple(of: 8) }
    }
}

/// Where LMDB's page header keeps what the tests damage (`MDB_page` in mdb.c, 64-bit).
private enum PageLayout {
    static let pageHeaderSize = 16
    static let flagsOffset = 10
    static let lowerOffset = 12
    static let upperOffset = 14
    static let branch: UInt16 = 0x01  // P_BRANCH
    static let leaf: UInt16 = 0x02  // P_LEAF
    static let overflow: UInt16 = 0x04  // P_OVERFLOW
}

/// The bytes of a data file, to damage and write back.
private struct DataFile {
    var bytes: [UInt8]
    let pageSize: Int

    init(path: String, pageSize: Int) throws {
        self.bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        self.pageSize = pageSize
    }

    func write(to path: String) throws {
        try writeFile(bytes, to: path)
    }

    func uint16(page: Int, offset: Int) -> UInt16 {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: page * pageSize + offset, as: UInt16.self) }
    }

    mutating func setUInt16(_ value: UInt16, page: Int, offset: Int) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: page * pageSize + offset, as: UInt16.self) }
    }

    /// The pages whose header carries their own number (`mp_pgno`) and `flags` (`mp_flags`).
    func pages(withFlags flags: UInt16) -> [Int] {
        (0..<bytes.count / pageSize).filter { page in
            let number = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: page * pageSize, as: Int.self) }
            return number == page && uint16(page: page, offset: PageLayout.flagsOffset) == flags
        }
    }

    /// `NUMKEYS(p)`: the node offsets between the header and `mp_lower`.
    func nodeCount(page: Int) -> Int {
        (Int(uint16(page: page, offset: PageLayout.lowerOffset)) - PageLayout.pageHeaderSize) / 2
    }

    /// The bytes after the header of an overflow page, up to the file's end.
    func overflowValue(page: Int) -> ArraySlice<UInt8> {
        bytes[(page * pageSize + PageLayout.pageHeaderSize)...]
    }

    mutating func zero(pages: [Int]) {
        for page in pages { bytes.replaceSubrange(page * pageSize..<(page + 1) * pageSize, with: repeatElement(0, count: pageSize)) }
    }

    mutating func truncate(toBytes count: Int) {
        bytes.removeSubrange(count...)
    }

    /// Inverts the byte at `offset` in every copy of `value` in the file; returns the damaged value.
    mutating func flipEveryCopy(of value: [UInt8], at offset: Int) -> [UInt8] {
        var start = 0
        while let range = bytes[start...].firstRange(of: value) {
            bytes[range.lowerBound + offset] ^= 0xFF
            start = range.upperBound
        }
        var flipped = value
        flipped[offset] ^= 0xFF
        return flipped
    }
}

private func writeFile(_ bytes: [UInt8], to path: String) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent,
        withIntermediateDirectories: true
    )
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
