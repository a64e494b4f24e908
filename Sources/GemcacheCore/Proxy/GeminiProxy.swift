import GemcacheKey
import GemcacheStore
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// The caching proxy's request pipeline for cached routes, read top to bottom: admit → key → look up
/// the tiers → coalesce → call upstream → store → answer (SPEC §2–§6).
///
/// The steps' details live beside it: the upstream call and storing in `GeminiProxy+Upstream.swift`,
/// batch embedding's per-item variant in `GeminiProxy+BatchEmbed.swift`, the raw-key aliases of the
/// fast path in `GeminiProxy+Alias.swift`, and routes that are not cached in
/// `GeminiProxy+PassThrough.swift`.
public final class GeminiProxy: Sendable {
    let configuration: ProxyConfiguration
    /// The store on this machine: the first tier, and the one that keeps aliases and stale entries.
    let store: CacheStore
    /// The shared second tier, when `store.shared` names one.
    let shared: SharedTier?
    let tiers: CacheTiers
    let ledger: Ledger
    let access: AccessControl
    let quota: QuotaGuard
    let upstream: UpstreamClient
    /// The recorded requests, in replay mode (SPEC §11), which answers a miss with the nearest one.
    let replay: ReplayIndex?
    let coalescer = Coalescer()
    /// Traces of the requests, when `telemetry.otlp_endpoint` is set.
    let tracing: RequestTracing?
    let now: @Sendable () -> Int64

    init(
        configuration: ProxyConfiguration,
        store: CacheStore,
        shared: SharedTier? = nil,
        ledger: Ledger,
        access: AccessControl,
        upstream: UpstreamClient,
        replay: ReplayIndex? = nil,
        tracing: RequestTracing? = nil,
        now: @escaping @Sendable () -> Int64 = CacheStore.wallClock
    ) {
        self.configuration = configuration
        self.store = store
        self.shared = shared
        self.tiers = CacheTiers(tiers: [store] + (shared.map { [$0] } ?? []), now: now)
        self.ledger = ledger
        self.access = access
        self.quota = QuotaGuard(configuration: configuration.limits, now: now)
        self.upstream = upstream
        self.replay = replay
        self.tracing = tracing
        self.now = now
    }

    /// A request on a cached route, read and keyed.
    struct Prepared: Sendable {
        let route: CachedRoute
        let target: UpstreamTarget
        let query: [(name: String, value: String)]
        /// The headers that go upstream.
        let headers: [(name: String, value: String)]
        let body: [UInt8]
        let credential: Credential
        let key: CacheKey
        let scope: KeyScope
        /// The model the request counts under: the path's, or the body's on the OpenAI surface.
        let model: String
        let controls: RequestControls
        /// How the answer streams, for streaming requests.
        let framing: StreamFraming?
        /// The normalized body, as it entered the key.
        let canonical: [UInt8]
        /// `X-Goog-FieldMask`, as it entered the key.
        let fieldMask: String?

        /// The body parsed, for the storing rules; parsed only when an answer may be stored, so that a
        /// hit pays for one parse (the key's), not two.
        var request: Any? { route.isGET ? nil : StorePolicy.parse(body) }

        /// Whom the request is counted for.
        var attribution: Attribution {
            Attribution(namespace: controls.namespace, client: Attribution.client(credentialTag: scope.credentialTag))
        }

        /// The canonical request of a recording (SPEC §11) with `canonical` as its body: the request's,
        /// or a batch item's.
        func recorded(canonical: [UInt8]) -> [UInt8] {
            RecordedRequest.json(
                path: target.path,
                query: keyQuery(query, isGET: route.isGET),
                fieldMask: fieldMask,
                namespace: controls.namespace,
                canonical: canonical
            )
        }
    }

    // MARK: - Admit and key

    /// Handles a request on a cached route.
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
            var model = route.model
            var attribution: Attribution?
            do {
                // Only the response forms the proxy can frame and record; anything else never reaches Google.
                if let alt, !["json", "json;enum-encoding=int", "sse"].contains(alt) {
                    throw ProxyError.invalidArgument(
                        "Invalid value at 'alt' (\(alt)): gemcache serves alt=json, alt=json;enum-encoding=int and alt=sse."
                    )
                }
                let prepared = try await prepare(request, target: target, route: route, query: query, credential: credential)
                model = prepared.model
                attribution = prepared.attribution
                if route.operation == .batchEmbedContents, prepared.framing == nil {
                    return try await batchEmbed(prepared, logger: context.logger)
                }
                return try await answer(prepared, connection: context.channel, logger: context.logger)
            } catch {
                // Answered requests were counted with their answer; this one is counted with its error.
                let client = Attribution.client(credentialTag: scopeTag(credential: credential.value, salt: store.scopeSalt))
                ledger.recordError(model: model, attribution: attribution ?? Attribution(namespace: nil, client: client))
                throw error
            }
        } catch var error as ProxyError {
            // Google wraps its errors in an array on the OpenAI surface and on JSON-array streams.
            error.wrapped = route.isOpenAI || (route.operation == .streamGenerateContent && alt != "sse")
            throw error
        }
    }

    /// The request's one credential, admitted (SPEC §8): more than one is a 400; in managed mode it
    /// must be a proxy token (401); in passthrough mode a cached route needs one (Google's 403); replay
    /// needs none (SPEC §11).
    private func admit(_ headers: HTTPFields, query: [(name: String, value: String)]) throws(ProxyError) -> Credential {
        try access.admitCached(credential: Credential(headers: headers, query: query))
    }

    /// Reads the body (up to `limits.max_body`) and keys the request (SPEC §3).
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
            target: target,
            query: query,
            headers: ForwardedRequest.upstreamHeaders(request.headers, dropCacheControls: true),
            body: body,
            credential: credential,
            key: keyed.key,
            scope: keyed.scope,
            model: keyed.model,
            controls: keyed.controls,
            framing: framing,
            canonical: keyed.canonical,
            fieldMask: RequestKey.fieldMask(request.headers)
        )
    }

    // MARK: - Look up, coalesce, answer

    /// Answers a keyed request from the tiers or, on a miss, from the flight it leads or joins. A
    /// streaming answer is relayed chunk by chunk as the upstream sends it; a whole one once it is
    /// complete (and stored).
    ///
    /// A streaming client whose `connection` ends (it closed it, or only its sending side, which nginx
    /// too counts as gone) leaves the flight at once, not at its next write a chunk or two later: when
    /// it was the last and `cache.finish_aborted_streams` is off, the upstream is read no further.
    func answer(_ prepared: Prepared, connection: (any Channel)?, logger: Logger) async throws -> Response {
        let controls = prepared.controls
        // A shared-scope client the upstream has not vouched for lately is neither served cached
        // answers nor joined with others: its own call verifies it (SPEC §8).
        let servesCached = access.mayServeCached(credentialTag: prepared.scope.credentialTag) && !controls.noCache && !controls.noStore
        // A whole answer's miss claims its key in the cluster, which looks in the shared tier as it claims.
        let claims = servesCached && shared != nil && prepared.framing == nil && !controls.onlyIfCached

        if let replay {
            // Replay answers every request from the recordings, whatever its cache controls ask.
            guard let entry = await tiers.fresh(prepared.key, maxAge: nil, logger: logger) else {
                throw replay.notRecorded(prepared.recorded(canonical: prepared.canonical), model: prepared.model, endpoint: prepared.route.endpoint)
            }
            return hit(entry, prepared: prepared)
        }
        if servesCached, let entry = await lookUp(prepared, claims: claims, logger: logger) {
            return hit(entry, prepared: prepared)
        }
        if controls.onlyIfCached { throw ProxyError.notCached }

        let seat = coalescer.join(
            prepared.key,
            shared: servesCached,
            limit: prepared.framing == nil ? configuration.limits.maxBody : configuration.cache.maxEntrySize,
            finishingAbandoned: prepared.framing == nil || configuration.cache.finishAbortedStreams
        ) { flight in
            await self.fill(flight, prepared, store: !controls.noStore, looksAgain: servesCached, claims: claims, logger: logger)
        }
        if prepared.framing != nil, let connection {
            try? await connection.setOption(ChannelOptions.allowRemoteHalfClosure, value: false).get()
            connection.closeFuture.whenComplete { [leave = seat.chunks.leaving] _ in leave() }
        }

        let start: Flight.Start
        do {
            start = try await seat.flight.start()
        } catch {
            if let stale = await staleEntry(for: prepared) { return hit(stale, prepared: prepared, outcome: .stale) }
            throw error
        }
        switch start {
        case .stored(let entry, let inCluster):
            return hit(entry, prepared: prepared, outcome: inCluster ? .coalesced : .hit)
        case .upstream(let status, let headers):
            if Self.isUpstreamFailure(status), let stale = await staleEntry(for: prepared) {
                return hit(stale, prepared: prepared, outcome: .stale)
            }
            let outcome: CacheOutcome = controls.noStore ? .bypass : controls.noCache ? .refresh : seat.led ? .miss : .coalesced
            if prepared.framing != nil {
                return streamed(seat, status: status, headers: headers, outcome: outcome, prepared: prepared)
            }
            return try await whole(seat, status: status, headers: headers, outcome: outcome, prepared: prepared)
        }
    }

    /// The fresh entry of `prepared`'s key (asking only the first tier when the miss `claims` the key).
    private func lookUp(_ prepared: Prepared, claims: Bool, logger: Logger) async -> CacheEntry? {
        await traced("store lookup") { _ in
            await tiers.fresh(prepared.key, maxAge: prepared.controls.maxAge, depth: claims ? 1 : nil, logger: logger)
        }
    }

    /// Failures that `cache.stale_if_error` may paper over: out of quota, upstream errors.
    static func isUpstreamFailure(_ status: Int) -> Bool { status == 429 || status >= 500 }

    /// An expired entry of `prepared`'s key still within `cache.stale_if_error` of its expiry (SPEC §6),
    /// and only for a client that may be served a cached answer at all (SPEC §8: STALE follows the same
    /// verification as HIT).
    func staleEntry(for prepared: Prepared) async -> CacheEntry? {
        let window = configuration.cache.staleIfError.milliseconds
        guard window > 0, access.mayServeCached(credentialTag: prepared.scope.credentialTag), let entry = try? store.lookup(prepared.key) else {
            return nil
        }
        let now = now()
        return now >= entry.expiresAt && now < entry.expiresAt + window ? entry : nil
    }

    // MARK: - Writing the answer

    /// Answers from a stored entry: a fresh one (HIT) or, when the upstream failed, an expired one (STALE,
    /// with a negative `ttl` in `Cache-Status`).
    func hit(_ entry: CacheEntry, prepared: Prepared, outcome: CacheOutcome = .hit) -> Response {
        if outcome == .hit { recordAlias(prepared) }
        let tokens = TokenUsage(prompt: entry.promptTokens, total: entry.totalTokens)
        ledger.recordAnswer(model: prepared.model, outcome: outcome, status: entry.status, tokens: tokens, attribution: prepared.attribution)
        traceAnswer(prepared, tokens: tokens)
        return HitAnswer.response(entry, key: prepared.key, now: now(), outcome: outcome)
    }

    /// A whole upstream answer, once its flight has ended (so that `stored` is known).
    private func whole(
        _ seat: Coalescer.Seat,
        status: Int,
        headers: [(name: String, value: String)],
        outcome: CacheOutcome,
        prepared: Prepared
    ) async throws -> Response {
        var body: ByteBuffer?
        for try await chunk in seat.chunks {
            if body == nil { body = chunk } else { body!.writeImmutableBuffer(chunk) }
        }
        let ending = seat.flight.ending ?? Flight.Ending()
        ledger.recordAnswer(model: prepared.model, outcome: outcome, status: status, tokens: ending.usage, attribution: prepared.attribution)
        traceAnswer(prepared, tokens: ending.usage)
        let headers = forwardedHeaders(headers, outcome: outcome, status: status, stored: ending.stored, key: prepared.key)
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: body ?? ByteBuffer()))
    }

    /// A streamed upstream answer, relayed chunk by chunk as the flight receives it; counted once it ends.
    private func streamed(
        _ seat: Coalescer.Seat,
        status: Int,
        headers: [(name: String, value: String)],
        outcome: CacheOutcome,
        prepared: Prepared
    ) -> Response {
        let (ledger, model, attribution, flight, chunks) = (self.ledger, prepared.model, prepared.attribution, seat.flight, seat.chunks)
        // The body is written after the request's task let go of its span: it is recorded on the one captured here.
        let span = tracing?.requestSpan
        return Response(
            status: .init(code: status),
            headers: forwardedHeaders(headers, outcome: outcome, status: status, stored: false, key: prepared.key),
            body: ResponseBody { writer in
                do {
                    for try await chunk in chunks { try await writer.write(chunk) }
                } catch {
                    ledger.recordAnswer(model: model, outcome: outcome, status: status, tokens: .zero, attribution: attribution)
                    throw error
                }
                ledger.recordAnswer(model: model, outcome: outcome, status: status, tokens: flight.ending?.usage ?? .zero, attribution: attribution)
                self.traceAnswer(prepared, tokens: flight.ending?.usage ?? .zero, span: span)
                try await writer.finish(nil)
            }
        )
    }

    /// An upstream answer's headers plus `X-Gemcache`, `X-Gemcache-Key` and `Cache-Status`.
    func forwardedHeaders(_ upstream: [(name: String, value: String)], outcome: CacheOutcome, status: Int, stored: Bool, key: CacheKey) -> HTTPFields
    {
        var headers = HTTPFields(pairs: upstream)
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
}
