import Foundation
public import GemcacheStore
import Logging

/// `store.on_corrupt: salvage` (SPEC §9): after a store that cannot be opened was moved aside, start-up
/// runs `gemcache salvage` on it in a child process, so that a data file damaged in ways the page
/// scanner does not survive cannot stop the server, and waits for it before it opens the new store (which
/// then has the salvaged store's scope salt, when it adopted it). The outcome is reported in the log,
/// `/healthz` and the stats (`store_salvage`).
public struct StartupSalvage: Sendable {
    /// The moved-aside folder the entries came from.
    public let from: String
    /// What the salvage kept and skipped; nil when it failed.
    public let summary: StoreSalvage.Summary?
    /// How the child ended, when it failed (its own error line went to this process's standard error).
    public let failure: String?

    /// As `/healthz` and the stats show it.
    var json: [String: Any] {
        guard let summary else { return ["from": from, "state": "failed", "error": failure ?? ""] }
        return [
            "from": from,
            "state": "done",
            "kept": summary.kept,
            "skipped": summary.skipped,
            "damaged": summary.damaged,
            "unverifiable": summary.unverifiable,
            "too_large": summary.tooLarge,
            "other_salt": summary.otherSalt,
            "dropped": summary.dropped,
        ]
    }

    /// Runs `gemcache salvage MOVED-ASIDE --data store.path --json` with this process's executable and
    /// environment, the store and cache settings it needs passed as `GEMCACHE_*` variables (the child may
    /// not see the settings file this process read), and reads its JSON report.
    static func run(movedAside: String, configuration: ProxyConfiguration, environment: [String: String], logger: Logger) async -> StartupSalvage {
        logger.info("salvaging the moved-aside store in a child process", metadata: ["store.moved_to": "\(movedAside)"])
        var childEnvironment = environment
        for (key, value) in [
            ("store.max_size", "\(configuration.store.maxSize)"),
            ("store.durability", configuration.store.durability.rawValue),
            ("cache.max_entry_size", "\(configuration.cache.maxEntrySize)"),
            ("cache.scope_salt_env", configuration.cache.scopeSaltEnv),
        ] {
            childEnvironment[ProxyConfiguration.environmentName(key)] = value
        }
        let process = Process()
        process.executableURL = Bundle.main.executableURL
        process.arguments = ["salvage", movedAside, "--data", configuration.store.path, "--json"]
        process.environment = childEnvironment
        let output = Pipe()
        process.standardOutput = output  // one line; standard error stays this process's own
        let (exits, exited) = AsyncStream.makeStream(of: Process.self)
        process.terminationHandler = { process in
            exited.yield(process)
            exited.finish()
        }
        let outcome: StartupSalvage
        do {
            try process.run()
            for await _ in exits {}
            let report = output.fileHandleForReading.readDataToEndOfFile()
            if process.terminationReason == .exit, process.terminationStatus == 0,
                let summary = try? JSONDecoder().decode(StoreSalvage.Summary.self, from: report)
            {
                outcome = StartupSalvage(from: movedAside, summary: summary, failure: nil)
            } else {
                let how = process.terminationReason == .exit ? "exited with status" : "was killed by signal"
                outcome = StartupSalvage(from: movedAside, summary: nil, failure: "gemcache salvage \(how) \(process.terminationStatus)")
            }
        } catch {
            outcome = StartupSalvage(from: movedAside, summary: nil, failure: "gemcache salvage could not start: \(error)")
        }
        if let summary = outcome.summary {
            logger.notice(
                "salvaged the moved-aside store",
                metadata: [
                    "store.moved_to": "\(movedAside)", "salvage.kept": "\(summary.kept)", "salvage.skipped": "\(summary.skipped)",
                    "salvage.damaged": "\(summary.damaged)", "salvage.unverifiable": "\(summary.unverifiable)",
                ]
            )
        } else {
            logger.error(
                "salvage of the moved-aside store failed; starting empty",
                metadata: ["store.moved_to": "\(movedAside)", "salvage.error": "\(outcome.failure ?? "")"]
            )
        }
        return outcome
    }
}
