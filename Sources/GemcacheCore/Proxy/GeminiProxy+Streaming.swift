import AsyncHTTPClient
import GemcacheKey
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

extension GeminiProxy {
    /// Answers a streaming request: a hit replays the recorded stream with its framing; a miss relays
    /// the upstream stream chunk by chunk as it arrives while recording it, and stores it if it
    /// completed. Identical concurrent misses share one upstream stream (COALESCED) while it is still
    /// recorded whole; one that grew past `cache.max_entry_size` cannot be joined, and a request that
    /// comes then makes its own upstream call (MISS).
    ///
    /// A client whose `connection` ends (it closed it, or only its sending side, which nginx too counts
    /// as gone) leaves the stream at once, not at its next write a chunk or two later: when it was the
    /// last and `cache.finish_aborted_streams` is off, the upstream is read no further.
    func stream(_ prepared: Prepared, connection: any Channel, logger: Logger) async throws -> Response {
        let controls = prepared.controls
        let trusted = access.mayServeCached(credentialTag: prepared.credentialTag)
        if let stored = try await answerFromStore(prepared, trusted: trusted, logger: logger) {
            return stored
        }
        let coalesce = trusted && !controls.noCache && !controls.noStore
        let limit = configuration.cache.maxEntrySize
        let (recording, chunks, led) = recordings.withLock { recordings in
            if coalesce, let running = recordings[prepared.key], let chunks = running.subscribe() { return (running, chunks, false) }
            let (recording, chunks) = StreamRecording.started(limit: limit, finishingAbandoned: configuration.cache.finishAbortedStreams)
            if coalesce { recordings[prepared.key] = recording }
            return (recording, chunks, true)
        }
        try? await connection.setOption(ChannelOptions.allowRemoteHalfClosure, value: false)
        connection.closeFuture.whenComplete { [leave = chunks.leaving] _ in leave() }
        if led {
            Task { await self.record(prepared, into: recording, store: !controls.noStore, shared: coalesce, logger: logger) }
        }
        let head: StreamRecording.Head
        do {
            head = try await recording.head()
        } catch {
            if let stale = await staleEntry(for: prepared) { return hit(stale, prepared: prepared, outcome: .stale) }
            throw error
        }
        if Self.isUpstreamFailure(head.status), let stale = await staleEntry(for: prepared) {
            return hit(stale, prepared: prepared, outcome: .stale)
        }
        let outcome: CacheOutcome = controls.noStore ? .bypass : controls.noCache ? .refresh : led ? .miss : .coalesced
        let headers = forwardedHeaders(head.headers, outcome: outcome, status: head.status, stored: false, key: prepared.key)
        let ledger = self.ledger
        let model = prepared.model
        return Response(
            status: .init(code: head.status),
            headers: headers,
            body: ResponseBody { writer in
                do {
                    for try await chunk in chunks { try await writer.write(chunk) }
                } catch {
                    ledger.recordAnswer(model: model, outcome: outcome, status: head.status, tokens: .zero)
                    throw error
                }
                ledger.recordAnswer(model: model, outcome: outcome, status: head.status, tokens: recording.usage)
                try await writer.finish(nil)
            }
        )
    }

    /// Reads the upstream stream into `recording` to its end, within `upstream.timeout`, or until every
    /// client has gone and it is not to be stored (``StreamRecording/stopped()``), then stores it if it
    /// is complete. The stream ends for its clients only once the entry is committed, so a request that
    /// follows finds it.
    private func record(_ prepared: Prepared, into recording: StreamRecording, store shouldStore: Bool, shared: Bool, logger: Logger) async {
        var failure: ProxyError?
        var usage = TokenUsage.zero
        do {
            usage = try await read(prepared, into: recording, store: shouldStore, logger: logger)
        } catch let error as ProxyError {
            failure = error
        } catch {
            failure = UpstreamClient.mapError(error)
        }
        if shared {
            recordings.withLock { recordings in
                if recordings[prepared.key] === recording { recordings.removeValue(forKey: prepared.key) }
            }
        }
        recording.end(failure: failure, usage: usage)
    }

    private func read(_ prepared: Prepared, into recording: StreamRecording, store shouldStore: Bool, logger: Logger) async throws -> TokenUsage {
        guard let framing = prepared.framing else { return .zero }
        let (response, ticket, fallback) = try await callUpstreamOrFallback(prepared)
        let status = response.status
        let headers = response.replayableHeaders
        if status == 200 { access.recordAccepted(credentialTag: prepared.credentialTag) }
        recording.begin(.init(status: status, headers: headers + (fallback.map { [("X-Gemcache-Fallback", $0)] } ?? [])))
        // Once every client has gone, the stream is read on only to be stored, if it can be; otherwise
        // the reading stops at once, even while the upstream is silent (which cancels the exchange).
        let finished = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await response.relay { chunk in
                    await recording.append(chunk)
                    return !recording.hasStopped
                }
            }
            group.addTask {
                await recording.stopped()
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
        let recorded = finished ? recording.recorded : nil
        let answers = recorded.flatMap(framing.answers)
        let usage = answers.map(framing.usage) ?? .zero
        ledger.recordUpstreamCall(model: ticket.model, status: status, tokens: usage)
        quota.recordTokens(ticket, tokens: usage.prompt)
        var stored = false
        // A fallback model's answer is never stored under the first model's key.
        if shouldStore, fallback == nil, status == 200, let recorded, let answers, framing.isComplete(answers, request: prepared.request) {
            stored = await save(status: status, headers: headers, body: recorded, usage: usage, prepared: prepared)
        }
        logger.debug(
            "upstream stream ended",
            metadata: ["cache.key": "\(prepared.key.hex)", "upstream.status": "\(status)", "cache.stored": "\(stored)"]
        )
        return usage
    }
}
