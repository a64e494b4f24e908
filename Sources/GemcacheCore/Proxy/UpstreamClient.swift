public import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix

/// The pooled connections to the Gemini API: the one place that talks to the upstream.
///
/// Two AsyncHTTPClients share the event loops: one decodes gzip (answers that are stored must be
/// stored decoded), the other passes bytes through untouched for routes that are not cached.
public struct UpstreamClient: Sendable {
    let baseURL: String
    let timeout: Duration
    let decoding: HTTPClient
    let passing: HTTPClient

    public init(configuration: ProxyConfiguration.Upstream) {
        self.baseURL = configuration.url
        self.timeout = configuration.timeout
        func make(_ decompression: HTTPClient.Decompression) -> HTTPClient {
            var client = HTTPClient.Configuration()
            client.timeout = .init(connect: .milliseconds(configuration.connectTimeout.milliseconds))
            client.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnections)
            client.connectionPool.retryConnectionEstablishment = false
            client.decompression = decompression
            client.httpVersion = .automatic
            return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: client)
        }
        self.decoding = make(.enabled(limit: .ratio(200)))
        self.passing = make(.disabled)
    }

    /// Sends a request; `decode` picks the client that decodes gzip.
    func send(
        method: HTTPRequest.Method, pathAndQuery: String, headers: [(name: String, value: String)],
        body: HTTPClientRequest.Body?, decode: Bool
    ) async throws(ProxyError) -> HTTPClientResponse {
        var request = HTTPClientRequest(url: baseURL + pathAndQuery)
        request.method = HTTPMethod(rawValue: method.rawValue)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if decode { request.headers.replaceOrAdd(name: "accept-encoding", value: "gzip") }
        request.body = body
        do {
            return try await (decode ? decoding : passing).execute(request, deadline: .now() + .milliseconds(timeout.milliseconds))
        } catch {
            throw Self.mapError(error)
        }
    }

    /// Collects an upstream body, bounded by the configured limits and the whole-request deadline.
    static func collect(_ response: HTTPClientResponse, upTo limit: Int) async throws(ProxyError) -> [UInt8] {
        do {
            var buffer = try await response.body.collect(upTo: limit)
            return buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch is NIOTooManyBytesError {
            throw ProxyError(.badGateway, "UNAVAILABLE", "The upstream answer is larger than limits.max_body.")
        } catch {
            throw mapError(error)
        }
    }

    /// Upstream failures in Google's terms: deadlines are 504, everything else 502.
    static func mapError(_ error: any Error) -> ProxyError {
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .readTimeout {
            return ProxyError(.gatewayTimeout, "DEADLINE_EXCEEDED", "The upstream did not answer within upstream.timeout.")
        }
        if let error = error as? HTTPClientError, error == .connectTimeout {
            return ProxyError(.badGateway, "UNAVAILABLE", "The upstream could not be reached within upstream.connect_timeout.")
        }
        return ProxyError(.badGateway, "UNAVAILABLE", "The upstream could not be reached or closed the connection.")
    }

    /// Shuts both clients down; call once, after the server has stopped.
    public func shutdown() async throws {
        try await decoding.shutdown()
        try await passing.shutdown()
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
