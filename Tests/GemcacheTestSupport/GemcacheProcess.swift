public import Foundation

/// The built `gemcache` executable running as a child process, for tests that kill or restart it.
public final class GemcacheProcess: Sendable {
    private let process: Process
    /// Where the process writes its log. A file rather than a pipe: reading a pipe as it fills needs a
    /// `readabilityHandler`, whose dispatch source outlived its pipe and crashed the test process once.
    private let logPath: String
    /// The port the proxy reported it listens on.
    public let port: Int

    /// `.build/debug/gemcache` of this package (built by `swift build --build-tests`).
    public static var executablePath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/gemcache").path
    }

    /// Starts `gemcache serve` with `arguments` in `directory` and waits until it listens.
    public init(arguments: [String], directory: String, environment: [String: String] = [:]) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executablePath)
        process.arguments = ["serve", "--port", "0"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ["PATH": "/usr/bin:/bin", "LOG_LEVEL": "info"].merging(environment) { $1 }
        logPath = NSTemporaryDirectory() + "gemcache-process-" + UUID().uuidString + ".log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process.standardError = log
        process.standardOutput = log
        try process.run()
        self.process = process
        var found: Int?
        for _ in 0..<300 {
            if let match = Self.read(logPath).firstMatch(of: /listen\.port=(\d+)/) {
                found = Int(match.1)
                break
            }
            guard process.isRunning else { break }
            // Real time is the subject: a real process, whose log names its port once it listens.
            try await Task.sleep(for: .milliseconds(50))
        }
        guard let found else {
            process.terminate()
            throw ProcessError(output: Self.read(logPath))
        }
        self.port = found
    }

    deinit {
        try? FileManager.default.removeItem(atPath: logPath)
    }

    /// The process id (to read its memory use from `/proc`).
    public var processIdentifier: Int32 { process.processIdentifier }

    /// Whether the process has not exited.
    public var isRunning: Bool { process.isRunning }

    /// Everything the process wrote so far.
    public var log: String { Self.read(logPath) }

    private static func read(_ path: String) -> String {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) async -> Int32 {
        kill(process.processIdentifier, signal)
        // Real time is the subject: a real process, exiting.
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return process.terminationStatus
    }

    struct ProcessError: Error, CustomStringConvertible {
        let output: String
        var description: String { "gemcache did not start listening:\n\(output)" }
    }
}
