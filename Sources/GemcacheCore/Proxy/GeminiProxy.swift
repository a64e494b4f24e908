import AsyncHTTPClient
import Foundation
public import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
import NIOHTTP1

/// The caching proxy: answers cached routes from the store or one shared upstream call, and streams
/// every other route through untouched.
public final class GeminiProxy: Sendable {
    let configuration: ProxyConfiguration
    let store: CacheStore
    let ledger: Ledger
    let upstream: UpstreamClient
    let flights: SingleFlight<CacheKey, UpstreamAnswer>
    let now: @Sendable () -> Int64

    public init(
        configuration: ProxyConfiguration, store: CacheStore, ledger: Ledger, upstream: UpstreamClient,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock,
        onCoalesce: (@Sendable (CacheKey) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.store = store
        self.ledger = ledger
        self.upstream = upstream
        self.flights = SingleFlight(onJoin: onCoalesce)
        self.now = now
    }

    /// An upstream answer as the client and the store see it.
    struct UpstreamAnswer: Sendable {
        let status: Int
        /// Replayable headers (no hop-by-hop, no delivery headers).
        let headers: [(name: String, value: String)]
        let body: [UInt8]
        let usage: TokenUsage
        let stored: Bool
        /// Set when the answer came from the store after all (an entry landed while this request waited).
        let entry: CacheEntry?
    }

    /// The request, as a cached route, was prepared into its key.
    struct Prepared: Sendable {
        let route: CachedRoute
        let key: CacheKey
        let controls: RequestControls
        let body: [UInt8]
        let pathAndQuery: String
        let headers: [(name: String, value: String)]
    }

    // MARK: - Cached routes

    /// Handles a request on a cached route (SPEC §2–§5).
    public func cached(_ request: Request, context: some RequestContext, route: CachedRoute) async throws -> Response {
        ledger.recordRequest(model: route.model)
        do {
            let prepared = try await prepare(request, route: route)
            return try await answer(prepared, logger: context.logger)
        } catch {
            ledger.recordError(model: route.model)
            throw error
        }
    }

    private func prepare(_ request: Request, route: CachedRoute) async throws(ProxyError) -> Prepared {
        let query = ForwardedRequest.queryItems(request.uri.query)
        guard let credential = ForwardedRequest.credential(headers: request.headers, query: query) else {
            throw .missingCredential
        }
        let controls = try RequestControls(headers: request.headers)
        let body: [UInt8]
        do {
            var buffer = try await request.body.collect(upTo: configuration.limits.maxBody)
            body = buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch is NIOTooManyBytesError {
            throw ProxyError(.contentTooLarge, "INVALID_ARGUMENT", "Request body is larger than limits.max_body (\(configuration.limits.maxBody) bytes).")
        } catch {
            throw ProxyError(.badRequest, "INVALID_ARGUMENT", "The request body could not be read.")
        }
        let normalized: [UInt8]
        do {
            normalized = try BodyNormalizer.normalize(body, level: configuration.cache.normalize, dialect: route.dialect)
        } catch {
            throw .invalidArgument(error.message)
        }
        let scope = configuration.effectiveScope == .shared ? "shared" : scopeTag(credential: credential, salt: store.scopeSalt)
        let key = CacheKeyComponents(
            apiVersion: route.apiVersion, endpoint: route.endpoint, model: route.model,
            query: keyQuery(query, isGET: false), scope: scope, namespace: controls.namespace, normalizedBody: normalized
        ).key
        let pathAndQuery = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        return Prepared(
            route: route, key: key, controls: controls, body: body, pathAndQuery: pathAndQuery,
            headers: ForwardedRequest.upstreamHeaders(request.headers, dropCacheControls: true)
        )
    }

    private func answer(_ prepared: Prepared, logger: Logger) async throws -> Response {
        let controls = prepared.controls
        if !controls.noCache && !controls.noStore, let entry = await freshEntry(prepared.key, maxAge: controls.maxAge, logger: logger) {
            return hit(entry, prepared: prepared)
        }
        if controls.onlyIfCached {
            throw ProxyError(.gatewayTimeout, "DEADLINE_EXCEEDED", "No cached answer, and Cache-Control: only-if-cached forbids calling upstream.")
        }
        if controls.noStore || controls.noCache {
            let answer = try await fetch(prepared, store: !controls.noStore, logger: logger)
            return respond(answer, outcome: controls.noStore ? .bypass : .refresh, prepared: prepared)
        }
        let (answer, led) = try await flights.run(prepared.key) {
            if let entry = await self.freshEntry(prepared.key, maxAge: controls.maxAge, logger: logger) {
                return UpstreamAnswer(
                    status: entry.status, headers: entry.headers, body: entry.body,
                    usage: TokenUsage(prompt: entry.promptTokens, total: entry.totalTokens), stored: true, entry: entry
                )
            }
            return try await self.fetch(prepared, store: true, logger: logger)
        }
        if let entry = answer.entry {
            return hit(entry, prepared: prepared)
        }
        return respond(answer, outcome: led ? .miss : .coalesced, prepared: prepared)
    }

    /// The stored entry if it is fresh (and no older than `maxAge` seconds).
    private func freshEntry(_ key: CacheKey, maxAge: Int64?, logger: Logger) async -> CacheEntry? {
        let entry: CacheEntry?
        do {
            entry = try await store.lookup(key)
        } catch {
            logger.error("store lookup failed", metadata: ["store.error": "\(error)"])
            return nil
        }
        guard let entry else { return nil }
        let now = now()
        guard now < entry.expiresAt else { return nil }
        if let maxAge, now - entry.storedAt > maxAge * 1000 { return nil }
        return entry
    }

    /// Calls upstream once and, when allowed and the answer is complete, stores it before returning.
    private func fetch(_ prepared: Prepared, store shouldStore: Bool, logger: Logger) async throws(ProxyError) -> UpstreamAnswer {
        let response = try await upstream.send(
            method: .post, pathAndQuery: prepared.pathAndQuery, headers: prepared.headers,
            body: .bytes(ByteBuffer(bytes: prepared.body)), decode: true
        )
        let body = try await UpstreamClient.collect(response, upTo: configuration.limits.maxBody)
        let headers = ForwardedRequest.replayableHeaders(response.headers.map { ($0.name, $0.value) })
        let status = Int(response.status.code)
        let parsed = StorePolicy.parse(body)
        let usage = StorePolicy.usage(parsed)
        ledger.recordUpstreamCall(model: prepared.route.model, status: status, tokens: usage)
        let storable = shouldStore && body.count <= configuration.cache.maxEntrySize
            && StorePolicy.isStorableGeneration(status: status, answer: parsed, requestSetMaxTokens: StorePolicy.setsMaxOutputTokens(StorePolicy.parse(prepared.body)))
        var stored = false
        if storable {
            let storedAt = now()
            let ttl = prepared.controls.ttlSeconds.map { $0 * 1000 } ?? configuration.cache.ttl(for: prepared.route.endpoint).milliseconds
            let entry = CacheEntry(
                status: status, headerBlock: CacheEntry.headerBlock(headers), body: body, storedAt: storedAt,
                expiresAt: storedAt + ttl, model: prepared.route.model, namespace: prepared.controls.namespace,
                endpoint: prepared.route.endpoint, promptTokens: usage.prompt, totalTokens: usage.total
            )
            stored = await store.store(entry, for: prepared.key)
        }
        logger.debug(
            "upstream answered",
            metadata: ["cache.key": "\(prepared.key.hex)", "upstream.status": "\(status)", "cache.stored": "\(stored)"]
        )
        return UpstreamAnswer(status: status, headers: headers, body: body, usage: usage, stored: stored, entry: nil)
    }

    private func hit(_ entry: CacheEntry, prepared: Prepared) -> Response {
        ledger.recordAnswer(
            model: prepared.route.model, outcome: .hit, status: entry.status,
            tokens: TokenUsage(prompt: entry.promptTokens, total: entry.totalTokens)
        )
        let key = prepared.key
        let now = now()
        var headers = HTTPFields(entry.headers.compactMap { pair in HTTPField.Name(pair.name).map { HTTPField(name: $0, value: pair.value) } })
        headers[.age] = String(max(0, (now - entry.storedAt) / 1000))
        headers[.gemcache] = "HIT"
        headers[.gemcacheKey] = key.hex
        headers[.cacheStatus] = "gemcache; hit; ttl=\(max(0, (entry.expiresAt - now) / 1000)); key=\"\(key.hex)\""
        return Response(status: .init(code: entry.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: entry.body)))
    }

    private func respond(_ answer: UpstreamAnswer, outcome: CacheOutcome, prepared: Prepared) -> Response {
        ledger.recordAnswer(model: prepared.route.model, outcome: outcome, status: answer.status, tokens: answer.usage)
        let key = prepared.key
        var headers = HTTPFields(answer.headers.compactMap { pair in HTTPField.Name(pair.name).map { HTTPField(name: $0, value: pair.value) } })
        headers[.gemcache] = outcome.rawValue
        headers[.gemcacheKey] = key.hex
        let forward = switch outcome {
        case .bypass: "fwd=bypass"
        case .refresh: "fwd=request"
        case .coalesced: "fwd=miss; collapsed"
        default: "fwd=miss"
        }
        headers[.cacheStatus] = "gemcache; \(forward); fwd-status=\(answer.status)\(answer.stored ? "; stored" : "")"
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    // MARK: - Everything else

    /// Streams a request that is not cached to the upstream and its answer back, both ways unbuffered.
    public func passThrough(_ request: Request, context: some RequestContext) async throws -> Response {
        let length = request.headers[.contentLength].flatMap { Int64($0) }
        let hasBody = length.map { $0 > 0 } ?? (request.headers[.transferEncoding] != nil)
        let pathAndQuery = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        let response = try await upstream.send(
            method: request.method, pathAndQuery: pathAndQuery,
            headers: ForwardedRequest.upstreamHeaders(request.headers, dropCacheControls: false),
            body: hasBody ? .stream(request.body, length: length.map { .known($0) } ?? .unknown) : nil,
            decode: false
        )
        var headers = HTTPFields()
        for header in response.headers where !ForwardedRequest.hopByHop.subtracting(["content-length"]).contains(header.name.lowercased()) {
            if let name = HTTPField.Name(header.name) { headers.append(HTTPField(name: name, value: header.value)) }
        }
        headers[.gemcache] = "PASS"
        return Response(status: .init(code: Int(response.status.code)), headers: headers, body: ResponseBody(asyncSequence: response.body))
    }
}

/// A request on a cached route: which API version, model and operation.
public struct CachedRoute: Sendable {
    public let apiVersion: String
    public let model: String
    /// The endpoint kind as it enters the key, e.g. `generateContent`.
    public let endpoint: String
    var dialect: BodyDialect { .gemini }

    /// The cached route a request is on, or nil when the path is not cached.
    /// - Throws: 400 when the path is a cached operation but names an invalid model (`..`, encoded slashes).
    public init?(method: HTTPRequest.Method, path: String) throws(ProxyError) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard method == .post, segments.count == 4, segments[0].isEmpty, segments[1] == "v1" || segments[1] == "v1beta",
            segments[2] == "models", let colon = segments[3].lastIndex(of: ":")
        else { return nil }
        let endpoint = segments[3][segments[3].index(after: colon)...]
        guard endpoint == "generateContent" else { return nil }
        let model = segments[3][..<colon]
        let valid = !model.isEmpty && model.count <= 128 && !model.contains("..")
            && model.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "-_.".unicodeScalars.contains($0)) }
        guard valid else {
            throw .invalidArgument("Invalid model name.")
        }
        self.apiVersion = String(segments[1])
        self.model = String(model)
        self.endpoint = String(endpoint)
    }
}

extension ProxyConfiguration.Cache {
    /// The time to live of an endpoint kind's answers.
    func ttl(for endpoint: String) -> Duration {
        switch endpoint {
        case "generateContent", "streamGenerateContent": ttl.generate
        case "countTokens": ttl.countTokens
        case "embedContent", "batchEmbedContents": ttl.embed
        case "models.list", "models.get": ttl.models
        case let kind where kind.hasPrefix("openai."): ttl.openai
        default: defaultTTL
        }
    }
}
