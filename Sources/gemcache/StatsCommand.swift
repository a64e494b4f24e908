import ArgumentParser
import Foundation
import GemcacheCore
import GemcacheStore

/// `gemcache stats`: the stats of a running proxy (`--url`) or of a store read directly (`--data`,
/// default `store.path` of the settings), as a table or as the JSON of `/_gemcache/stats`.
struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Print the stats of a store or of a running proxy."
    )

    @Option(help: "Base URL of a running proxy, e.g. http://127.0.0.1:8080.")
    var url: String?
    @Option(help: "Directory of the LMDB store to read (store.path); safe while proxies run on it.")
    var data: String?
    @Option(help: "The YAML settings file, for store.path, limits.models and prices (default: proxy.conf, if present).")
    var config: String?
    @Option(help: "Count only from this time: a duration back from now (15m, 2h, 7d) or an RFC 3339 time.")
    var since: String?
    @Option(help: "Count only up to this time: a duration back from now or an RFC 3339 time (default: now).")
    var until: String?
    @Flag(help: "Print the JSON document of /_gemcache/stats instead of a table.")
    var json = false

    func validate() throws {
        if url != nil && data != nil { throw ValidationError("give --url or --data, not both") }
    }

    func run() async throws {
        let document: [String: Any]
        do {
            if let url {
                document = try await StatsReader.fromProxy(url: url, since: since, until: until)
            } else {
                let file = config ?? (FileManager.default.fileExists(atPath: "proxy.conf") ? "proxy.conf" : nil)
                let settings = try await ProxyConfiguration.load(
                    filePath: file,
                    environment: ProcessInfo.processInfo.environment,
                    overrides: data.map { ["store.path": $0] } ?? [:]
                )
                document = try await StatsReader.fromStore(configuration: settings, since: since, until: until)
            }
        } catch let error as any CustomStringConvertible & Error {
            fail(error.description)
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(StatsTable.render(document), terminator: "")
        }
    }
}
