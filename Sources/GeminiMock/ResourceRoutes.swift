import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// What the mock's resource routes remember: objects by name (`cachedContents/…`, `files/…`,
/// `batches/…`, `interactions/…`) and the resumable uploads in progress. Names and times derive from
/// the request, so the same request gives the same bytes.
final class MockResources: Sendable {
    /// A resumable upload between its `start` and its `finalize`.
    struct Upload {
        let displayName: String?
        let mimeType: String
        let declaredSize: Int
        var received = 0
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    }

    private struct State {
        var objects: [String: JSONValue] = [:]
        var uploads: [String: Upload] = [:]
    }

    private let state = Mutex(State())

    func put(_ name: String, _ object: JSONValue) { state.withLock { $0.objects[name] = object } }
    func object(_ name: String) -> JSONValue? { state.withLock { $0.objects[name] } }
    func remove(_ name: String) -> JSONValue? { state.withLock { $0.objects.removeValue(forKey: name) } }

    /// The objects whose names start with `prefix`, by name.
    func objects(prefix: String) -> [JSONValue] {
        state.withLock { $0.objects.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }.map(\.value) }
    }

    func startUpload(_ id: String, _ upload: Upload) { state.withLock { $0.uploads[id] = upload } }
    func upload(_ id: String) -> Upload? { state.withLock { $0.uploads[id] } }

    /// Adds `chunk` to the upload `id`.
    func receive(_ chunk: ByteBuffer, into id: String) {
        state.withLock { state in
            guard var upload = state.uploads[id] else { return }
            upload.received += chunk.readableBytes
            upload.digest = chunk.readableBytesView.reduce(upload.digest) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01b3 }
            state.uploads[id] = upload
        }
    }

    func endUpload(_ id: String) { state.withLock { _ = $0.uploads.removeValue(forKey: id) } }
}

/// The routes that are not cached by a proxy: cached contents, files (the resumable upload protocol of
/// gemini-api.md §1.3), batches and the Interactions API. Small, but shaped like Google's.
extension MockRoutes {
    func registerResources(on router: Router<BasicRequestContext>, version: String) {
        router.post(RouterPath("/\(version)/cachedContents")) { request, _ in try await createCachedContent(request) }
        router.get(RouterPath("/\(version)/cachedContents")) { request, _ in
            try authorize(request)
            return jsonResponse(JSONValue.object([("cachedContents", .array(resources.objects(prefix: "cachedContents/")))]).pretty + "\n")
        }
        router.get(RouterPath("/\(version)/cachedContents/{id}")) { request, context in
            try stored(request, "cachedContents/" + context.parameters.require("id"))
        }
        router.delete(RouterPath("/\(version)/cachedContents/{id}")) { request, context in
            try authorize(request)
            let name = try "cachedContents/" + context.parameters.require("id")
            guard resources.remove(name) != nil else { throw GoogleError.notFound("CachedContent not found (or permission denied)") }
            return jsonResponse("{}\n")
        }
        router.post(RouterPath("/\(version)/files")) { request, _ in try await upload(request) }
        router.post(RouterPath("/upload/\(version)/files")) { request, _ in try await upload(request) }
        router.get(RouterPath("/\(version)/files/{id}")) { request, context in
            try stored(request, "files/" + context.parameters.require("id"))
        }
        router.get(RouterPath("/\(version)/batches/{id}")) { request, context in
            try stored(request, "batches/" + context.parameters.require("id"))
        }
        router.post(RouterPath("/\(version)/interactions")) { request, _ in try await createInteraction(request) }
        router.get(RouterPath("/\(version)/interactions/{id}")) { request, context in
            try stored(request, "interactions/" + context.parameters.require("id"))
        }
    }

    /// The stored object `name`, or Google's 404.
    private func stored(_ request: Request, _ name: String) throws -> Response {
        try authorize(request)
        guard let object = resources.object(name) else { throw GoogleError.notFound("Requested entity was not found.") }
        return jsonResponse(object.pretty + "\n")
    }

    // MARK: Cached contents

    private func createCachedContent(_ request: Request) async throws -> Response {
        try authorize(request)
        let body = try await request.body.collect(upTo: Self.maxBody)
        let json = try RequestJSON(bytes: body)
        guard let model = json.root["model"] as? String else {
            throw GoogleError.invalidArgument("* CreateCachedContentRequest.cached_content.model: model is required")
        }
        let digest = fnv1a(body.readableBytesView)
        let created = mockTime(digest)
        let ttl = (json.root["ttl"] as? String).flatMap { $0.hasSuffix("s") ? Int($0.dropLast()) : nil } ?? 3600
        var fields: [(String, JSONValue)] = [("name", .string("cachedContents/mock-" + hex(digest).prefix(12))), ("model", .string(model))]
        if let displayName = json.root["displayName"] as? String { fields.append(("displayName", .string(displayName))) }
        fields += [
            ("usageMetadata", .object([("totalTokenCount", .int(textParts(in: json.root).reduce(0) { $0 + wordCount($1) }))])),
            ("createTime", .string(timestamp(created))), ("updateTime", .string(timestamp(created))),
            ("expireTime", .string(timestamp(created + ttl))),
        ]
        let object = JSONValue.object(fields)
        resources.put("cachedContents/mock-" + hex(digest).prefix(12), object)
        return jsonResponse(object.pretty + "\n")
    }

    // MARK: Files

    private static let uploadStatus = HTTPField.Name("x-goog-upload-status")!

    /// `POST /upload/{v}/files` (and `/{v}/files`): the resumable protocol when `X-Goog-Upload-Protocol`
    /// is `resumable`, else one body counted as it streams in, never holding more than one chunk.
    private func upload(_ request: Request) async throws -> Response {
        try authorize(request)
        let command = request.headers[HTTPField.Name("x-goog-upload-command")!].map { $0.lowercased() }
        if request.headers[HTTPField.Name("x-goog-upload-protocol")!]?.lowercased() == "resumable", command == "start" {
            return try await startUpload(request)
        }
        if let id = request.uri.queryParameters["upload_id"].map(String.init) {
            return try await continueUpload(request, id: id, finalize: command?.contains("finalize") == true)
        }
        var count = 0
        for try await chunk in request.body { count += chunk.readableBytes }
        let file = JSONValue.object([
            ("name", .string("files/mock-\(recorder.nextUploadNumber())")), ("sizeBytes", .string(String(count))),
        ])
        var response = jsonResponse(JSONValue.object([("file", file)]).pretty + "\n")
        response.headers[Self.uploadStatus] = "final"
        return response
    }

    /// Opens an upload session: its URL in `X-Goog-Upload-URL`, on the host the request was sent to.
    private func startUpload(_ request: Request) async throws -> Response {
        guard let size = request.headers[HTTPField.Name("x-goog-upload-header-content-length")!].flatMap({ Int($0) }), size >= 0 else {
            throw GoogleError.invalidArgument("X-Goog-Upload-Header-Content-Length is required.")
        }
        let mimeType = request.headers[HTTPField.Name("x-goog-upload-header-content-type")!] ?? "application/octet-stream"
        let body = try await request.body.collect(upTo: Self.maxBody)
        let metadata = body.readableBytes == 0 ? nil : try RequestJSON(bytes: body).root["file"] as? [String: Any]
        let id = "mock-" + hex(fnv1a(Array(body.readableBytesView) + Array("\(size)/\(mimeType)".utf8))).prefix(12)
        resources.startUpload(id, .init(displayName: metadata?["displayName"] as? String, mimeType: mimeType, declaredSize: size))
        let host = request.head.authority ?? "127.0.0.1"
        return Response(
            status: .ok,
            headers: [
                HTTPField.Name("x-goog-upload-url")!: "http://\(host)\(request.uri.path)?upload_id=\(id)&upload_protocol=resumable",
                Self.uploadStatus: "active",
                HTTPField.Name("x-goog-upload-chunk-granularity")!: "8388608",
            ]
        )
    }

    /// One chunk of an upload at `X-Goog-Upload-Offset`; with `finalize`, the file it made.
    private func continueUpload(_ request: Request, id: String, finalize: Bool) async throws -> Response {
        guard let started = resources.upload(id) else { throw GoogleError.notFound("No upload session \(id).") }
        guard request.headers[HTTPField.Name("x-goog-upload-offset")!].flatMap({ Int($0) }) == started.received else {
            throw GoogleError.invalidArgument("X-Goog-Upload-Offset must be \(started.received).")
        }
        for try await chunk in request.body { resources.receive(chunk, into: id) }
        guard finalize else { return Response(status: .ok, headers: [Self.uploadStatus: "active"]) }
        guard let upload = resources.upload(id) else { throw GoogleError.notFound("No upload session \(id).") }
        resources.endUpload(id)
        guard upload.received == upload.declaredSize else {
            throw GoogleError.invalidArgument("The upload has \(upload.received) bytes, not the \(upload.declaredSize) it announced.")
        }
        let name = "files/" + id
        let created = mockTime(upload.digest)
        var fields: [(String, JSONValue)] = [("name", .string(name))]
        if let displayName = upload.displayName { fields.append(("displayName", .string(displayName))) }
        fields += [
            ("mimeType", .string(upload.mimeType)), ("sizeBytes", .string(String(upload.received))),
            ("createTime", .string(timestamp(created))), ("updateTime", .string(timestamp(created))),
            ("expirationTime", .string(timestamp(created + 48 * 3600))),
            ("uri", .string("https://generativelanguage.googleapis.com/v1beta/\(name)")),
            ("state", .string("ACTIVE")), ("source", .string("UPLOADED")),
        ]
        let file = JSONValue.object(fields)
        resources.put(name, file)
        var response = jsonResponse(JSONValue.object([("file", file)]).pretty + "\n")
        response.headers[Self.uploadStatus] = "final"
        return response
    }

    // MARK: Batches

    /// `POST /{v}/models/{model}:batchGenerateContent` with inlined requests: the batch operation,
    /// pending; a `GET` of it afterwards finds it done, with every answer.
    func createBatch(_ json: RequestJSON, body: ByteBuffer, model: String) async throws -> Response {
        let batch = json.root["batch"] as? [String: Any]
        guard let items = ((batch?["inputConfig"] as? [String: Any])?["requests"] as? [String: Any])?["requests"] as? [[String: Any]],
            !items.isEmpty
        else { throw GoogleError.invalidArgument("* GenerateContentBatch.input_config: inlined requests are required") }
        var responses: [JSONValue] = []
        for item in items {
            let request = try JSONSerialization.data(withJSONObject: item["request"] ?? [:], options: [.sortedKeys])
            let answer = try await prompt(try RequestJSON(bytes: ByteBuffer(bytes: request)), body: ByteBuffer(bytes: request), model: model)
            let response = GeminiAnswers.generate(answer.synthesis, model: model, faults: answer.faults, chunks: 1)[0]
            let key = ((item["metadata"] as? [String: Any])?["key"] as? String).map { JSONValue.object([("key", .string($0))]) }
            responses.append(.object([("response", response)] + (key.map { [("metadata", $0)] } ?? [])))
        }
        let digest = fnv1a(body.readableBytesView)
        let name = "batches/mock-" + hex(digest).prefix(12)
        let created = timestamp(mockTime(digest))
        func operation(state: String, stats: [(String, JSONValue)], done: Bool) -> JSONValue {
            var metadata: [(String, JSONValue)] = [
                ("@type", .string("type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch")),
                ("model", .string("models/\(model)")),
            ]
            if let displayName = batch?["displayName"] as? String { metadata.append(("displayName", .string(displayName))) }
            metadata += [
                ("createTime", .string(created)), ("updateTime", .string(created)),
                ("batchStats", .object([("requestCount", .string(String(items.count)))] + stats)),
                ("state", .string(state)), ("name", .string(name)),
            ]
            var fields: [(String, JSONValue)] = [("name", .string(name)), ("metadata", .object(metadata))]
            if done {
                fields += [
                    ("done", .bool(true)),
                    (
                        "response",
                        .object([
                            ("@type", .string("type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput")),
                            ("inlinedResponses", .object([("inlinedResponses", .array(responses))])),
                        ])
                    ),
                ]
            }
            return .object(fields)
        }
        let count = JSONValue.string(String(items.count))
        resources.put(name, operation(state: "BATCH_STATE_SUCCEEDED", stats: [("successfulRequestCount", count)], done: true))
        return jsonResponse(operation(state: "BATCH_STATE_PENDING", stats: [("pendingRequestCount", count)], done: false).pretty + "\n")
    }

    // MARK: Interactions

    /// `POST /{v}/interactions`: the finished interaction, or with `"stream": true` its events as SSE
    /// (`interaction.created`, `step.*` with the text in deltas, `interaction.completed`, then `done`).
    private func createInteraction(_ request: Request) async throws -> Response {
        try authorize(request)
        let body = try await request.body.collect(upTo: Self.maxBody)
        let json = try RequestJSON(bytes: body)
        guard let model = json.root["model"] as? String, let input = json.root["input"] else {
            throw GoogleError.invalidArgument("model and input are required.")
        }
        let texts = (input as? String).map { [$0] } ?? textParts(in: input)
        let faults = Fault.parse(texts)
        try await applyFaults(faults, body: body, model: model)
        let answer = Synthesis(body: body, texts: texts, lastUserText: texts.last ?? "", maxOutputTokens: nil)
        let id = "v1_mock-" + hex(answer.digest)
        let created = timestamp(mockTime(answer.digest))
        let header: [(String, JSONValue)] = [("id", .string(id)), ("object", .string("interaction")), ("model", .string(model))]
        let usage = JSONValue.object([
            ("total_input_tokens", .int(answer.promptTokens)), ("total_output_tokens", .int(answer.words.count)),
            ("total_tokens", .int(answer.promptTokens + answer.words.count)),
        ])
        let completed = JSONValue.object(
            header + [
                ("status", .string("completed")), ("created", .string(created)), ("updated", .string(created)), ("role", .string("model")),
                ("outputs", .array([.object([("type", .string("text")), ("text", .string(answer.text))])])), ("usage", usage),
            ]
        )
        resources.put("interactions/" + id, completed)
        guard json.root["stream"] as? Bool == true else { return jsonResponse(completed.pretty + "\n") }
        func event(_ type: String, _ fields: [(String, JSONValue)]) -> (type: String, data: JSONValue) {
            (type, .object(fields + [("event_type", .string(type))]))
        }
        let deltas = answer.deltas(count: 3).map { delta in
            event("step.delta", [("index", .int(0)), ("delta", .object([("type", .string("text")), ("text", .string(delta.text))]))])
        }
        let events =
            [
                event("interaction.created", [("interaction", .object(header + [("status", .string("in_progress"))]))]),
                event("interaction.status_update", [("interaction_id", .string(id)), ("status", .string("in_progress"))]),
                event("step.start", [("index", .int(0)), ("step", .object([("type", .string("model_output"))]))]),
            ] + deltas + [
                event("step.stop", [("index", .int(0))]),
                event("interaction.completed", [("interaction", .object(header + [("status", .string("completed")), ("usage", usage)]))]),
            ]
        return stream(StreamFraming.interactions(events), contentType: "text/event-stream", held: faults.contains(.hold))
    }
}

/// A fixed Unix time derived from `digest`, for the timestamps of created objects.
private func mockTime(_ digest: UInt64) -> Int {
    1_750_000_000 + Int(digest % 10_000_000)
}

/// RFC 3339 in UTC, as Google writes `createTime`.
private func timestamp(_ seconds: Int) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
}
