import Foundation
import GemcacheStore
import NIOSSL
import PostgresNIO

/// How to reach the shared tier: `store.shared` (`postgres://[user@]host[:port][/database][?sslmode=…]`)
/// with the user and password from the environment as libpq takes them (`PGUSER`, `PGPASSWORD`).
/// The URL never holds the password (the settings loader refuses one).
struct SharedTierSettings: Sendable {
    let client: PostgresClient.Configuration
    /// `host:port/database`, for logs and stats (no user, no password).
    let displayName: String
    /// How the connection is protected: the URL's `sslmode`, or by default `verify-full` for any host
    /// but loopback (`prefer` there).
    let sslMode: SSLMode

    /// libpq's `sslmode` values that PostgresNIO can honour.
    enum SSLMode: String, Sendable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    /// - Throws: ``ConfigurationError`` naming `store.shared` when the URL cannot be used.
    init(url raw: String, environment: [String: String]) throws(ConfigurationError) {
        func problem(_ text: String) -> ConfigurationError { ConfigurationError(key: "store.shared", problem: text) }
        guard let url = URLComponents(string: raw), let host = url.host, !host.isEmpty else {
            throw problem("expected postgres://[user@]host[:port][/database]")
        }
        let user = url.user ?? environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 } ?? "postgres"
        let database = String(url.path.drop(while: { $0 == "/" }))
        // Without an sslmode, a database on another host must prove it is that host: the cache's answers
        // and its counters cross the network (SPEC §8). The explicit modes mean what they mean to libpq.
        let mode = url.queryItems?.first(where: { $0.name == "sslmode" })?.value ?? (Self.isLoopback(host) ? "prefer" : "verify-full")
        guard let sslMode = SSLMode(rawValue: mode) else {
            throw problem("sslmode \(mode) is not supported (disable, prefer, require, verify-ca or verify-full)")
        }
        self.sslMode = sslMode
        let tls: PostgresClient.Configuration.TLS =
            switch sslMode {
            case .disable: .disable
            case .prefer: .prefer(Self.tls(verifying: .none))
            case .require: .require(Self.tls(verifying: .none))
            case .verifyCA: .require(Self.tls(verifying: .noHostnameVerification))
            case .verifyFull: .require(Self.tls(verifying: .fullVerification))
            }
        let port = url.port ?? 5432
        var client = PostgresClient.Configuration(
            host: host,
            port: port,
            username: user,
            password: environment["PGPASSWORD"],
            database: database.isEmpty ? user : database,
            tls: tls
        )
        client.options.connectTimeout = SharedTier.operationTimeout
        // A cache may lose its last fraction of a second of writes in a server crash (never consistency):
        // commits do not wait for the WAL flush, which took a miss from 2.5 to 7.3 ms p50 here.
        client.options.additionalStartupParameters = [("synchronous_commit", "off")]
        client.options.maximumConnections = 16
        self.client = client
        self.displayName = "\(host):\(port)/\(database.isEmpty ? user : database)"
    }

    /// Whether `host` names this machine (`localhost`, 127.0.0.0/8, `::1`).
    static func isLoopback(_ host: String) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: ["[", "]"])
        let octets = host.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
        return host == "localhost" || host == "::1" || (octets.count == 4 && !octets.contains(nil) && octets[0] == 127)
    }

    private static func tls(verifying verification: CertificateVerification) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = verification
        return configuration
    }
}
