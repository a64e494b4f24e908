import GemcacheKey
import GemcacheStore
import NIOCore
import NIOHTTP1

/// The first handler of every connection: answers cache hits (every kind of request ``RawRequestKey``
/// looks up, with its credential in any of its three places) straight from the received bytes and
/// passes every other request, byte for byte, to NIO's HTTP decoder and Hummingbird behind it.
///
/// Per hit of a repeat it parses the head in place, hashes the raw request (``RawKeyHasher``), follows
/// the alias and reads the entry in one LMDB read transaction on the event loop, and writes one buffer:
/// status line, stored header lines, the per-request headers and the body. No `HTTPHeaders`, strings,
/// JSON, tasks or log lines. Measured on 2 cores against nginx `proxy_cache`: benchmarks/RESULTS.md.
/// Bytes without an alias are keyed as the slow path keys them (``FastPath/canonicalKey(method:target:scope:namespace:body:)``:
/// the body normalized, so strings and JSON there) and, on a hit, answered the same way.
///
/// Order of answers: while a passed-on request is unanswered (``slowRequestsPending``, counted down
/// by ``FastPathResponseCounter`` as Hummingbird finishes each answer), every later request is passed
/// on too, so that answers never overtake each other on a pipelined connection.
///
/// Slow clients: a connection whose client sent nothing for `limits.client_timeout` while the proxy
/// waits for it (an unfinished head or body, or idle between requests) is closed; one whose answer is
/// still being produced is not. That holds too for connections handed to NIO's decoder for good,
/// whose requests ``FastPathRequestObserver`` follows behind the decoder.
final class FastPathHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Mode {
        /// At the start of a request.
        case parsing
        /// Passing on the rest of a passed-on request's body.
        case forwardingBody(remaining: Int)
        /// Framing this handler does not follow was seen: everything goes to NIO's decoder from now on.
        case passthrough
    }

    private let fastPath: FastPath
    private let hasher: RawKeyHasher
    private var mode = Mode.parsing
    /// Received bytes not yet answered or passed on.
    private var pending: ByteBuffer?
    /// Passed-on requests whose answer has not been fully written yet.
    var slowRequestsPending = 0
    /// Requests NIO's decoder has begun whose answer has not been fully written yet, and whether the
    /// body of the last one is still arriving (what the stall check needs once in `passthrough` mode).
    var decodedRequestsInFlight = 0
    var decodingRequest = false
    /// The connection switched protocols (a Live API session): no HTTP follows, and the silences of a
    /// WebSocket session are its peers' business, not the stall check's.
    var upgraded = false
    private var wroteAnswer = false
    /// Whether bytes were passed on since the last `channelReadComplete`: only then do the handlers
    /// behind this one hear of the read (for a read of hits alone, telling NIO's decoder and
    /// Hummingbird cost about 4 % of a hit's CPU, in `NIOAsyncChannelHandler` mostly).
    private var passedOn = false
    /// The last credential, its scope tag and its client's name: a connection normally uses one key,
    /// and the HMAC costs more than the rest of a hit.
    private var scopeMemo: (credential: [UInt8], tag: [UInt8], client: String)?
    /// The last hit's model id (as its entry records it) as bytes and as the string the ledger takes.
    private var modelMemo: (bytes: [UInt8], name: String)?
    /// The last hit's namespace, likewise.
    private var namespaceMemo: (bytes: [UInt8], name: String)?
    /// The request target as the raw key covers it (``RawRequestKey/parse(_:method:keyed:)``), reused.
    private var keyedTarget: [UInt8] = []
    private var date = HTTPDate()
    /// Hits not reported to the ledger yet, all of one model, namespace and client (see
    /// ``count(hit:attribution:tokens:duration:context:)``).
    private var unreported: (model: String, attribution: Attribution, count: Int64, tokens: TokenUsage)?
    /// How long each of those took, from the parsed head to the written answer, in nanoseconds.
    private var unreportedDurations: [Int64] = []
    /// When the client last sent bytes or the slow path last finished an answer.
    var lastActivity = NIODeadline.now()
    private var stallCheck: Scheduled<Void>?

    init(fastPath: FastPath) {
        self.fastPath = fastPath
        self.hasher = RawKeyHasher(normalize: fastPath.normalize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastActivity = .now()
        if case .passthrough = mode {
            passedOn = true
            context.fireChannelRead(data)
            return
        }
        if pending == nil {
            pending = bytes
        } else {
            pending!.writeBuffer(&bytes)
        }
        process(context: context)
        if pending?.readableBytes == 0 { pending = nil }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if wroteAnswer {
            wroteAnswer = false
            context.flush()
        }
        if passedOn {
            passedOn = false
            context.fireChannelReadComplete()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        reportHits()
        stallCheck?.cancel()
        context.fireChannelInactive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        lastActivity = .now()
        scheduleStallCheck(context: context, at: lastActivity + fastPath.clientTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        reportHits()
        stallCheck?.cancel()
    }

    /// Closes the connection at `deadline` if the proxy is waiting for the client and it has sent
    /// nothing for the client timeout; otherwise checks again when that could first be the case.
    private func scheduleStallCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        stallCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            if self.upgraded { return }
            let waitingForClient =
                switch self.mode {
                case .parsing: self.slowRequestsPending == 0
                case .forwardingBody: true
                case .passthrough: self.decodingRequest || self.decodedRequestsInFlight == 0
                }
            let due = self.lastActivity + self.fastPath.clientTimeout
            if waitingForClient && due <= .now() {
                context.close(promise: nil)
            } else {
                self.scheduleStallCheck(context: context, at: waitingForClient ? due : .now() + self.fastPath.clientTimeout)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent {
            // A half-closed request stays incomplete: let the decoder see what there is and report it.
            passThrough(context: context)
        }
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if isIdle { context.close(promise: nil) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Graceful shutdown has begun: the connection closes once no request is open on it. Hummingbird's
    /// own connection handler does the same, but exists only once a request has reached it; a
    /// connection whose requests were all fast-path hits has none (``FastPathResponseCounter``
    /// closes one that quiesced during its first slow request).
    var quiescing = false

    /// No request is open on the connection: nothing unparsed, none passed on and unanswered.
    var isIdle: Bool {
        guard case .parsing = mode, !upgraded else { return false }
        return slowRequestsPending == 0 && (pending?.readableBytes ?? 0) == 0
    }

    /// Answers or passes on every complete request in `pending`.
    private func process(context: ChannelHandlerContext) {
        while var buffer = pending, buffer.readableBytes > 0 {
            switch mode {
            case .passthrough:
                return
            case .forwardingBody(let remaining):
                let chunk = min(remaining, buffer.readableBytes)
                passedOn = true
                context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: chunk)!))
                pending = buffer
                mode = chunk == remaining ? .parsing : .forwardingBody(remaining: remaining - chunk)
            case .parsing:
                let parse = buffer.withUnsafeReadableBytes { RequestHead.parse($0, maxLength: FastPath.headLimit) }
                switch parse {
                case .incomplete:
                    return
                case .unsupported:
                    passThrough(context: context)
                    return
                case .head(let head):
                    let size = head.length + head.contentLength
                    // Only a request the fast path may answer waits here for its whole body.
                    if head.answerable, slowRequestsPending == 0, head.contentLength <= fastPath.maxBody, context.channel.isWritable,
                        let method = head.method, let route = lookedUp(head, method: method, in: buffer)
                    {
                        guard buffer.readableBytes >= size else { return }  // wait for the whole body
                        if answer(head, method: method, route: route, in: buffer, context: context) {
                            buffer.moveReaderIndex(forwardBy: size)
                            pending = buffer
                            continue
                        }
                    }
                    // The slow path answers: pass on the head and whatever of the body is here.
                    slowRequestsPending += 1
                    let chunk = min(size, buffer.readableBytes)
                    passedOn = true
                    context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: chunk)!))
                    pending = buffer
                    if chunk < size { mode = .forwardingBody(remaining: size - chunk) }
                }
            }
        }
    }

    /// Hands the connection to NIO's decoder for good, starting with the bytes not yet passed on.
    private func passThrough(context: ChannelHandlerContext) {
        mode = .passthrough
        if let rest = pending, rest.readableBytes > 0 {
            passedOn = true
            context.fireChannelRead(wrapInboundOut(rest))
        }
        pending = nil
    }

    /// The target of a request the fast path looks up (its keyed form in ``keyedTarget``), or nil.
    private func lookedUp(_ head: RequestHead, method: RawRequestKey.Method, in buffer: ByteBuffer) -> RawRequestKey.Target? {
        buffer.withUnsafeReadableBytes { bytes in
            RawRequestKey.parse(UnsafeRawBufferPointer(rebasing: bytes[head.target]), method: method, keyed: &keyedTarget)
        }
    }

    /// Writes the stored answer of a complete request in `buffer`, if there is a fresh one.
    /// - Returns: false when the slow path must answer (no credential or two, no alias and no entry
    ///   under the cache key, entry gone or expired).
    private func answer(
        _ head: RequestHead,
        method: RawRequestKey.Method,
        route: RawRequestKey.Target,
        in buffer: ByteBuffer,
        context: ChannelHandlerContext
    ) -> Bool {
        let started = NIODeadline.now()
        return buffer.withUnsafeReadableBytes { request -> Bool in
            let target = UnsafeRawBufferPointer(rebasing: request[head.target])
            let credentialRange: Range<Int>
            switch (head.credential, route.credential) {
            case (let header?, nil): credentialRange = header
            case (nil, let parameter?):
                credentialRange = (head.target.lowerBound + parameter.lowerBound)..<(head.target.lowerBound + parameter.upperBound)
            default: return false  // none, or one in a header and one in the query: the slow path's 403 or 400
            }
            let credential = UnsafeRawBufferPointer(rebasing: request[credentialRange])
            guard fastPath.admits(credential: credential) else { return false }
            let (tag, client) = scope(credential)
            let body = UnsafeRawBufferPointer(rebasing: request[head.length..<(head.length + head.contentLength)])
            let namespace = head.namespace.map { UnsafeRawBufferPointer(rebasing: request[$0]) }
            var rawKey: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
            return withUnsafeMutableBytes(of: &rawKey) { rawKey -> Bool in
                keyedTarget.withUnsafeBytes { keyedTarget in
                    tag.withUnsafeBytes { tag in
                        hasher.hash(target: keyedTarget, scope: tag, namespace: namespace, body: body, into: rawKey)
                    }
                }
                let now = fastPath.now()
                date.update(milliseconds: now)
                let date = self.date.bytes
                var counted: (model: String, tokens: TokenUsage)?
                var tracedKey: [UInt8]?
                func serve(key: UnsafeRawBufferPointer, record: EntryRecord) {
                    guard let hit = HitAnswer(record: record), now < record.expiresAt else { return }
                    var out = context.channel.allocator.buffer(capacity: 0)
                    hit.write(key: key, now: now, date: date, into: &out)
                    context.write(wrapOutboundOut(out), promise: nil)
                    counted = (modelName(record.model), TokenUsage(prompt: record.promptTokens, total: record.totalTokens))
                    if fastPath.tracing != nil { tracedKey = Array(key) }
                }
                fastPath.store.withAliasedRecord(rawKey: UnsafeRawBufferPointer(rawKey), serve)
                if counted == nil,
                    let key = tag.withUnsafeBytes({
                        fastPath.canonicalKey(method: method, target: target, scope: $0, namespace: namespace, body: body)
                    })
                {
                    key.bytes.withUnsafeBytes { key in fastPath.store.withRecord(key: key) { serve(key: key, record: $0) } }
                    if counted != nil { GeminiProxy.recordAlias(Array(rawKey), for: key, in: fastPath.store) }
                }
                guard let counted else { return false }
                wroteAnswer = true
                let duration = NIODeadline.now() - started
                let attribution = Attribution(namespace: namespace.map(namespaceName), client: client)
                count(hit: counted.model, attribution: attribution, tokens: counted.tokens, duration: duration, context: context)
                if let tracing = fastPath.tracing, let tracedKey {
                    let headBytes = UnsafeRawBufferPointer(rebasing: request[..<head.length])
                    tracing.recordHit(
                        took: duration,
                        method: method == .get ? "GET" : "POST",
                        path: String(decoding: keyedTarget, as: UTF8.self),
                        traceparent: RequestHead.value(of: "traceparent", in: headBytes).map { String(decoding: headBytes[$0], as: UTF8.self) },
                        namespace: attribution.namespace.isEmpty ? nil : attribution.namespace,
                        key: tracedKey,
                        model: counted.model,
                        tokens: counted.tokens
                    )
                }
                return true
            }
        }
    }

    /// Counts a hit for the ledger, and its time for the hit histogram, reported in batches at most
    /// ``reportDelay`` later.
    ///
    /// Why batches: recording one answer updates about ten counters named by strings built per call
    /// (per model, per quota day, per minute); per hit that cost as much as the rest of the fast path
    /// (measured: 0.73× nginx proxy_cache with per-hit recording, 1.16× without, same load).
    private func count(hit model: String, attribution: Attribution, tokens: TokenUsage, duration: TimeAmount, context: ChannelHandlerContext) {
        fastPath.countHit()
        if var batch = unreported, batch.model == model, batch.attribution == attribution {
            unreportedDurations.append(duration.nanoseconds)
            batch.count += 1
            batch.tokens = TokenUsage(prompt: batch.tokens.prompt + tokens.prompt, total: batch.tokens.total + tokens.total)
            unreported = batch
            return
        }
        reportHits()
        unreported = (model, attribution, 1, tokens)
        unreportedDurations.append(duration.nanoseconds)
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.reportDelay) { self.reportHits() }
    }

    /// How long a counted hit may wait before the stats show it.
    static let reportDelay = TimeAmount.milliseconds(200)

    private func reportHits() {
        guard let batch = unreported else { return }
        unreported = nil
        fastPath.ledger.recordAnswer(
            model: batch.model,
            outcome: .hit,
            status: 200,
            tokens: batch.tokens,
            attribution: batch.attribution,
            count: batch.count
        )
        for nanoseconds in unreportedDurations { fastPath.ledger.recordLatency(outcome: .hit, duration: .nanoseconds(nanoseconds)) }
        unreportedDurations.removeAll(keepingCapacity: true)
    }

    /// The credential's scope in the key (`shared`, or its per-key tag) and its client's name for the
    /// stats, memoized for the connection's last credential.
    private func scope(_ credential: UnsafeRawBufferPointer) -> (tag: [UInt8], client: String) {
        if let memo = scopeMemo, memo.credential.elementsEqual(credential) { return (memo.tag, memo.client) }
        let credentialTag = GemcacheKey.scopeTag(credential: String(decoding: credential, as: UTF8.self), salt: fastPath.store.scopeSalt)
        let tag = fastPath.sharedScope ? Self.shared : Array(credentialTag.utf8)
        let client = Attribution.client(credentialTag: credentialTag)
        scopeMemo = (Array(credential), tag, client)
        return (tag, client)
    }

    private static let shared = Array("shared".utf8)

    private func modelName(_ bytes: UnsafeRawBufferPointer) -> String {
        if let memo = modelMemo, memo.bytes.elementsEqual(bytes) { return memo.name }
        let name = String(decoding: bytes, as: UTF8.self)
        modelMemo = (Array(bytes), name)
        return name
    }

    private func namespaceName(_ bytes: UnsafeRawBufferPointer) -> String {
        if let memo = namespaceMemo, memo.bytes.elementsEqual(bytes) { return memo.name }
        let name = String(decoding: bytes, as: UTF8.self)
        namespaceMemo = (Array(bytes), name)
        return name
    }
}

/// Sits behind NIO's response encoder and counts down ``FastPathHandler/slowRequestsPending`` each
/// time Hummingbird finishes an answer, so that the fast path knows when it may answer again.
///
/// After a `101 Switching Protocols` (a Live API session) WebSocket frames and bytes pass here too:
/// anything but a response part goes on untouched.
final class FastPathResponseCounter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = Any
    typealias OutboundOut = Any

    private let handler: FastPathHandler

    init(_ handler: FastPathHandler) {
        self.handler = handler
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) as? HTTPServerResponsePart {
        case .end?:
            handler.slowRequestsPending = max(0, handler.slowRequestsPending - 1)
            handler.decodedRequestsInFlight = max(0, handler.decodedRequestsInFlight - 1)
            handler.lastActivity = .now()
            if handler.quiescing && handler.isIdle {
                let written = promise ?? context.eventLoop.makePromise()
                context.write(data, promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
        case .head(let head)? where head.status == .switchingProtocols:
            handler.upgraded = true
        default:
            break
        }
        context.write(data, promise: promise)
    }
}

/// Sits behind NIO's request decoder and tells ``FastPathHandler`` which decoded request is still
/// arriving, so that its stall check also covers connections the decoder has for good.
///
/// When a WebSocket upgrade begins, the decoder hands on the bytes after the upgrade request as they
/// are, and WebSocket frames follow: anything but a request part goes on untouched.
///
/// Bytes that do not parse as the first request of a connection reach no Hummingbird handler yet (NIO's
/// upgrade handler holds the connection until a head arrives): the observer answers those 400 and
/// closes, as Hummingbird does for later requests.
final class FastPathRequestObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any
    typealias InboundOut = Any
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: FastPathHandler
    private var sawHead = false

    init(_ handler: FastPathHandler) {
        self.handler = handler
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !sawHead, error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        sawHead = true
        var head = HTTPResponseHead(version: .http1_1, status: .badRequest)
        head.headers = ["connection": "close", "content-length": "0"]
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) as? HTTPServerRequestPart {
        case .head?:
            sawHead = true
            handler.decodedRequestsInFlight += 1
            handler.decodingRequest = true
        case .end?:
            handler.decodingRequest = false
        case .body?, nil:
            break
        }
        context.fireChannelRead(data)
    }
}
