public import Foundation
import Synchronization

/// The built `gemcache` executable running as a child process, for tests that kill or restart it.
public final class GemcacheProcess: Sendable {
    private let process: Process
    private let output = OutputLog()
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
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        let output = self.output
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { output.text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
        }
        try process.run()
        self.process = process
        var found: Int?
        for _ in 0..<300 {
            if let match = output.text.withLock({ $0.firstMatch(of: /listen\.port=(\d+)/) }) {
                found = Int(match.1)
                break
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        guard let found else {
            process.terminate()
            throw ProcessError(output: output.text.withLock { $0 })
        }
        self.port = found
    }

    /// Everything the process wrote so far.
    public var log: String { output.text.withLock { $0 } }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) async -> Int32 {
        kill(process.processIdentifier, signal)
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return process.terminationStatus
    }

    private final class OutputLog: Sendable {
        let text = Mutex("")
    }

    struct ProcessError: Error, CustomStringConvertible {
        let output: String
        var description: String { "gemcache did not start listening:\n\(output)" }
    }
}
