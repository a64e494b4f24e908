import Foundation
import GemcacheStore
public import Hummingbird
public import Logging
import NIOCore

/// Builds the proxy server from a configuration: opens the store, creates the upstream clients and
/// wires the routes. Tests call the same builder with a test configuration.
///
/// - Parameters:
///   - configuration: The loaded settings.
///   - environment: The process environment, for the secrets the configuration names.
///   - logger: The logger for the server and every request.
///   - upstream: How requests reach the upstream; nil for AsyncHTTPClient's connections (tests answer in
///     process). The Live relay's WebSocket always connects for real.
///   - onServerRunning: Called with the bound port once the server listens (port 0 picks a free one).
///   - clock: Unix time in milliseconds, for the store, the shared tier, the ledger and the proxy; nil
///     for the wall clock (tests advance their own). Last, so that a trailing closure is `onServerRunning`.
/// - Throws: ``StoreError`` when the store cannot be opened, ``ConfigurationError`` for unsupported settings.
public func buildApplication(
    configuration: ProxyConfiguration,
    environment: [String: String],
    logger: Logger,
    upstream transport: (any UpstreamTransport)? = nil,
    onServerRunning: (@Sendable (Int) async -> Void)? = nil,
    clock: (@Sendable () -> Int64)? = nil
) async throws -> some ApplicationProtocol {
    let clock = clock ?? CacheStore.wallClock
    func list(_ variable: String) -> [String] {
        (environment[variable] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
    // Replay calls no upstream and admits every client: it needs neither keys nor tokens (SPEC §11).
    let managed = configuration.auth.mode == .managed && configuration.cache.mode != .replay
    let upstreamKeys = managed ? list(configuration.auth.upstreamKeyEnv) : []
    let clientTokens = managed ? list(configuration.auth.clientTokensEnv) : []
    if managed && upstreamKeys.isEmpty {
        throw ConfigurationError(
            key: "auth.upstream_key_env",
            problem: "managed mode needs the upstream keys, comma-separated, in \(configuration.auth.upstreamKeyEnv)"
        )
    }
    if managed && clientTokens.isEmpty {
        throw ConfigurationError(
            key: "auth.client_tokens_env",
            problem: "managed mode needs the proxy tokens, comma-separated, in \(configuration.auth.clientTokensEnv)"
        )
    }
    let tls = try configuration.listen.tls?.serverConfiguration()
    let egress = try EgressProxy.resolve(setting: configuration.upstream.proxy, upstreamURL: configuration.upstream.url, environment: environment)
    let salt = environment[configuration.cache.scopeSaltEnv].flatMap { $0.isEmpty ? nil : Array($0.utf8) }
    let sharedSettings = try configuration.store.shared.map { url throws(ConfigurationError) in
        try SharedTierSettings(url: url, environment: environment)
    }
    var salvage: StartupSalvage?
    let store = try await CacheStore.open(configuration: configuration.store, scopeSalt: salt, logger: logger, now: clock) { movedAside in
        salvage = await StartupSalvage.run(movedAside: movedAside, configuration: configuration, environment: environment, logger: logger)
    }
    let shared = sharedSettings.map {
        SharedTier(settings: $0, logger: logger, now: clock) { key in store.noteDamagedRecord(key, in: "shared tier") }
    }
    if shared != nil && salt == nil && configuration.effectiveScope == .perKey {
        logger.warning(
            "store.shared with per-key scope and no \(configuration.cache.scopeSaltEnv): this instance's salt is its own, so other instances never answer its clients",
            metadata: ["cache.scope_salt_env": "\(configuration.cache.scopeSaltEnv)"]
        )
    }
    let keyPool = UpstreamKeyPool(keys: upstreamKeys) { fingerprint in store.increment(Counter.upstreamKey(fingerprint, .upstreamRequests)) }
    let upstream = UpstreamClient(configuration: configuration.upstream, keys: keyPool, egress: egress, transport: transport)
    let ledger = Ledger(store: store, shared: shared, salvage: salvage, configuration: configuration, now: clock)
    let access = AccessControl(configuration: configuration, clientTokens: clientTokens)
    let replay = configuration.cache.mode == .replay ? try await ReplayIndex(store: store) : nil
    if let replay { logger.info("replay mode: the upstream is never called", metadata: ["replay.recordings": "\(replay.count)"]) }
    let tracing = try RequestTracing.make(configuration: configuration.telemetry, logger: logger)
    let proxy = GeminiProxy(
        configuration: configuration,
        store: store,
        shared: shared,
        ledger: ledger,
        access: access,
        upstream: upstream,
        replay: replay,
        tracing: tracing?.tracing,
        now: clock
    )

    let router = Router(context: ProxyRequestContext.self)
    StatsController(store: store, ledger: ledger, tracing: tracing?.tracing).addRoutes(to: router)
    ExplainController(configuration: configuration, salt: store.scopeSalt).addRoutes(to: router)
    AdminController(store: store, shared: shared, adminToken: environment[configuration.admin.tokenEnv].flatMap { $0.isEmpty ? nil : $0 }).addRoutes(
        to: router
    )
    router.add(middleware: MetricsMiddleware(ledger: ledger))
    router.add(middleware: GeminiMiddleware(proxy: proxy))

    var app = Application(
        router: router,
        server: .gemcache(
            fastPath: FastPath(configuration: configuration, store: store, ledger: ledger, access: access, tracing: tracing?.tracing, now: clock),
            live: LiveRelay(access: access, upstream: upstream, logger: logger),
            tls: tls
        ),
        configuration: .init(address: .hostname(configuration.listen.host, port: configuration.listen.port), serverName: nil),
        onServerRunning: { channel in await onServerRunning?(channel.localAddress?.port ?? 0) },
        logger: logger
    )
    // Services stop in reverse order: the server first, then the upstream clients, the shared tier, the store,
    // the span exporter last (it flushes the spans of the last requests).
    // Durable commits leave nothing to sync but what a killed `deferred` process sharing the store left.
    if let tracing { app.addServices(tracing.service) }
    let syncInterval = configuration.store.durability == .deferred ? configuration.store.syncInterval : .zero
    app.addServices(StoreMaintenanceService(store: store, shared: shared, syncInterval: syncInterval, logger: logger))
    if let shared { app.addServices(SharedTierService(shared: shared, store: store)) }
    app.addServices(UpstreamClientService(client: upstream), LedgerService(ledger: ledger))
    return app
}
