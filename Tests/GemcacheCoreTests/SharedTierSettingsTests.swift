import GemcacheStore
import PostgresNIO
import Testing

@testable import GemcacheCore

/// `store.shared` with the environment: what the shared tier connects to, and the one-line errors.
@Suite struct SharedTierSettingsTests {
    @Test func theUserComesFromTheURLThenPGUSERAndThePasswordOnlyFromPGPASSWORD() throws {
        let named = try SharedTierSettings(url: "postgres://cache@db.internal:6543/answers", environment: ["PGUSER": "other", "PGPASSWORD": "pw"])
        #expect(named.client.username == "cache")
        #expect(named.client.password == "pw")
        #expect(named.client.host == "db.internal" && named.client.port == 6543 && named.client.database == "answers")
        #expect(named.displayName == "db.internal:6543/answers")

        let fromEnvironment = try SharedTierSettings(url: "postgresql://db.internal", environment: ["PGUSER": "other"])
        #expect(fromEnvironment.client.username == "other")
        #expect(fromEnvironment.client.password == nil)
        #expect(fromEnvironment.client.port == 5432 && fromEnvironment.client.database == "other", "libpq's defaults")
    }

    @Test func anUnusableURLNamesTheSetting() {
        for url in ["postgres://db.internal/x?sslmode=allow", "postgres:///nohost"] {
            let error = #expect(throws: ConfigurationError.self) { try SharedTierSettings(url: url, environment: [:]) }
            #expect(error?.key == "store.shared", "\(url)")
        }
    }

    @Test func aDatabaseOnAnotherHostMustProveItsNameUnlessTheURLSaysOtherwise() throws {
        let expectations: [(String, SharedTierSettings.SSLMode)] = [
            ("postgres://db.internal/cache", .verifyFull),
            ("postgres://10.1.2.3/cache", .verifyFull),
            ("postgres://127.0.0.1.attacker.example/cache", .verifyFull),
            ("postgres://127.0.0.1/cache", .prefer),
            ("postgres://localhost:5433/cache", .prefer),
            ("postgres://[::1]/cache", .prefer),
            ("postgres://db.internal/cache?sslmode=require", .require),
            ("postgres://db.internal/cache?sslmode=verify-ca", .verifyCA),
            ("postgres://db.internal/cache?sslmode=disable", .disable),
        ]
        for (url, mode) in expectations {
            #expect(try SharedTierSettings(url: url, environment: [:]).sslMode == mode, "\(url)")
        }
    }
}
