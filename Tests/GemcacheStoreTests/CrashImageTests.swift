import Foundation
import GemcacheKey
import GemcacheTestSupport
import LMDBKit
import Synchronization
import Testing

@testable import GemcacheStore

/// A power cut during a storm of writes, simulated (issue 18 item 5): the data file is captured after
/// every commit of the write lane, and crash images are built from what the disk must hold at some
/// moment plus any subset of the pages written since. Every image must open (or, failing that, salvage)
/// with every answered entry intact, and no record in it may differ from what was stored.
///
/// The model, `store.durability: commit` (`MDB_NOMETASYNC`): commit j writes its data pages, syncs the
/// file, then writes its meta page unsynced, and only then are its writers answered. A crash after commit
/// j's sync and before commit j+1's finds on disk the file as it was after commit j-1 (whose meta page
/// j's sync carried), commit j's data pages, and any of the pages written since: commit j's meta page and
/// commit j+1's data pages. Every entry answered before commit j ran was in a commit up to j-1, so it
/// must be there. Pages are taken whole (a torn page is not modelled: LMDB, like the disks it runs on,
/// writes a meta page within one sector).
///
/// `CRASH_IMAGES_SCALE` (default 1) multiplies the writes and the subsets tried per commit, for the longer
/// run of `benchmarks/crashimages.sh`.
@Suite(.timeLimit(.minutes(10)))
struct CrashImageTests {
    static let pageSize = 4096
    static let metaPages: Set<Int> = [0, 1]
    static let scale = Int(ProcessInfo.processInfo.environment["CRASH_IMAGES_SCALE"] ?? "") ?? 1

    /// The pages each commit changed and the keys answered before it, recorded on the write lane.
    final class Journal: Sendable {
        struct Commit {
            var pages: [Int: [UInt8]]
            var answeredBefore: Set<CacheKey>
        }

        struct State {
            /// The file when recording began.
            let initial: [UInt8]
            /// The file after the last commit recorded.
            var image: [UInt8]
            var commits: [Commit] = []
            var answered: Set<CacheKey> = []
        }

        let file: String
        let state: Mutex<State>

        init(file: String) throws {
            self.file = file
            let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
            state = Mutex(State(initial: image, image: image))
        }

        /// Called after each commit: the pages that differ from the last image.
        func recordCommit() {
            let bytes = [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data())
            state.withLock { state in
                var changed: [Int: [UInt8]] = [:]
                let pageCount = (max(bytes.count, state.image.count) + pageSize - 1) / pageSize
                for page in 0..<pageCount {
                    let new = CrashImageTests.page(page, of: bytes)
                    if new != CrashImageTests.page(page, of: state.image) { changed[page] = new }
                }
                state.commits.append(Commit(pages: changed, answeredBefore: state.answered))
                state.image = bytes
            }
        }

        func answered(_ key: CacheKey) {
            state.withLock { _ = $0.answered.insert(key) }
        }
    }

    /// Page `index` of `bytes`, zero-filled past their end.
    static func page(_ index: Int, of bytes: [UInt8]) -> [UInt8] {
        let start = index * pageSize
        guard start < bytes.count else { return [UInt8](repeating: 0, count: pageSize) }
        let end = min(start + pageSize, bytes.count)
        return Array(bytes[start..<end]) + [UInt8](repeating: 0, count: pageSize - (end - start))
    }

    /// `image` with `pages` written over it (growing it as a file grows).
    static func applying(_ pages: some Sequence<(key: Int, value: [UInt8])>, to image: [UInt8]) -> [UInt8] {
        var image = image
        for (index, bytes) in pages {
            let start = index * pageSize
            if image.count < start + pageSize { image += [UInt8](repeating: 0, count: start + pageSize - image.count) }
            image.replaceSubrange(start..<(start + pageSize), with: bytes)
        }
        return image
    }

    static func entry(writer: Int, index: Int) -> (CacheKey, CacheEntry) {
        let large = index % 10 == 3
        let text = "answer \(writer)/\(index)" + (large ? String(repeating: " and more", count: 700) : "")
        let entry = RecordSamples.entry {
            $0.body = Array("{\"text\":\"\(text)\"}".utf8)
            $0.storedAt = StoreTransferTests.now + Int64(index)
            $0.expiresAt = StoreTransferTests.now + 86_400_000
            $0.scope = .perKey
        }
        return (StoreTransferTests.key("crash \(writer)/\(index)"), entry)
    }

    /// Opens the store in `folder`, or salvages its data file into `salvageFolder` when LMDB cannot open it.
    static func openOrSalvage(_ folder: String, into salvageFolder: String) async throws -> (CacheStore, salvaged: Bool) {
        var configuration = StoreConfiguration()
        configuration.path = folder
        configuration.maxSize = 64 << 20
        do {
            return (try await CacheStore.openForCommand(configuration: configuration, create: false), false)
        } catch {
            let target = try await StoreTransferTests.commandStore(salvageFolder)
            _ = try await StoreSalvage.salvage(
                dataFile: folder + "/data.mdb",
                into: target,
                maxEntrySize: 16 << 20,
                saltFromEnvironment: nil,
                assumeShared: false
            )
            return (target, true)
        }
    }

    @Test func everyCrashImageOfAWriteStormKeepsEveryAnsweredEntry() async throws {
        try await withTemporaryDirectory { dir in
            let store = try await StoreTransferTests.proxyStore(dir.path + "/store")
            let journal = try Journal(file: dir.path + "/store/data.mdb")
            store.observeCommits { journal.recordCommit() }

            // The storm: writers storing at once, so that commits group several answers.
            let writers = 8
            let perWriter = 30 * Self.scale
            var expected: [CacheKey: CacheEntry] = [:]
            for writer in 0..<writers {
                for index in 0..<perWriter {
                    let (key, entry) = Self.entry(writer: writer, index: index)
                    expected[key] = entry
                }
            }
            await withTaskGroup(of: Void.self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        for index in 0..<perWriter {
                            let (key, entry) = Self.entry(writer: writer, index: index)
                            if await store.store(entry, for: key) { journal.answered(key) }
                        }
                    }
                }
            }
            let counts = store.environment.writeCounts
            #expect(counts.syncs == counts.commits, "every commit synced before its answers: store.durability commit, the default")
            await store.close()
            let (initial, commits) = journal.state.withLock { ($0.initial, $0.commits) }
            #expect(commits.count > 10, "a storm of \(writers * perWriter) answers made \(commits.count) commits")
            #expect(commits.count < writers * perWriter, "group commit put several answers in one commit")

            var generator = SplitMix64(seed: 18)
            var (images, salvaged) = (0, 0)
            var synced = initial  // the file as of commit j-1
            for j in commits.indices {
                let written = commits[j].pages
                let base = Self.applying(written.filter { !Self.metaPages.contains($0.key) }, to: synced)
                let inFlight =
                    written.filter { Self.metaPages.contains($0.key) }.map { ($0.key, $0.value) }
                    + (j + 1 < commits.count ? commits[j + 1].pages.filter { !Self.metaPages.contains($0.key) }.map { ($0.key, $0.value) } : [])
                var subsets: [[(Int, [UInt8])]] = [[], inFlight]
                for _ in 0..<(3 * Self.scale) { subsets.append(inFlight.filter { _ in Bool.random(using: &generator) }) }
                for subset in subsets {
                    let image = Self.applying(subset.map { (key: $0.0, value: $0.1) }, to: base)
                    let folder = dir.path + "/image"
                    try? FileManager.default.removeItem(atPath: folder)
                    try? FileManager.default.removeItem(atPath: dir.path + "/salvaged")
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                    try Data(image).write(to: URL(fileURLWithPath: folder + "/data.mdb"))
                    let (opened, wasSalvaged) = try await Self.openOrSalvage(folder, into: dir.path + "/salvaged")
                    images += 1
                    if wasSalvaged { salvaged += 1 }
                    for key in commits[j].answeredBefore {
                        #expect(try opened.lookup(key) == expected[key], "commit \(j), an answered entry")
                    }
                    let batch = try await opened.entryBatch(after: nil, maxCount: .max, maxBytes: .max)
                    #expect(batch.unreadable == 0, "commit \(j): a record that does not read back whole")
                    for (key, entry) in batch.entries { #expect(expected[key] == entry, "commit \(j): a record unlike any stored") }
                    await opened.close()
                }
                synced = Self.applying(written, to: synced)
            }
            print("crash images: \(commits.count) commits of \(writers * perWriter) answers, \(images) images, \(salvaged) salvaged")
        }
    }
}
