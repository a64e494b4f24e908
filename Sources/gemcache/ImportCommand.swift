import ArgumentParser
import Foundation
import GemcacheCore
import GemcacheStore

/// `gemcache import FILE`: entries written by `gemcache export` into a store (created if missing),
/// also while proxies run on it. An empty store adopts the export's scope salt; with another salt the
/// per-key entries are skipped (their keys hold the other salt's tags), and so are entries of unknown
/// scope (stored by a gemcache before entries recorded it) unless `--assume-shared`.
///
/// A line that is not an entry a proxy may serve (malformed, a record that does not validate, a body
/// over `cache.max_entry_size`) is refused and named on standard error, the rest imported; the
/// command then exits with status 1.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Read entries written by gemcache export from FILE (- for standard input) into a store."
    )

    @OptionGroup var store: StoreOptions
    @Flag(
        name: .customLong("assume-shared"),
        help:
            "When the scope salts differ, import entries of unknown scope (stored before entries recorded it) as shared (right when the source only had shared entries: cache.scope shared, or managed mode)."
    )
    var assumeShared = false
    @Argument(help: "The file gemcache export wrote, or - for standard input.")
    var file: String

    func run() async throws {
        let input: FileHandle
        let size: Int?
        if file == "-" {
            (input, size) = (.standardInput, nil)
        } else {
            guard let handle = FileHandle(forReadingAtPath: file) else { fail("cannot read \(file)") }
            (input, size) = (handle, (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? nil)
        }
        let settings = await store.settings()
        let cache = await store.openStore(settings, create: true)
        var progress = ProgressLine("imported")
        let summary: StoreTransfer.ImportSummary
        do {
            summary = try await StoreTransfer.import(
                cache,
                from: input,
                totalBytes: size,
                maxEntrySize: settings.cache.maxEntrySize,
                saltFromEnvironment: store.saltFromEnvironment(settings),
                assumeShared: assumeShared,
                refused: { line, reason in
                    progress.finish()
                    FileHandle.standardError.write(Data("gemcache: line \(line) refused: \(reason)\n".utf8))
                },
                progress: { progress.update($0) }
            )
        } catch {
            await cache.close()
            progress.finish()
            fail("import of \(file) failed: \(error)")
        }
        await cache.close()
        progress.finish()
        print(Self.report(summary, path: settings.store.path))
        if summary.refused > 0 { throw ExitCode.failure }
    }

    /// The result in a line or two.
    static func report(_ summary: StoreTransfer.ImportSummary, path: String) -> String {
        var lines = ["imported \(summary.imported) entries into \(path)"]
        if summary.dropped > 0 { lines[0] += "; \(summary.dropped) did not fit (store.max_size)" }
        if summary.refused > 0 { lines[0] += "; refused \(summary.refused) lines (named above)" }
        switch summary.salt {
        case .matches: break
        case .adopted:
            lines.append("the store was empty and adopted the export's scope salt (restart proxies already running on it)")
        case .differs where summary.skipped > 0:
            lines.append(
                "skipped \(summary.skipped) per-key entries (or of unknown scope): the export's scope salt differs from this store's; "
                    + "import into an empty store or give both the same GEMCACHE_SCOPE_SALT (--assume-shared takes entries of unknown scope as shared)"
            )
        case .differs:
            lines.append("the export's scope salt differs from this store's; its entries were all shared and were imported")
        }
        return lines.joined(separator: "\n")
    }
}
