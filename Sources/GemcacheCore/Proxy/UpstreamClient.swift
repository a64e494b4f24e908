public import AsyncHTTPClient
import Foundation
import GemcacheStore
import HTTPTypes
public import NIOCore
import NIOHTTP1
import NIOHTTPCompression
import NIOPosix

/// The pooled connections to the Gemini API: the one place that talks to the upstream.
///
/// Two AsyncHTTPClients share the event loops: one decodes gzip (answers that are stored must be
/// stored decoded), the other passes bytes through untouched for routes that are not cached.
/// `upstream.timeout` bounds a cached route's whole exchange (``UpstreamResponse/deadline``); a route
/// that is not cached may stream for hours (uploads, downloads), so there it bounds the wait for the
/// head and then every silence of the upstream (AsyncHTTPClient's read timeout).
///
/// Given an ``UpstreamTransport``, every request goes through it instead (tests answer in process);
/// retries, timeouts, key leases and everything above stay as they are. The Live relay's WebSocket
/// always connects for real.
public struct UpstreamClient: Sendable {
    let upstream: UpstreamOrigin
    let timeout: Duration
    let retry: ProxyConfiguration.Upstream.Retry
    /// The first backoff step; each retry doubles it (full jitter), and a `RetryInfo` delay wins if longer.
    let backoff: Duration
    let decoding: any UpstreamTransport
    let passing: any UpstreamTransport
    /// The clients this one made, and shuts down.
    private let owned: [HTTPClient]
    /// Managed mode: the proxy's own upstream keys, put on every attempt in place of the client's credential.
    let keys: UpstreamKeyPool?
    /// The HTTP proxy the upstream is reached through, if any (also by ``webSocket(target:headers:maxFrameSize:logger:handler:)``).
    let egress: EgressProxy?

    init(
        configuration: ProxyConfiguration.Upstream,
        keys: UpstreamKeyPool? = nil,
        egress: EgressProxy? = nil,
        transport: (any UpstreamTransport)? = nil,
        backoff: Duration = .milliseconds(250)
    ) {
        self.keys = keys
        self.egress = egress
        self.upstream = UpstreamOrigin(configuration.url)
        self.timeout = configuration.timeout
        self.retry = configuration.retry
        self.backoff = backoff
        func make(_ decompression: HTTPClient.Decompression, read: TimeAmount? = nil) -> HTTPClient {
            var client = HTTPClient.Configuration()
            client.timeout = .init(connect: .milliseconds(configuration.connectTimeout.milliseconds), read: read)
            client.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnections)
            client.connectionPool.retryConnectionEstablishment = false
            client.decompression = decompression
            // A 3xx goes back to the client as it is: following it would carry the credential to
            // whatever host its Location names (SPEC §2).
            client.redirectConfiguration = .disallow
            client.httpVersion = .automatic
            // No tracer: with none bootstrapped, AsyncHTTPClient would still build a no-op span's
            // attributes (parsing the URL with Foundation) on every request.
            client.tracing.tracer = nil
            client.proxy = egress.map { egress in
                .server(
                    host: egress.host,
                    port: egress.port,
                    authorization: egress.credentials.map { .basic(username: $0.user, password: $0.password) }
                )
            }
            return HTTPClient(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: client)
        }
        if let transport {
            (decoding, passing, owned) = (transport, transport, [])
        } else {
            let decoding = make(.enabled(limit: .ratio(200)))
            let passing = make(.disabled, read: .milliseconds(configuration.timeout.milliseconds))
            (self.decoding, self.passing, owned) = (decoding, passing, [decoding, passing])
        }
    }

    /// Sends a request; `decode` picks the client that decodes gzip.
    func send(
        method: HTTPRequest.Method,
        target: UpstreamTarget,
        headers: [(name: String, value: String)],
        body: HTTPClientRequest.Body?,
        decode: Bool
    ) async throws(ProxyError) -> HTTPClientResponse {
        var request = HTTPClientRequest(url: try upstream.url(for: target))
        request.method = HTTPMethod(rawValue: method.rawValue)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if decode { request.headers.replaceOrAdd(name: "accept-encoding", value: "gzip") }
        request.body = body
        _ = try authorize(&request, target: target)
        do {
            return try Self.checked(await (decode ? decoding : passing).execute(request, deadline: .now() + .milliseconds(timeout.milliseconds)))
        } catch let error as ProxyError {
            throw error
        } catch {
            throw Self.mapError(error)
        }
    }

    /// The response, if its status is one an HTTP answer can have (100...599): an HTTP/2 upstream may
    /// send any number as `:status`, and building a response from one above 999 would trap.
    private static func checked(_ response: HTTPClientResponse) throws(ProxyError) -> HTTPClientResponse {
        guard (100...599).contains(response.status.code) else {
            throw .upstreamInvalidStatus
        }
        return response
    }

    /// Statuses worth another try (SPEC §6).
    static let retryableStatuses: Set<Int> = [429, 500, 503, 504]

    /// Sends a request of a cached route, retrying 429/500/503/504 answers and connection failures with
    /// exponential backoff and full jitter, honouring `RetryInfo`, within `upstream.retry.attempts` and
    /// `upstream.retry.budget`. When the tries are spent, the upstream's own last answer is returned.
    /// - Parameters:
    ///   - lease: Managed mode: the upstream key of the first attempt (the quota guard admitted the call
    ///     for it); later attempts take the pool's next key.
    ///   - onRetryableFailure: Told about every retryable answer (status and body), e.g. to learn quota.
    func exchange(
        method: HTTPRequest.Method,
        target: UpstreamTarget,
        headers: [(name: String, value: String)],
        body: [UInt8]?,
        lease firstLease: UpstreamKeyPool.Lease? = nil,
        maxBody: Int,
        onRetryableFailure: @Sendable (Int, [UInt8]) -> Void = { _, _ in }
    ) async throws(ProxyError) -> UpstreamResponse {
        var request = HTTPClientRequest(url: try upstream.url(for: target))
        request.method = HTTPMethod(rawValue: method.rawValue)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.replaceOrAdd(name: "accept-encoding", value: "gzip")
        request.body = body.map { .bytes(ByteBuffer(bytes: $0)) }
        let started = ContinuousClock.now
        var attempt = 1
        while true {
            let canRetry = attempt < retry.attempts
            let lease = try authorize(&request, target: target, lease: attempt == 1 ? firstLease : nil)
            let deadline = ContinuousClock.now + timeout
            do {
                let response = try Self.checked(await decoding.execute(request, deadline: .now() + .milliseconds(timeout.milliseconds)))
                let status = Int(response.status.code)
                let answer = UpstreamResponse(status: status, headers: response.headers, body: .streaming(response.body), deadline: deadline)
                guard Self.retryableStatuses.contains(status) else { return answer }
                let bytes = try await answer.collect(upTo: maxBody)
                onRetryableFailure(status, bytes)
                let retryDelay = UpstreamErrorDetails.retryDelay(in: bytes)
                if status == 429, let lease {
                    keys?.rest(lease, for: retryDelay ?? .seconds(60))
                }
                let delay = max(jitteredBackoff(attempt), retryDelay ?? .zero)
                guard canRetry, ContinuousClock.now - started + delay <= retry.budget else {
                    return UpstreamResponse(status: status, headers: response.headers, body: .read(bytes), deadline: deadline)
                }
                try? await Task.sleep(for: delay)
            } catch let error as ProxyError {
                throw error
            } catch {
                let delay = jitteredBackoff(attempt)
                guard canRetry, Self.isConnectionFailure(error), ContinuousClock.now - started + delay <= retry.budget else {
                    throw Self.mapError(error)
                }
                try? await Task.sleep(for: delay)
            }
            attempt += 1
        }
    }

    /// Managed mode: replaces any client credential with `lease`'s upstream key, or the pool's next
    /// one (the OpenAI surface takes it as a bearer token, the native API as `x-goog-api-key`).
    private func authorize(
        _ request: inout HTTPClientRequest,
        target: UpstreamTarget,
        lease: UpstreamKeyPool.Lease? = nil
    ) throws(ProxyError) -> UpstreamKeyPool.Lease? {
        guard let lease = managedLease(lease) else { return nil }
        request.url = try upstream.url(for: target.removingCredentials)
        for name in Credential.headerNames { request.headers.remove(name: name.rawName) }
        if target.path.hasPrefix("/v1beta/openai/") {
            request.headers.add(name: "authorization", value: "Bearer \(lease.key)")
        } else {
            request.headers.add(name: "x-goog-api-key", value: lease.key)
        }
        return lease
    }

    /// Managed mode: the upstream key of one call (`lease`, or the pool's next), counted as used; nil in
    /// passthrough mode.
    func managedLease(_ lease: UpstreamKeyPool.Lease? = nil) -> UpstreamKeyPool.Lease? {
        guard let keys else { return nil }
        let lease = lease ?? keys.lease()
        keys.recordUse(lease)
        return lease
    }

    /// `backoff × 2^(attempt-1)`, scaled by a random factor in 0…1.
    private func jitteredBackoff(_ attempt: Int) -> Duration {
        backoff * (Double(1 << min(attempt - 1, 16)) * Double.random(in: 0...1))
    }

    /// Failures before any answer arrived, which are safe to try again.
    private static func isConnectionFailure(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError {
            return error == .connectTimeout || error == .remoteConnectionClosed || error == .readTimeout
        }
        return error is NIOConnectionError || error is ChannelError || (error as? IOError) != nil
    }

    /// Upstream failures in Google's terms: deadlines are 504, everything else 502.
    static func mapError(_ error: any Error) -> ProxyError {
        if let error = error as? HTTPClientError, error == .deadlineExceeded || error == .readTimeout {
            return .upstreamTimeout
        }
        if let error = error as? HTTPClientError, error == .connectTimeout {
            return .upstreamConnectTimeout
        }
        return .upstreamUnreachable
    }

    /// Shuts down the clients this one made; call once, after the server has stopped.
    public func shutdown() async throws {
        for client in owned { try await client.shutdown() }
    }
}

/// How a request reaches the upstream, below ``UpstreamClient``'s retries, timeouts and key leases:
/// AsyncHTTPClient's pooled connections, or in tests an in-process answerer.
public protocol UpstreamTransport: Sendable {
    /// Sends `request` and returns the response once its head has arrived (the body streams on).
    /// - Throws: AsyncHTTPClient's errors (``UpstreamClient`` maps them to 502 or 504).
    func execute(_ request: HTTPClientRequest, deadline: NIODeadline) async throws -> HTTPClientResponse
}

extension HTTPClient: UpstreamTransport {
    public func execute(_ request: HTTPClientRequest, deadline: NIODeadline) async throws -> HTTPClientResponse {
        try await execute(request, deadline: deadline, logger: nil)
    }
}
