import Foundation
import GemcacheKey
import HTTPTypes

/// The client's one Gemini credential (SPEC §8), read once per request: an `x-goog-api-key` header, a
/// `key`, `access_token` or `oauth_token` query parameter, or `Authorization: Bearer`.
///
/// The rule lives here: a request that carries more than one (two kinds, or one kind twice with
/// different values) is a 400, so that the proxy never vouches for one credential while Google reads
/// another. The fast path does not build this type (it reads the one `x-goog-api-key` in place, see
/// ``RequestHead``) and leaves every request with another credential, or two, to the slow path, which does.
struct Credential: Sendable, Equatable {
    /// Where a request carries a credential.
    enum Place: Sendable, Equatable {
        case apiKeyHeader
        /// The query parameter, by its lowercased name.
        case query(String)
        case bearer
    }

    let value: String
    let place: Place

    /// The headers a credential travels in: forwarded as they are in passthrough mode, replaced by the
    /// proxy's upstream key in managed mode.
    static let headerNames: [HTTPField.Name] = [.googAPIKey, .authorization]

    /// The request's credential, or nil when it carries none.
    /// - Throws: ``ProxyError/moreThanOneCredential`` (400) when it carries more than one.
    init?(headers: HTTPFields, query: [(name: String, value: String)]) throws(ProxyError) {
        var found: [Credential] = []
        for value in headers[values: .googAPIKey] where !value.isEmpty {
            found.append(Credential(value: value, place: .apiKeyHeader))
        }
        for item in query where QueryParameter.role(of: item.name, isGET: false) == .credential && !item.value.isEmpty {
            found.append(Credential(value: item.value, place: .query(item.name.lowercased())))
        }
        for authorization in headers[values: .authorization] where authorization.lowercased().hasPrefix("bearer ") {
            let token = authorization.dropFirst(7).trimmingCharacters(in: .whitespaces)
            if !token.isEmpty { found.append(Credential(value: token, place: .bearer)) }
        }
        guard let first = found.first else { return nil }
        guard found.allSatisfy({ $0 == first }) else { throw .moreThanOneCredential }
        self = first
    }

    /// What a request without a credential is keyed with where none is needed: in replay (SPEC §11),
    /// and by `/_gemcache/explain` in shared scope.
    static let anonymous = Credential(value: "", place: .apiKeyHeader)

    private init(value: String, place: Place) {
        self.value = value
        self.place = place
    }
}
