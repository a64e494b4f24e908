import Foundation

/// The HTTP proxy between gemcache and the upstream (SPEC §1 `upstream.proxy`), reached with
/// `CONNECT` for both the REST calls and the Live API relay.
///
/// Chosen as curl chooses: `upstream.proxy` if set; otherwise `HTTPS_PROXY`/`https_proxy` for an
/// https upstream (`http_proxy` for an http one), unless `NO_PROXY`/`no_proxy` names the upstream
/// host. Credentials come from the environment only: the user part of the variable's URL, or
/// `GEMCACHE_PROXY_CREDENTIALS` (`user:password`), never from proxy.conf.
struct EgressProxy: Sendable, Equatable {
    let host: String
    let port: Int
    let credentials: Credentials?

    /// A proxy user and password.
    struct Credentials: Sendable, Equatable {
        let user: String
        let password: String
    }

    /// The variable that holds the credentials for `upstream.proxy` (a secret, not a setting).
    static let credentialsVariable = "GEMCACHE_PROXY_CREDENTIALS"

    /// Parses `http://[user:password@]host[:port]` (port 1080 when absent, as curl).
    /// - Throws: ``SettingProblem`` for any other scheme, a missing host, a path, or credentials where
    ///   they are not allowed.
    init(url raw: String, credentialsAllowed: Bool) throws(SettingProblem) {
        guard let url = URLComponents(string: raw), url.scheme?.lowercased() == "http", let host = url.host, !host.isEmpty,
            url.path.isEmpty || url.path == "/", url.query == nil, url.fragment == nil
        else {
            throw SettingProblem("expected null or an http://host:port proxy URL, got \"\(Self.redacted(raw))\"")
        }
        if !credentialsAllowed && (url.user != nil || url.password != nil) {
            throw SettingProblem("proxy credentials belong in the environment (\(Self.credentialsVariable)), not in the setting")
        }
        self.host = host
        self.port = url.port ?? 1080
        self.credentials = url.user.map {
            Credentials(user: $0.removingPercentEncoding ?? $0, password: (url.password ?? "").removingPercentEncoding ?? "")
        }
    }

    init(host: String, port: Int, credentials: Credentials?) {
        self.host = host
        self.port = port
        self.credentials = credentials
    }

    /// The proxy for `upstreamURL`, or nil for a direct connection.
    /// - Throws: ``ConfigurationError`` naming `upstream.proxy` (and the variable) for a bad value.
    static func resolve(
        setting: String?,
        upstreamURL: String,
        environment: [String: String]
    ) throws(ConfigurationError) -> EgressProxy? {
        let upstream = URLComponents(string: upstreamURL)
        let secure = upstream?.scheme?.lowercased() == "https"
        let variables = secure ? ["HTTPS_PROXY", "https_proxy"] : ["http_proxy"]
        let source: (origin: String, url: String)?
        if let setting {
            source = ("upstream.proxy", setting)
        } else if let name = variables.first(where: { !(environment[$0] ?? "").isEmpty }), let value = environment[name],
            !bypasses(host: upstream?.host ?? "", noProxy: environment["NO_PROXY"] ?? environment["no_proxy"] ?? "")
        {
            source = ("upstream.proxy (\(name))", value)
        } else {
            source = nil
        }
        guard let source else { return nil }
        do throws(SettingProblem) {
            let proxy = try EgressProxy(url: source.url, credentialsAllowed: setting == nil)
            let fromEnvironment = environment[credentialsVariable].flatMap { $0.isEmpty ? nil : $0 }
            guard let pair = fromEnvironment else { return proxy }
            guard let colon = pair.firstIndex(of: ":") else {
                throw SettingProblem("\(credentialsVariable) must be user:password")
            }
            return EgressProxy(
                host: proxy.host,
                port: proxy.port,
                credentials: Credentials(user: String(pair[..<colon]), password: String(pair[pair.index(after: colon)...]))
            )
        } catch {
            throw ConfigurationError(key: source.origin, problem: error.problem)
        }
    }

    /// Whether `NO_PROXY` names `host`: `*`, the host itself, or a domain it is in (a leading dot is
    /// optional); entries are compared without their port.
    static func bypasses(host: String, noProxy: String) -> Bool {
        let host = host.lowercased()
        return noProxy.split(separator: ",").contains { entry in
            var name = entry.trimmingCharacters(in: .whitespaces).lowercased()
            if name == "*" { return true }
            if !name.hasPrefix("["), let colon = name.lastIndex(of: ":") { name = String(name[..<colon]) }
            if name.hasPrefix(".") { name.removeFirst() }
            return !name.isEmpty && (host == name || host.hasSuffix("." + name))
        }
    }

    /// `raw` without any password, for error messages.
    private static func redacted(_ raw: String) -> String {
        guard var url = URLComponents(string: raw), url.password != nil else { return raw }
        url.password = "***"
        return url.string ?? "(unreadable URL)"
    }
}
