import ArgumentParser
import Foundation
import GemcacheCore
import GemcacheStore

/// `gemcache export FILE`: every entry of a store, with its key and expiry, as JSON Lines (the first
/// line carries the scope salt); also while proxies run on the store. With `--fixtures`, the recorded
/// entries only, as fixtures for `serve --replay` (SPEC §11).
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every entry of a store to FILE as JSON Lines (- for standard output)."
    )

    @OptionGroup var store: StoreOptions
    @Flag(help: "Write only the recorded entries (cache.mode: record), with their canonical requests, as fixtures for serve --replay.")
    var fixtures = false
    @Argument(help: "The file to write (replaced if it exists), or - for standard output.")
    var file: String

    func run() async throws {
        let settings = await store.settings()
        let cache = await store.openStore(settings)
        if fixtures { return await exportFixtures(cache) }
        var progress = ProgressLine("exported")
        let summary: StoreTransfer.ExportSummary
        let output = file == "-" ? nil : PrivateFile(replacing: file)
        do {
            var salt = store.saltFromEnvironment(settings)
            if salt == nil { salt = try await cache.storedScopeSalt() }
            summary = try await StoreTransfer.export(cache, salt: salt, to: output?.handle ?? .standardOutput) { progress.update($0) }
            try output?.commit()
        } catch {
            output?.discard()
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
}

extension ExportCommand {
    /// `export --fixtures FILE`: the recorded entries, stable in order and form (``StoreFixtures``).
    private func exportFixtures(_ cache: CacheStore) async {
        let output = file == "-" ? nil : PrivateFile(replacing: file)
        let written: Int
        do {
            written = try await StoreFixtures.export(cache, to: output?.handle ?? .standardOutput)
            try output?.commit()
        } catch {
            output?.discard()
            await cache.close()
            fail("export to \(file) failed: \(error)")
        }
        await cache.close()
        (file == "-" ? FileHandle.standardError : FileHandle.standardOutput).write(Data("exported \(written) recorded entries\n".utf8))
    }
}

/// An export file as it is written: a new file that only its owner can read (0600: it holds the scope
/// salt and every tenant's answers), created beside `path` and renamed over it once complete. Nobody
/// else can have it open, whatever was at `path` before (a file of another mode or owner, a link),
/// and a failed export leaves `path` as it was.
struct PrivateFile {
    let path: String
    private let temporaryPath: String
    let handle: FileHandle

    /// Creates the file; exits with one line when it cannot.
    init(replacing path: String) {
        var template = Array((path + ".XXXXXX").utf8CString)
        // mkstemp creates the file with O_EXCL and mode 0600 (POSIX.1-2008).
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { fail("cannot create \(path): \(String(cString: strerror(errno)))") }
        self.path = path
        self.temporaryPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    /// Puts the complete file in place of `path`.
    func commit() throws {
        try handle.synchronize()
        try handle.close()
        guard rename(temporaryPath, path) == 0 else { throw RenameFailed(reason: String(cString: strerror(errno))) }
    }

    private struct RenameFailed: Error, CustomStringConvertible {
        let reason: String
        var description: String { "cannot put the file in place: \(reason)" }
    }

    /// Removes the incomplete file.
    func discard() {
        try? handle.close()
        unlink(temporaryPath)
    }
}
