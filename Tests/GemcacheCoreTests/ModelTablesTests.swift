import Foundation
import GemcacheTestSupport
import Testing
import Yams

@testable import GemcacheCore

/// The free-tier limits and prices are built in (SPEC §1): proxy.conf lists the same tables, and a file
/// overrides them model by model.
struct ModelTablesTests {
    /// proxy.conf as YAML, read on its own (not over the built-in tables, which would hide a row missing from it).
    static func shippedFile() throws -> [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("proxy.conf")
        return try #require(try Yams.load(yaml: String(contentsOf: url, encoding: .utf8)) as? [String: Any])
    }

    static func number(_ value: Any?) -> Double? {
        (value as? Int).map(Double.init) ?? (value as? Double)
    }

    @Test func proxyConfListsTheBuiltInFreeTierRowForRow() throws {
        let limits = try #require(try Self.shippedFile()["limits"] as? [String: Any])
        let rows = try #require(limits["models"] as? [String: [String: Any]])
        let listed = rows.mapValues { row in
            ProxyConfiguration.ModelLimits(rpm: row["rpm"] as? Int, tpm: row["tpm"] as? Int, rpd: row["rpd"] as? Int)
        }
        #expect(listed == ProxyConfiguration.builtInFreeTier)
        #expect(rows.values.allSatisfy { Set($0.keys) == ["rpm", "tpm", "rpd"] }, "every row names all three limits, null when unknown")
    }

    @Test func proxyConfListsTheBuiltInPricesRowForRow() throws {
        let rows = try #require(try Self.shippedFile()["prices"] as? [String: [String: Any]])
        let listed = try rows.mapValues { row in
            ProxyConfiguration.ModelPrice(input: try #require(Self.number(row["input"])), output: try #require(Self.number(row["output"])))
        }
        #expect(listed == ProxyConfiguration.builtInPrices)
    }

    @Test func withoutAFileTheBuiltInTablesApplyAndAFileOverridesModelByModel() async throws {
        let bare = try await ProxyConfiguration.load(filePath: nil, environment: [:])
        #expect(bare.limits.models == ProxyConfiguration.builtInFreeTier)
        #expect(bare.prices == ProxyConfiguration.builtInPrices)
        try await withTemporaryDirectory { directory in
            let path = directory.path + "/proxy.conf"
            let file = """
                limits: {models: {gemini-2.5-flash: {rpm: 1000, tpm: null, rpd: 5000}, gemini-x: {rpd: 7}}}
                prices: {gemini-2.5-flash: {input: 1, output: 2}}
                """
            FileManager.default.createFile(atPath: path, contents: Data(file.utf8))
            let configuration = try await ProxyConfiguration.load(filePath: path, environment: [:])
            var expected = ProxyConfiguration.builtInFreeTier
            expected["gemini-2.5-flash"] = .init(rpm: 1000, rpd: 5000)
            expected["gemini-x"] = .init(rpd: 7)
            #expect(configuration.limits.models == expected)
            var prices = ProxyConfiguration.builtInPrices
            prices["gemini-2.5-flash"] = .init(input: 1, output: 2)
            #expect(configuration.prices == prices)
        }
    }
}
