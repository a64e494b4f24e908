import ArgumentParser
import GemcacheCore
import GemcacheStore

/// `gemcache purge`: deletes the entries matching every given option (or all of them) from a store,
/// also while proxies run on it, and prints how many.
struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Delete entries from a store (prints how many)."
    )

    @OptionGroup var store: StoreOptions
    @Option(help: "Only entries of this model, e.g. gemini-2.5-flash.")
    var model: String?
    @Option(help: "Only entries of this X-Gemcache-Namespace.")
    var namespace: String?
    @Option(help: "Only the entry with this key (the X-Gemcache-Key of a hit, 64 hex digits).")
    var key: String?
    @Option(name: .customLong("older-than"), help: "Only entries stored longer ago than this (3600, 90s, 30m, 24h, 7d).")
    var olderThan: String?
    @Flag(help: "Every entry.")
    var all = false
    @Flag(name: .customLong("dry-run"), help: "Count the entries that would be deleted; delete nothing.")
    var dryRun = false

    func run() async throws {
        let filter: PurgeFilter
        do {
            filter = try PurgeFilter(all: all, model: model, namespace: namespace, keyHex: key, olderThan: olderThan)
        } catch {
            fail(error.description)
        }
        let settings = await store.settings()
        let cache = await store.openStore(settings)
        let count: Int
        do {
            count = try await cache.purge(filter, dryRun: dryRun)
        } catch {
            await cache.close()
            fail("purge of \(settings.store.path) failed: \(error)")
        }
        await cache.close()
        print(dryRun ? "would delete \(count) \(count == 1 ? "entry" : "entries") (dry run)" : "deleted \(count) \(count == 1 ? "entry" : "entries")")
    }
}
