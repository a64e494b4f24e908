import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging

extension UpstreamClient {
    /// Opens a WebSocket to `target` on the configured upstream (`https` → `wss`), through the egress
    /// proxy if there is one, and runs `handler` on it; returns the upstream's close frame.
    ///
    /// `headers` go with the upgrade as they are, except that in managed mode any client credential
    /// among them is replaced by the pool's next key (as for HTTP calls). The URL may hold the client's
    /// key, so the WebSocket client logs at `info` at most (at `debug` it names only where it connects).
    func webSocket(
        target: UpstreamTarget,
        headers: HTTPFields,
        maxFrameSize: Int,
        logger: Logger,
        handler: @escaping WebSocketDataHandler<WebSocketClient.Context>
    ) async throws -> WebSocketCloseFrame? {
        var target = target
        var headers = headers
        if let lease = managedLease() {
            target = target.removingCredentials
            for name in Credential.headerNames { headers[name] = nil }
            headers[.googAPIKey] = lease.key
        }
        let url = try upstream.url(for: target)
        let webSocketURL = (url.hasPrefix("https:") ? "wss" : "ws") + url.drop { $0 != ":" }
        let configuration = WebSocketClientConfiguration(maxFrameSize: maxFrameSize, additionalHeaders: headers)
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .info)
        guard let egress else {
            return try await WebSocketClient.connect(url: webSocketURL, configuration: configuration, logger: quiet, handler: handler)
        }
        var connectHeaders = HTTPFields()
        if let credentials = egress.credentials {
            connectHeaders[.proxyAuthorization] = "Basic " + Data("\(credentials.user):\(credentials.password)".utf8).base64EncodedString()
        }
        return try await WebSocketClient.connect(
            url: webSocketURL,
            configuration: configuration,
            proxySettings: WebSocketProxySettings(host: egress.host, port: egress.port, type: .http(connectHeaders: connectHeaders)),
            logger: quiet,
            handler: handler
        )
    }
}
