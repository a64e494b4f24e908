import HTTPTypes
import Testing

@testable import GemcacheCore

/// SPEC §8: a request's one credential, and the 400 for more than one, in one place.
struct CredentialTests {
    private func credential(_ headers: HTTPFields = [:], query: [(name: String, value: String)] = []) throws(ProxyError) -> Credential? {
        try Credential(headers: headers, query: query)
    }

    @Test func eachPlaceGivesTheCredential() throws {
        #expect(try credential() == nil)
        #expect(try credential([.googAPIKey: ""]) == nil)
        #expect(try credential([.googAPIKey: "k"])?.place == .apiKeyHeader)
        #expect(try credential(query: [("KEY", "k")])?.place == .query("key"))
        #expect(try credential(query: [("access_token", "k")])?.value == "k")
        let bearer = try credential([.authorization: "Bearer  k "])
        #expect(bearer?.place == .bearer && bearer?.value == "k")
        #expect(try credential([.authorization: "Basic k"]) == nil)
        var twice = HTTPFields()
        twice.append(HTTPField(name: .googAPIKey, value: "k"))
        twice.append(HTTPField(name: .googAPIKey, value: "k"))
        #expect(try credential(twice)?.value == "k", "one kind twice with the same value is one credential")
    }

    @Test func moreThanOneIsA400() {
        var differentValues = HTTPFields()
        differentValues.append(HTTPField(name: .googAPIKey, value: "a"))
        differentValues.append(HTTPField(name: .googAPIKey, value: "b"))
        let requests: [(HTTPFields, [(name: String, value: String)])] = [
            (differentValues, []),
            ([.googAPIKey: "k", .authorization: "Bearer k"], []),
            ([.googAPIKey: "k"], [("key", "k")]),
            ([:], [("key", "k"), ("access_token", "k")]),
        ]
        for (headers, query) in requests {
            do {
                _ = try credential(headers, query: query)
                Issue.record("accepted \(headers) \(query)")
            } catch {
                #expect(error.status == .badRequest && error.message == ProxyError.moreThanOneCredential.message)
            }
        }
    }
}
