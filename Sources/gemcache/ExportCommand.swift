import ArgumentParser
import Foundation
import GemcacheCore

/// `gemcache export FILE`: every entry of a store, with its key and expiry, as JSON Lines (the first
/// line carries the scope salt); also while proxies run on the store.
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every entry of a store to FILE as JSON Lines (- for standard output)."
    )

    @OptionGroup var store: StoreOptions
    @Argument(help: "The file to write (replaced if it exists), or - for standard output.")
    var file: String

    func run() async throws {
        let settings = await store.settings()
        let cache = await store.openStore(settings)
        var progress = ProgressLine("exported")
        let summary: StoreTransfer.ExportSummary
        do {
            let output = try Self.output(file)
            var salt = store.saltFromEnvironment(settings)
            if salt == nil { salt = try await cache.storedScopeSalt() }
            summary = try await StoreTransfer.export(cache, salt: salt, to: output) { progress.update($0) }
            try output.close()
        } catch {
            await cache.close()
            progress.finish()
            fail("export to \(file) failed: \(error)")
        }
        await cache.close()
        progress.finish()
        var result = "exported \(summary.exported) entries"
        if summary.unreadable > 0 { result += " (\(summary.unreadable) unreadable records left out)" }
        // With `-` the entries own standard output, so the result goes to standard error.
        (file == "-" ? FileHandle.standardError : FileHandle.standardOutput).write(Data((result + "\n").utf8))
    }

    private static func output(_ file: String) throws -> FileHandle {
        if file == "-" { return .standardOutput }
        guard FileManager.default.createFile(atPath: file, contents: nil) else {
            fail("cannot create \(file)")
        }
        return try FileHandle(forWritingTo: URL(fileURLWithPath: file))
    }
}
