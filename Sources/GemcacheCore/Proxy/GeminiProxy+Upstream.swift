import AsyncHTTPClient
import Foundation
import GemcacheKey
import GemcacheStore
import HTTPTypes
import Logging
import NIOCore

/// A miss's flight: who calls upstream, the call (retries, quota guard, fallback), and storing.
extension GeminiProxy {
    /// Fills a miss's flight, in its own task. It looks once more in the store when `looksAgain` (an
    /// entry may have landed since the lookup), then, when `claims`, follows the cluster's policy: the
    /// instance that claims the key in the shared tier calls upstream, the others wait (up to
    /// `upstream.timeout`) for the answer it stores, and call upstream themselves only when none comes
    /// or the tier is degraded.
    func fill(_ flight: Flight, _ prepared: Prepared, store: Bool, looksAgain: Bool, claims: Bool, logger: Logger) async -> Flight.Ending {
        let maxAge = prepared.controls.maxAge
        if looksAgain, let entry = await tiers.fresh(prepared.key, maxAge: maxAge, depth: 1, logger: logger) {
            flight.begin(.stored(entry, inCluster: false))
            return Flight.Ending(stored: true)
        }
        guard claims, let shared else { return await callUpstream(into: flight, prepared, store: store, logger: logger) }
        func fromShared(_ entry: CacheEntry, inCluster: Bool) -> Flight.Ending {
            tiers.keepNearer(entry, for: prepared.key, than: 1)
            flight.begin(.stored(entry, inCluster: inCluster))
            return Flight.Ending(stored: true)
        }
        switch await shared.claim(prepared.key, for: configuration.upstream.timeout) {
        case .found(let entry) where tiers.isFresh(entry, maxAge: maxAge):
            return fromShared(entry, inCluster: false)
        case .won(let token):
            // Waiters look for the stored answer, not the claim: releasing it need not hold up this one.
            defer { Task { await shared.release(prepared.key, token: token) } }
            return await callUpstream(into: flight, prepared, store: store, logger: logger)
        case .taken:
            if let entry = await shared.awaitEntry(prepared.key, until: .now + configuration.upstream.timeout) {
                return fromShared(entry, inCluster: true)
            }
            return await callUpstream(into: flight, prepared, store: store, logger: logger)
        case .found, .unavailable:
            return await callUpstream(into: flight, prepared, store: store, logger: logger)
        }
    }

    /// Calls upstream once and passes the answer to the flight: a stream chunk by chunk as it arrives
    /// (within `upstream.timeout`, and only until every client has gone when it is not to be stored,
    /// see ``Flight/stopped()``), a whole answer as one chunk once read. A complete answer is stored
    /// (when `store`) before the flight ends, so that a request that follows finds it.
    private func callUpstream(into flight: Flight, _ prepared: Prepared, store: Bool, logger: Logger) async -> Flight.Ending {
        do {
            let (response, ticket, fallback) = try await callUpstreamOrFallback(prepared)
            let status = response.status
            let headers = response.replayableHeaders
            if status == 200 { access.recordAccepted(credentialTag: prepared.scope.credentialTag) }
            let start = Flight.Start.upstream(status: status, headers: headers + (fallback.map { [("X-Gemcache-Fallback", $0)] } ?? []))
            let body: [UInt8]?
            let usage: TokenUsage
            let storable: Bool
            if let framing = prepared.framing {
                flight.begin(start)
                body = try await relay(response, into: flight) ? flight.recorded : nil
                let answers = body.flatMap(framing.answers)
                usage = answers.map(framing.usage) ?? .zero
                storable = status == 200 && answers.map { framing.isComplete($0, request: prepared.request) } == true
            } else {
                let whole = try await response.collect(upTo: configuration.limits.maxBody)
                flight.begin(start)
                await flight.append(ByteBuffer(bytes: whole))
                let parsed = StorePolicy.parse(whole)
                body = whole
                usage = StorePolicy.usage(parsed)
                storable = StorePolicy.isStorable(prepared.route.operation, status: status, answer: parsed, request: prepared.request)
            }
            ledger.recordUpstreamCall(model: ticket.model, status: status, tokens: usage, attribution: prepared.attribution)
            quota.recordTokens(ticket, tokens: usage.prompt)
            var stored = false
            // A fallback model's answer is never stored under the first model's key.
            if store, fallback == nil, storable, let body {
                stored = await save(
                    body,
                    status: status,
                    headers: headers,
                    usage: usage,
                    key: prepared.key,
                    canonical: prepared.canonical,
                    prepared: prepared,
                    alias: rawKey(prepared)
                )
            }
            logger.debug(
                "upstream answered",
                metadata: ["cache.key": "\(prepared.key.hex)", "upstream.status": "\(status)", "cache.stored": "\(stored)"]
            )
            return Flight.Ending(usage: usage, stored: stored)
        } catch let error as ProxyError {
            return Flight.Ending(failure: error)
        } catch {
            return Flight.Ending(failure: UpstreamClient.mapError(error))
        }
    }

    /// Reads a streamed answer into `flight`. Returns whether it was read to its end: once every client
    /// has gone, the stream is read on only to be stored, if it can be; otherwise the reading stops at
    /// once, even while the upstream is silent (which cancels the exchange).
    private func relay(_ response: UpstreamResponse, into flight: Flight) async throws -> Bool {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await response.relay { chunk in
                    await flight.append(chunk)
                    return !flight.hasStopped
                }
            }
            group.addTask {
                await flight.stopped()
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
    }

    /// The upstream exchange of a cached route; when the model is out of quota (a 429 after the retries,
    /// or the quota guard's refusal) and `fallback` names another, that model answers instead.
    /// - Returns: The answer, the quota ticket of the model that gave it, and that model's id when it was the fallback.
    func callUpstreamOrFallback(_ prepared: Prepared) async throws(ProxyError) -> (UpstreamResponse, ticket: QuotaGuard.Ticket, fallback: String?) {
        let next = prepared.route.model.isEmpty ? nil : configuration.fallback[prepared.model]
        var response: UpstreamResponse?
        do {
            let (answer, ticket) = try await exchange(prepared, body: prepared.route.isGET ? nil : prepared.body)
            if answer.status != 429 || next == nil { return (answer, ticket, nil) }
            response = answer
        } catch  where error.status == .tooManyRequests && next != nil {
            response = nil  // the quota guard refused: the fallback model may still have room
        }
        guard let next else { throw .outOfQuota }
        if response != nil { ledger.recordUpstreamCall(model: prepared.model, status: 429, tokens: .zero, attribution: prepared.attribution) }
        let target = try prepared.target.replacingPath(
            prepared.target.path.replacingOccurrences(of: "/models/\(prepared.route.model):", with: "/models/\(next):")
        )
        let (answer, ticket) = try await exchange(prepared, body: prepared.body, target: target, model: next)
        return (answer, ticket, next)
    }

    /// One upstream exchange for a cached route, with retries (SPEC §6), admitted by the quota guard
    /// for the partition whose quota it uses: the upstream key it goes out with (managed mode) or the
    /// client's credential (passthrough). A call the upstream refused for the credential is given back.
    func exchange(
        _ prepared: Prepared,
        body: [UInt8]?,
        target: UpstreamTarget? = nil,
        model: String? = nil
    ) async throws(ProxyError) -> (UpstreamResponse, QuotaGuard.Ticket) {
        let lease = upstream.keys?.lease()
        let ticket = QuotaGuard.Ticket(model: model ?? prepared.model, partition: lease?.fingerprint ?? prepared.scope.credentialTag)
        try await quota.admit(ticket)
        let response = try await upstreamCall(headers: prepared.headers) { headers throws(ProxyError) in
            try await upstream.exchange(
                method: prepared.route.isGET ? .get : .post,
                target: target ?? prepared.target,
                headers: headers,
                body: body,
                lease: lease,
                maxBody: configuration.limits.maxBody
            ) { [quota] status, body in quota.learn(ticket, status: status, body: body) }
        }
        if [400, 401, 403].contains(response.status) { quota.refund(ticket) }
        return (response, ticket)
    }

    /// Stores an answer to `prepared` under `key` (the request's, or a batch item's) in every tier, with
    /// its TTL, unless it is larger than `max_entry_size` or the TTL is 0 (`X-Gemcache-TTL: 0`). In
    /// record mode (SPEC §11) the entry keeps its canonical request and never expires.
    /// - Parameter canonical: The normalized body that entered `key`.
    /// - Returns: Whether the store kept it.
    func save(
        _ body: [UInt8],
        status: Int,
        headers: [(name: String, value: String)],
        usage: TokenUsage,
        key: CacheKey,
        canonical: [UInt8],
        prepared: Prepared,
        alias: [UInt8]?
    ) async -> Bool {
        let ttl = prepared.controls.ttlSeconds.map { $0 * 1000 } ?? configuration.cache.ttl(for: prepared.route.operation).milliseconds
        guard body.count <= configuration.cache.maxEntrySize, ttl > 0 else { return false }
        let storedAt = now()
        let records = configuration.cache.mode == .record
        let entry = CacheEntry(
            status: status,
            headerBlock: CacheEntry.headerBlock(headers),
            body: body,
            storedAt: storedAt,
            expiresAt: records ? EntryRecord.times.upperBound : storedAt + ttl,
            model: prepared.model,
            namespace: prepared.controls.namespace,
            endpoint: prepared.route.endpoint,
            promptTokens: usage.prompt,
            totalTokens: usage.total,
            scope: prepared.scope.kind,
            request: records ? prepared.recorded(canonical: canonical) : nil
        )
        return await traced("store commit") { _ in await tiers.keep(entry, for: key, alias: alias) }
    }
}
