import AsyncHTTPClient
import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// The caching proxy: answers cached routes from the store or one shared upstream call, and streams
/// every other route through untouched.
public final class GeminiProxy: Sendable {
    let configuration: ProxyConfiguration
    let store: CacheStore
    /// The shared second tier, when `store.shared` names one.
    let shared: SharedTier?
    let ledger: Ledger
    let access: AccessControl
    let quota: QuotaGuard
    let upstream: UpstreamClient
    let flights: SingleFlight<CacheKey, UpstreamAnswer>
    /// Streams being recorded, by key, so identical stream misses share one upstream stream.
    let recordings = Mutex<[CacheKey: StreamRecording]>([:])
    let now: @Sendable () -> Int64

    init(
        configuration: ProxyConfiguration,
        store: CacheStore,
        shared: SharedTier? = nil,
        ledger: Ledger,
        access: AccessControl,
        upstream: UpstreamClient,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock
    ) {
        self.configuration = configuration
        self.store = store
        self.shared = shared
        self.ledger = ledger
        self.access = access
        self.quota = QuotaGuard(configuration: configuration.limits)
        self.upstream = upstream
        self.flights = SingleFlight()
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
        /// The model that answered instead, when the requested one was out of quota.
        var fallback: String? = nil
        /// Set when the answer came from the store after all (an entry landed while this request waited).
        let entry: CacheEntry?
        /// Set when that entry was stored by another instance whose upstream call this request waited for.
        var coalescedInCluster = false
    }

    /// A request on a cached route, read and keyed.
    struct Prepared: Sendable {
        let route: CachedRoute
        let key: CacheKey
        /// The scope the key was made with, recorded in stored entries (for imports under another salt).
        let scope: CacheEntry.Scope
        /// The scope as it entered the key, for keys of parts of this request (batch items).
        let scopeTag: String
        let credential: Credential
        /// The credential's salted hash (for shared-scope verification).
        let credentialTag: String
        let query: [(name: String, value: String)]
        let model: String
        let controls: RequestControls
        let body: [UInt8]
        let target: UpstreamTarget
        let headers: [(name: String, value: String)]
        /// How the answer streams, for streaming requests.
        let framing: StreamFraming?

        /// The body parsed, for the storing rules; parsed only when an answer may be stored, so that a
        /// hit pays for one parse (the key's), not two.
        var request: Any? { route.isGET ? nil : StorePolicy.parse(body) }
    }

    // MARK: - Cached routes

    /// Handles a request on a cached route (SPEC §2–§5).
    func cached(_ request: Request, target: UpstreamTarget, context: ProxyRequestContext, route: CachedRoute) async throws -> Response {
        let query = ForwardedRequest.queryItems(target.query)
        let alt = QueryParameter.alt(in: query)
        do {
            // Admission comes before accounting: a refused request is only counted as rejected (SPEC §7).
            let credential: Credential
            do {
                credential = try admit(request.headers, query: query)
            } catch {
                ledger.recordRejected()
                throw error
            }
            // The model the request counts under: the path's, or once read, the body's (OpenAI surface).
            var model = route.model
            do {
                // Only the response forms the proxy can frame and record; anything else never reaches Google.
                if let alt, !["json", "json;enum-encoding=int", "sse"].contains(alt) {
                    throw ProxyError.invalidArgument(
                        "Invalid value at 'alt' (\(alt)): gemcache serves alt=json, alt=json;enum-encoding=int and alt=sse."
                    )
                }
                let prepared = try await prepare(request, target: target, route: route, query: query, credential: credential)
                model = prepared.model
                if prepared.framing != nil {
                    return try await stream(prepared, connection: context.channel, logger: context.logger)
                }
                if route.operation == .batchEmbedContents {
                    return try await batchEmbed(prepared, logger: context.logger)
                }
                return try await answer(prepared, logger: context.logger)
            } catch {
                // Answered requests were counted with their answer; this one is counted with its error.
                ledger.recordError(model: model)
                throw error
            }
        } catch var error as ProxyError {
            // Google wraps its errors in an array on the OpenAI surface and on JSON-array streams.
            error.wrapped = route.isOpenAI || (route.operation == .streamGenerateContent && alt != "sse")
            throw error
        }
    }

    /// The request's one credential, admitted (SPEC §8): more than one is a 400; in managed mode it
    /// must be a proxy token (401); in passthrough mode a cached route needs one (Google's 403).
    private func admit(_ headers: HTTPFields, query: [(name: String, value: String)]) throws(ProxyError) -> Credential {
        let credential = try Credential(headers: headers, query: query)
        try access.admit(credential: credential)
        guard let credential else { throw .missingCredential }
        return credential
    }

    private func prepare(
        _ request: Request,
        target: UpstreamTarget,
        route: CachedRoute,
        query: [(name: String, value: String)],
        credential: Credential
    ) async throws(ProxyError) -> Prepared {
        let body: [UInt8]
        do {
            var buffer = try await request.body.collect(upTo: configuration.limits.maxBody)
            body = buffer.readBytes(length: buffer.readableBytes) ?? []
        } catch is NIOTooManyBytesError {
            throw .bodyTooLarge(limit: configuration.limits.maxBody)
        } catch {
            throw .unreadableBody
        }
        let keyed = try await KeyingPool.run(bodySize: body.count) { [self] () throws(ProxyError) in
            try RequestKey(
                route: route,
                query: query,
                headers: request.headers,
                body: body,
                credential: credential,
                configuration: configuration,
                salt: store.scopeSalt
            )
        }
        let framing: StreamFraming? =
            switch route.operation {
            case .streamGenerateContent: QueryParameter.alt(in: query) == "sse" ? .sse : .jsonArray
            case .openAIChat: keyed.openAIBody?["stream"] as? Bool == true ? .openAI : nil
            default: nil
            }
        return Prepared(
            route: route,
            key: keyed.key,
            scope: keyed.scope,
            scopeTag: keyed.scopeTag,
            credential: credential,
            credentialTag: keyed.credentialTag,
            query: query,
            model: keyed.model,
            controls: keyed.controls,
            body: body,
            target: target,
            headers: ForwardedRequest.upstreamHeaders(request.headers, dropCacheControls: true),
            framing: framing
        )
    }

    /// The lookup every cached operation starts with: a fresh entry the client may be served, the 504
    /// of `only-if-cached`, or nil when the upstream must answer. `askShared: false` leaves the shared
    /// tier to a later ``fetchOnceInCluster(_:logger:)``, which looks there as it claims the key.
    func answerFromStore(_ prepared: Prepared, trusted: Bool, askShared: Bool = true, logger: Logger) async throws(ProxyError) -> Response? {
        let controls = prepared.controls
        if trusted && !controls.noCache && !controls.noStore,
            let entry = await freshEntry(prepared.key, maxAge: controls.maxAge, askShared: askShared, logger: logger)
        {
            return hit(entry, prepared: prepared)
        }
        if controls.onlyIfCached {
            throw .notCached
        }
        return nil
    }

    func answer(_ prepared: Prepared, logger: Logger) async throws -> Response {
        let controls = prepared.controls
        let trusted = access.mayServeCached(credentialTag: prepared.credentialTag)
        // A miss that goes through the flight below looks in the shared tier as it claims the key.
        let claimsLater = shared != nil && trusted && !controls.noStore && !controls.noCache && !controls.onlyIfCached
        if let stored = try await answerFromStore(prepared, trusted: trusted, askShared: !claimsLater, logger: logger) {
            return stored
        }
        let upstreamAnswer: UpstreamAnswer
        let outcome: CacheOutcome
        do {
            if !trusted {
                // A shared-scope client the upstream has not vouched for lately: its own call verifies it.
                upstreamAnswer = try await fetch(prepared, store: !controls.noStore, logger: logger)
                outcome = controls.noStore ? .bypass : .miss
            } else if controls.noStore || controls.noCache {
                upstreamAnswer = try await fetch(prepared, store: !controls.noStore, logger: logger)
                outcome = controls.noStore ? .bypass : .refresh
            } else {
                let (answer, led) = try await flights.run(prepared.key) {
                    if let entry = await self.freshEntry(prepared.key, maxAge: controls.maxAge, askShared: false, logger: logger) {
                        return UpstreamAnswer(entry: entry)
                    }
                    return try await self.fetchOnceInCluster(prepared, logger: logger)
                }
                if let entry = answer.entry {
                    return hit(entry, prepared: prepared, outcome: answer.coalescedInCluster ? .coalesced : .hit)
                }
                upstreamAnswer = answer
                outcome = led ? .miss : .coalesced
            }
        } catch {
            if let stale = await staleEntry(for: prepared) { return hit(stale, prepared: prepared, outcome: .stale) }
            throw error
        }
        if Self.isUpstreamFailure(upstreamAnswer.status), let stale = await staleEntry(for: prepared) {
            return hit(stale, prepared: prepared, outcome: .stale)
        }
        return respond(upstreamAnswer, outcome: outcome, prepared: prepared)
    }

    /// Failures that `cache.stale_if_error` may paper over: out of quota, upstream errors.
    static func isUpstreamFailure(_ status: Int) -> Bool { status == 429 || status >= 500 }

    /// An expired entry of `prepared`'s key still within `cache.stale_if_error` of its expiry (SPEC §6),
    /// and only for a client that may be served a cached answer at all (SPEC §8: STALE follows the same
    /// verification as HIT).
    func staleEntry(for prepared: Prepared) async -> CacheEntry? {
        let window = configuration.cache.staleIfError.milliseconds
        guard window > 0, access.mayServeCached(credentialTag: prepared.credentialTag), let entry = try? store.lookup(prepared.key) else {
            return nil
        }
        let now = now()
        return now >= entry.expiresAt && now < entry.expiresAt + window ? entry : nil
    }

    /// The stored entry if it is fresh (and no older than `maxAge` seconds): from the store or, failing
    /// that and when `askShared`, from the shared tier (copied into the store for the next time).
    func freshEntry(_ key: CacheKey, maxAge: Int64?, askShared: Bool = true, logger: Logger) async -> CacheEntry? {
        do {
            if let entry = try store.lookup(key), isFresh(entry, maxAge: maxAge) { return entry }
        } catch {
            logger.error("store lookup failed", metadata: ["store.error": "\(error)"])
        }
        guard askShared, let shared, let entry = await shared.lookup(key), isFresh(entry, maxAge: maxAge) else { return nil }
        keepLocally(entry, for: key)
        return entry
    }

    /// Not expired, and no older than `maxAge` seconds when given.
    private func isFresh(_ entry: CacheEntry, maxAge: Int64?) -> Bool {
        let now = now()
        return now < entry.expiresAt && maxAge.map { now - entry.storedAt <= $0 * 1000 } != false
    }

    /// Copies an entry of the shared tier into the store, without holding up the answer.
    private func keepLocally(_ entry: CacheEntry, for key: CacheKey) {
        Task { [store] in await store.store(entry, for: key) }
    }

    /// Answers a miss of the store; with a shared tier, from there or with one upstream call for the
    /// whole cluster: the instance that claims the key calls, the others wait (up to
    /// `upstream.timeout`) for the answer it stores, and call upstream themselves only when none comes
    /// or the tier is degraded.
    private func fetchOnceInCluster(_ prepared: Prepared, logger: Logger) async throws(ProxyError) -> UpstreamAnswer {
        guard let shared else { return try await fetch(prepared, store: true, logger: logger) }
        func fromShared(_ entry: CacheEntry, coalesced: Bool) -> UpstreamAnswer {
            keepLocally(entry, for: prepared.key)
            return UpstreamAnswer(entry: entry, coalescedInCluster: coalesced)
        }
        switch await shared.claim(prepared.key, for: configuration.upstream.timeout) {
        case .found(let entry) where isFresh(entry, maxAge: prepared.controls.maxAge):
            return fromShared(entry, coalesced: false)
        case .won(let token):
            // Waiters look for the stored answer, not the claim: releasing it need not hold up this one.
            defer { Task { await shared.release(prepared.key, token: token) } }
            return try await fetch(prepared, store: true, logger: logger)
        case .taken:
            if let entry = await shared.awaitEntry(prepared.key, until: .now + configuration.upstream.timeout) {
                return fromShared(entry, coalesced: true)
            }
            return try await fetch(prepared, store: true, logger: logger)
        case .found, .unavailable:
            return try await fetch(prepared, store: true, logger: logger)
        }
    }

    /// Calls upstream once and, when allowed and the answer is complete, stores it before returning.
    private func fetch(_ prepared: Prepared, store shouldStore: Bool, logger: Logger) async throws(ProxyError) -> UpstreamAnswer {
        let (response, ticket, fallback) = try await callUpstreamOrFallback(prepared)
        let body = try await response.collect(upTo: configuration.limits.maxBody)
        let headers = response.replayableHeaders
        let status = response.status
        let parsed = StorePolicy.parse(body)
        let usage = StorePolicy.usage(parsed)
        ledger.recordUpstreamCall(model: ticket.model, status: status, tokens: usage)
        quota.recordTokens(ticket, tokens: usage.prompt)
        if status == 200 { access.recordAccepted(credentialTag: prepared.credentialTag) }
        var stored = false
        // A fallback model's answer is never stored under the first model's key.
        if shouldStore, fallback == nil, StorePolicy.isStorable(prepared.route.operation, status: status, answer: parsed, request: prepared.request) {
            stored = await save(status: status, headers: headers, body: body, usage: usage, prepared: prepared)
        }
        logger.debug(
            "upstream answered",
            metadata: ["cache.key": "\(prepared.key.hex)", "upstream.status": "\(status)", "cache.stored": "\(stored)"]
        )
        return UpstreamAnswer(status: status, headers: headers, body: body, usage: usage, stored: stored, fallback: fallback, entry: nil)
    }

    /// The upstream exchange of a cached route; when the model is out of quota (a 429 after the retries,
    /// or the quota guard's refusal) and `fallback` names another, that model answers instead.
    /// - Returns: The answer, the quota ticket of the model that gave it, and that model's id when it was the fallback.
    func callUpstreamOrFallback(_ prepared: Prepared) async throws(ProxyError) -> (UpstreamResponse, ticket: QuotaGuard.Ticket, fallback: String?) {
        let next = prepared.route.model.isEmpty ? nil : configuration.fallback[prepared.model]
        var response: UpstreamResponse?
        do {
            let (answer, ticket) = try await callUpstream(prepared, body: prepared.route.isGET ? nil : prepared.body)
            if answer.status != 429 || next == nil { return (answer, ticket, nil) }
            response = answer
        } catch  where error.status == .tooManyRequests && next != nil {
            response = nil  // the quota guard refused: the fallback model may still have room
        }
        guard let next else { throw .outOfQuota }
        if response != nil { ledger.recordUpstreamCall(model: prepared.model, status: 429, tokens: .zero) }
        let target = try prepared.target.replacingPath(
            prepared.target.path.replacingOccurrences(of: "/models/\(prepared.route.model):", with: "/models/\(next):")
        )
        let (answer, ticket) = try await callUpstream(prepared, body: prepared.body, target: target, model: next)
        return (answer, ticket, next)
    }

    /// One upstream exchange for a cached route, with retries (SPEC §6), admitted by the quota guard
    /// for the partition whose quota it uses: the upstream key it goes out with (managed mode) or the
    /// client's credential (passthrough). A call the upstream refused for the credential is given back.
    func callUpstream(
        _ prepared: Prepared,
        body: [UInt8]?,
        target: UpstreamTarget? = nil,
        model: String? = nil
    ) async throws(ProxyError) -> (UpstreamResponse, QuotaGuard.Ticket) {
        let lease = upstream.keys?.lease()
        let ticket = QuotaGuard.Ticket(model: model ?? prepared.model, partition: lease?.fingerprint ?? prepared.credentialTag)
        try await quota.admit(ticket)
        let response = try await upstream.exchange(
            method: prepared.route.isGET ? .get : .post,
            target: target ?? prepared.target,
            headers: prepared.headers,
            body: body,
            lease: lease,
            maxBody: configuration.limits.maxBody
        ) { [quota] status, body in quota.learn(ticket, status: status, body: body) }
        if [400, 401, 403].contains(response.status) { quota.refund(ticket) }
        return (response, ticket)
    }

    /// Stores an answer under the request's key with its TTL, unless it is larger than `max_entry_size`
    /// or the TTL is 0 (`X-Gemcache-TTL: 0`).
    func save(status: Int, headers: [(name: String, value: String)], body: [UInt8], usage: TokenUsage, prepared: Prepared) async -> Bool {
        let ttl = prepared.controls.ttlSeconds.map { $0 * 1000 } ?? configuration.cache.ttl(for: prepared.route.operation).milliseconds
        guard body.count <= configuration.cache.maxEntrySize, ttl > 0 else { return false }
        let storedAt = now()
        let entry = CacheEntry(
            status: status,
            headerBlock: CacheEntry.headerBlock(headers),
            body: body,
            storedAt: storedAt,
            expiresAt: storedAt + ttl,
            model: prepared.model,
            namespace: prepared.controls.namespace,
            endpoint: prepared.route.endpoint,
            promptTokens: usage.prompt,
            totalTokens: usage.total,
            scope: prepared.scope
        )
        let stored = await store.store(entry, for: prepared.key, alias: rawKey(prepared))
        if let shared { await shared.store(entry, for: prepared.key) }
        return stored
    }

    /// Answers from a stored entry: a fresh one (HIT) or, when the upstream failed, an expired one (STALE,
    /// with a negative `ttl` in `Cache-Status`).
    func hit(_ entry: CacheEntry, prepared: Prepared, outcome: CacheOutcome = .hit) -> Response {
        if outcome == .hit { recordAlias(prepared) }
        ledger.recordAnswer(
            model: prepared.model,
            outcome: outcome,
            status: entry.status,
            tokens: TokenUsage(prompt: entry.promptTokens, total: entry.totalTokens)
        )
        let key = prepared.key
        let now = now()
        var headers = HTTPFields(entry.headers.compactMap { pair in HTTPField.Name(pair.name).map { HTTPField(name: $0, value: pair.value) } })
        headers[.age] = String(max(0, (now - entry.storedAt) / 1000))
        headers[.gemcache] = outcome.rawValue
        headers[.gemcacheKey] = key.hex
        let ttl = outcome == .stale ? (entry.expiresAt - now) / 1000 - 1 : max(0, (entry.expiresAt - now) / 1000)
        headers[.cacheStatus] = "gemcache; hit; ttl=\(ttl); key=\"\(key.hex)\""
        return Response(status: .init(code: entry.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: entry.body)))
    }

    private func respond(_ answer: UpstreamAnswer, outcome: CacheOutcome, prepared: Prepared) -> Response {
        ledger.recordAnswer(model: prepared.model, outcome: outcome, status: answer.status, tokens: answer.usage)
        var headers = forwardedHeaders(answer.headers, outcome: outcome, status: answer.status, stored: answer.stored, key: prepared.key)
        headers[.gemcacheFallback] = answer.fallback
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// An upstream answer's headers plus `X-Gemcache`, `X-Gemcache-Key` and `Cache-Status`.
    func forwardedHeaders(_ upstream: [(name: String, value: String)], outcome: CacheOutcome, status: Int, stored: Bool, key: CacheKey) -> HTTPFields
    {
        var headers = HTTPFields(upstream.compactMap { pair in HTTPField.Name(pair.name).map { HTTPField(name: $0, value: pair.value) } })
        headers[.gemcache] = outcome.rawValue
        headers[.gemcacheKey] = key.hex
        let forward =
            switch outcome {
            case .bypass: "fwd=bypass"
            case .refresh: "fwd=request"
            case .coalesced: "fwd=miss; collapsed"
            default: "fwd=miss"
            }
        headers[.cacheStatus] = "gemcache; \(forward); fwd-status=\(status)\(stored ? "; stored" : "")"
        return headers
    }

    // MARK: - Everything else

    /// Streams a request that is not cached to the upstream and its answer back, both ways unbuffered.
    func passThrough(_ request: Request, target: UpstreamTarget, context: some RequestContext) async throws -> Response {
        do {
            try access.admit(credential: Credential(headers: request.headers, query: ForwardedRequest.queryItems(target.query)))
        } catch {
            ledger.recordRejected()
            throw error
        }
        let length = request.headers[.contentLength].flatMap { Int64($0) }
        let upload = length.map { $0 > 0 } ?? (request.headers[.transferEncoding] != nil) ? UploadBody(request.body) : nil
        let response: HTTPClientResponse
        do {
            response = try await upstream.send(
                method: request.method,
                target: target,
                headers: ForwardedRequest.upstreamHeaders(request.headers, dropCacheControls: false),
                body: upload.map { .stream($0.chunks, length: length.map { .known($0) } ?? .unknown) },
                decode: false
            )
        } catch {
            await upload?.finish()
            throw error
        }
        var headers = HTTPFields()
        for header in response.headers where !ForwardedRequest.hopByHop.subtracting(["content-length"]).contains(header.name.lowercased()) {
            if let name = HTTPField.Name(header.name) { headers.append(HTTPField(name: name, value: header.value)) }
        }
        headers[.gemcache] = "PASS"
        headers[.cacheStatus] = "gemcache; fwd=bypass"
        // Hummingbird reads what is left of the request body once the response ends: never while the upload still does.
        return Response(
            status: .init(code: Int(response.status.code)),
            headers: headers,
            body: ResponseBody { writer in
                do {
                    for try await chunk in response.body { try await writer.write(chunk) }
                } catch {
                    await upload?.finish()
                    throw error
                }
                await upload?.finish()
                try await writer.finish(nil)
            }
        )
    }
}

extension GeminiProxy.UpstreamAnswer {
    /// A stored entry that answers a miss after all (it landed while the request waited).
    init(entry: CacheEntry, coalescedInCluster: Bool = false) {
        self.init(
            status: entry.status,
            headers: entry.headers,
            body: entry.body,
            usage: TokenUsage(prompt: entry.promptTokens, total: entry.totalTokens),
            stored: true,
            entry: entry,
            coalescedInCluster: coalescedInCluster
        )
    }
}
