import CLMDB

/// One of the two meta pages of a data file (`MDB_meta` after a page header), read without liblmdb.
struct MetaPage {
    /// `mm_psize`.
    let pageSize: Int
    /// `mm_last_pg`: the last page the B-trees of this meta page use.
    let lastPage: UInt64
    /// `mm_txnid`: liblmdb uses the valid meta page with the larger one.
    let transaction: UInt64

    /// Meta page `number` (0 or 1) of `file`, if it is one: its own page number, the meta flag, LMDB's
    /// magic and data version, a possible page size. Page 1 sits at the offset of the page size it states.
    /// A page cut short after the page size reads as zeros.
    init?(_ file: ReadOnlyFile, number: Int) {
        var header = [UInt8](repeating: 0, count: Layout.transactionOffset + 8)
        func read(at offset: Int) -> MetaPage? {
            let available = min(header.count, file.size - offset)
            guard available >= Layout.pageSizeOffset + 4 else { return nil }
            for index in available..<header.count { header[index] = 0 }
            guard header.withUnsafeMutableBytes({ file.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<available]), at: offset) })
            else { return nil }
            return header.withUnsafeBytes { bytes in
                let pageSize = Int(bytes.value(UInt32.self, at: Layout.pageSizeOffset))
                guard bytes.value(Int.self, at: Layout.pgnoOffset) == number,
                    bytes.value(UInt16.self, at: Layout.flagsOffset) == Layout.meta,
                    bytes.value(UInt32.self, at: Layout.magicOffset) == Layout.magic,
                    bytes.value(UInt32.self, at: Layout.versionOffset) == Layout.dataVersion,
                    Layout.pageSizes.contains(pageSize), offset == number * pageSize
                else { return nil }
                return MetaPage(
                    pageSize: pageSize,
                    lastPage: bytes.value(UInt64.self, at: Layout.lastPageOffset),
                    transaction: bytes.value(UInt64.self, at: Layout.transactionOffset)
                )
            }
        }
        guard let meta = number == 0 ? read(at: 0) : Layout.pageSizes.lazy.compactMap({ read(at: $0) }).first else { return nil }
        self = meta
    }

    private init(pageSize: Int, lastPage: UInt64, transaction: UInt64) {
        self.pageSize = pageSize
        self.lastPage = lastPage
        self.transaction = transaction
    }

    /// Throws ``LMDBError/corrupted`` when the data file at `path` holds fewer pages than the meta page
    /// liblmdb would use says it has (a file cut short: by a full disk, a bad copy, a damaged file
    /// system). liblmdb maps the file and does not check this: its first read of a page past the end
    /// would stop the process with SIGBUS instead of failing the open. A missing or unreadable file,
    /// or one without a valid meta page, is left to liblmdb, which reads the meta pages without the map.
    static func requireWholeFile(_ path: String) throws(LMDBError) {
        guard let file = try? ReadOnlyFile(path: path) else { return }
        defer { file.close() }
        let metas = [MetaPage(file, number: 0), MetaPage(file, number: 1)].compactMap { $0 }
        // mdb_env_pick_meta: the larger transaction ID, meta page 0 on a tie.
        guard let used = metas.reduce(nil, { (best: MetaPage?, meta) in best.map { meta.transaction > $0.transaction ? meta : $0 } ?? meta })
        else { return }
        let pages = file.size / used.pageSize
        if used.lastPage >= UInt64(pages) {
            throw LMDBError(code: MDB_CORRUPTED, operation: "open \(path): \(pages) pages where its meta page uses \(used.lastPage + 1) (cut short)")
        }
    }
}
