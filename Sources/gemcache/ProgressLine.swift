import Foundation
import GemcacheCore
import GemcacheStore

/// A progress line on standard error, rewritten in place at most ten times a second; silent when
/// standard error is not a terminal.
struct ProgressLine {
    private let enabled = isatty(STDERR_FILENO) == 1
    private let verb: String
    private var lastShown: ContinuousClock.Instant?

    init(_ verb: String) {
        self.verb = verb
    }

    /// Shows `progress`, unless the last update was under 100 ms ago.
    mutating func update(_ progress: StoreTransfer.Progress) {
        guard enabled else { return }
        let now = ContinuousClock.now
        if let lastShown, now - lastShown < .milliseconds(100) { return }
        lastShown = now
        var text = "\r\(verb) \(progress.entries) entries, \(Self.mebibytes(progress.bytes))"
        if let total = progress.totalBytes, total > 0 {
            text += " of \(Self.mebibytes(total)) (\(min(100, progress.bytes * 100 / total)) %)"
        }
        FileHandle.standardError.write(Data((text + "\u{1B}[K").utf8))
    }

    /// Clears the line (call before printing the result).
    func finish() {
        guard enabled, lastShown != nil else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    private static func mebibytes(_ bytes: Int) -> String {
        String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }
}
