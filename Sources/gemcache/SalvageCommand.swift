import ArgumentParser
import Foundation
import GemcacheCore
import GemcacheStore

/// `gemcache salvage FOLDER`: the intact entries of a moved-aside store (one liblmdb cannot open)
/// copied into a store (created if missing), also while proxies run on it; prints what it kept and
/// skipped. The rules are `gemcache import`'s (``StoreSalvage``).
struct SalvageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "salvage",
        abstract: "Copy every intact entry of a moved-aside store (FOLDER, or its data.mdb) into a store.",
        discussion: """
            Reads FOLDER's data file page by page, so it works when LMDB cannot open it, and keeps each \
            key's newest record that passes its checksum. Records written before records had checksums \
            (record versions 1 and 2) cannot be verified and are skipped.
            """
    )

    @OptionGroup var store: StoreOptions
    @Flag(
        name: .customLong("assume-shared"),
        help: "When the scope salts differ, take entries of unknown scope as shared (as gemcache import does)."
    )
    var assumeShared = false
    @Flag(help: "Print the counts as one JSON object instead of sentences.")
    var json = false
    @Argument(help: "The moved-aside store: its folder (<store>.corrupt-<time>) or its data.mdb.")
    var folder: String

    func run() async throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else { fail("no such file or folder: \(folder)") }
        let dataFile = isFolder.boolValue ? folder + "/data.mdb" : folder
        let settings = await store.settings()
        let resolved = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path }
        if resolved(isFolder.boolValue ? folder : URL(fileURLWithPath: folder).deletingLastPathComponent().path) == resolved(settings.store.path) {
            fail("\(folder) is the store itself (\(settings.store.path)): salvage reads a moved-aside store into another")
        }
        let cache = await store.openStore(settings, create: true)
        let summary: StoreSalvage.Summary
        do {
            summary = try await StoreSalvage.salvage(
                dataFile: dataFile,
                into: cache,
                maxEntrySize: settings.cache.maxEntrySize,
                saltFromEnvironment: store.saltFromEnvironment(settings),
                assumeShared: assumeShared
            )
        } catch {
            await cache.close()
            fail("salvage of \(folder) failed: \(error)")
        }
        await cache.close()
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print(Self.report(summary, path: settings.store.path))
        }
    }

    /// The result in a few lines.
    static func report(_ summary: StoreSalvage.Summary, path: String) -> String {
        var lines = ["kept \(summary.kept) entries in \(path); skipped \(summary.skipped)"]
        let reasons = [
            (summary.damaged, "damaged (the record fails its checksum or validation)"),
            (summary.unverifiable, "without a checksum (record versions 1 and 2, written before checksums), so unverifiable"),
            (summary.tooLarge, "over cache.max_entry_size"),
            (summary.otherSalt, "per-key entries (or of unknown scope) of another scope salt (see gemcache import)"),
            (summary.dropped, "did not fit (store.max_size)"),
        ]
        for (count, reason) in reasons where count > 0 { lines.append("  \(count) \(reason)") }
        if summary.salt == .adopted {
            lines.append("the store was empty and adopted the salvaged store's scope salt (restart proxies already running on it)")
        }
        lines.append(
            "read \(summary.pagesRead) pages; \(summary.damagedPages) pages and \(summary.damagedNodes) leaf nodes could not be read"
        )
        return lines.joined(separator: "\n")
    }
}
