import Foundation
import PostgresNIO

/// How to reach the shared tier: `store.shared` (`postgres://[user@]host[:port][/database][?sslmode=…]`)
/// with the user and password from the environment as libpq takes them (`PGUSER`, `PGPASSWORD`).
/// The URL never holds the password (the settings loader refuses one).
struct SharedTierSettings: Sendable {
    let client: PostgresClient.Configuration
    /// `host:port/database`, for logs and stats (no user, no password).
    let displayName: String

    /// - Throws: ``ConfigurationError`` naming `store.shared` when the URL cannot be used.
    init(url raw: String, environment: [String: String]) throws(ConfigurationError) {
        func problem(_ text: String) -> ConfigurationError { ConfigurationError(key: "store.shared", problem: text) }
        guard let url = URLComponents(string: raw), let host = url.host, !host.isEmpty else {
            throw problem("expected postgres://[user@]host[:port][/database]")
        }
        let user = url.user ?? environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 } ?? "postgres"
        let database = String(url.path.drop(while: { $0 == "/" }))
        let tls: PostgresClient.Configuration.TLS
        switch url.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? "prefer" {
        case "disable": tls = .disable
        case "prefer": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-full": tls = .require(.makeClientConfiguration())
        case let mode: throw problem("sslmode \(mode) is not supported (disable, prefer, require or verify-full)")
        }
        let port = url.port ?? 5432
        var client = PostgresClient.Configuration(
            host: host, port: port, username: user, password: environment["PGPASSWORD"],
            database: database.isEmpty ? user : database, tls: tls
        )
        client.options.connectTimeout = SharedTier.operationTimeout
        // A cache may lose its last fraction of a second of writes in a server crash (never consistency):
        // commits do not wait for the WAL flush, which took a miss from 2.5 to 7.3 ms p50 here.
        client.options.additionalStartupParameters = [("synchronous_commit", "off")]
        client.options.maximumConnections = 16
        self.client = client
        self.displayName = "\(host):\(port)/\(database.isEmpty ? user : database)"
    }
}
