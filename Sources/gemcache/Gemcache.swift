import ArgumentParser
import Foundation
import GemcacheCore
import GemcacheStore
import GeminiMock
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The `gemcache` command.
@main
struct Gemcache: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A caching reverse proxy for the Google Gemini API.",
        subcommands: [
            Serve.self, MockUpstream.self, StatsCommand.self, PurgeCommand.self, ExportCommand.self, ImportCommand.self, SalvageCommand.self,
        ],
        defaultSubcommand: Serve.self
    )
}

/// Sets up logging once for the process, honouring `LOG_LEVEL`.
func bootstrapLogging(label: String) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        return handler
    }
    return Logger(label: label)
}

/// Prints one line to standard error and exits with status 1.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("gemcache: \(message)\n".utf8))
    exit(1)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy.")

    @Option(help: "The YAML settings file (default: proxy.conf in the working directory, if present).")
    var config: String?
    @Option(help: "Address to listen on (listen.host).")
    var host: String?
    @Option(help: "Port to listen on (listen.port).")
    var port: Int?
    @Option(help: "Base URL of the Gemini API (upstream.url).")
    var upstream: String?
    @Option(help: "Directory of the LMDB store (store.path).")
    var data: String?
    @Option(help: "Serve the fixtures in FILE (written by export --fixtures) in replay mode, from a temporary store.")
    var replay: String?

    func run() async throws {
        // Swift concurrency's jobs run on NIO's event loops, the threads that the server and
        // AsyncHTTPClient use anyway: a miss no longer hops between two thread pools (benchmarks/RESULTS.md §2).
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        var overrides: [String: String] = [:]
        overrides["listen.host"] = host
        overrides["listen.port"] = port.map(String.init)
        overrides["upstream.url"] = upstream
        overrides["store.path"] = data
        let fixtureStore = replay.map { _ in temporaryDirectory() }
        defer { if let fixtureStore { try? FileManager.default.removeItem(atPath: fixtureStore) } }
        if let fixtureStore {
            overrides["store.path"] = fixtureStore
            overrides["cache.mode"] = "replay"
        }
        let environment = ProcessInfo.processInfo.environment
        let settings: ProxyConfiguration
        do {
            let file = config ?? (FileManager.default.fileExists(atPath: "proxy.conf") ? "proxy.conf" : nil)
            settings = try await ProxyConfiguration.load(filePath: file, environment: environment, overrides: overrides)
        } catch {
            fail(error.description)
        }
        if let replay { await loadFixtures(replay, settings: settings) }
        let logger = bootstrapLogging(label: "gemcache")
        let app: any ApplicationProtocol
        do {
            app = try await buildApplication(configuration: settings, environment: environment, logger: logger) { port in
                logger.info(
                    "gemcache listening",
                    metadata: ["listen.host": "\(settings.listen.host)", "listen.port": "\(port)", "upstream.url": "\(settings.upstream.url)"]
                )
            }
        } catch let error as ConfigurationError {
            fail(error.description)
        } catch let error as StoreError {
            fail(error.description)
        }
        // SIGTERM and SIGINT stop accepting, let the requests in flight finish for at most the upstream
        // timeout (every upstream exchange ends by then) plus the time to store them, then cancel what
        // is left; the services stop in reverse order, the store last.
        var group = ServiceGroupConfiguration(services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = settings.upstream.timeout + .seconds(5)
        try await ServiceGroup(configuration: group).run()
    }
}

extension Serve {
    /// Loads the fixture file into the (new, temporary) store of `settings`; exits with one line naming
    /// the file, and the line, when it cannot.
    private func loadFixtures(_ file: String, settings: ProxyConfiguration) async {
        func stop(_ message: String) -> Never {
            try? FileManager.default.removeItem(atPath: settings.store.path)
            fail(message)
        }
        guard let input = FileHandle(forReadingAtPath: file) else { stop("cannot read the fixture file \(file)") }
        let store: CacheStore
        do {
            store = try await CacheStore.openForCommand(configuration: settings.store, create: true)
        } catch {
            stop(error.description)
        }
        do {
            _ = try await StoreFixtures.load(store, from: input, maxEntrySize: settings.cache.maxEntrySize)
        } catch {
            await store.close()
            stop("\(file): \(error)")
        }
        await store.close()
    }

    /// A new private folder for the fixtures' store, removed when the proxy stops.
    private func temporaryDirectory() -> String {
        var template = Array((NSTemporaryDirectory() + "gemcache-replay-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            fail("cannot create a temporary folder for the fixtures: \(String(cString: strerror(errno)))")
        }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

struct MockUpstream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-upstream",
        abstract: "Run a fake Gemini API for demos, tests and benchmarks."
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port).")
    var port = 8090
    @Option(name: .customLong("latency-ms"), help: "Milliseconds added before every answer.")
    var latencyMs = 0
    @Option(name: .customLong("valid-keys"), help: "Comma-separated API keys to accept (default: any non-empty key).")
    var validKeys: String?

    func run() async throws {
        _ = bootstrapLogging(label: "gemcache.mock")
        let keys = validKeys.map { Set($0.split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) }) }
        let configuration = MockUpstreamConfiguration(host: host, port: port, latency: .milliseconds(latencyMs), validKeys: keys)
        try await buildMockUpstream(configuration: configuration).runService()
    }
}
