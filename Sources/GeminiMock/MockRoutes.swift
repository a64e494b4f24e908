import HTTPTypes
import Hummingbird
import NIOCore

/// The mock's endpoints. Answers are synthesized from the request body (see `Synthesis`).
struct MockRoutes: Sendable {
    static let statsPath = "/_mock/stats"
    static let maxBody = 64 << 20

    let configuration: MockUpstreamConfiguration
    let recorder: MockUpstreamRecorder
    /// The cached contents, files, batches and interactions created so far.
    let resources = MockResources()

    func register(on router: Router<BasicRequestContext>) {
        for version in ["v1", "v1beta"] {
            router.get(RouterPath("/\(version)/models")) { request, _ in try listModels(request) }
            router.get(RouterPath("/\(version)/models/{name}")) { request, context in
                try authorize(request)
                let id = try context.parameters.require("name")
                guard let model = GeminiAnswers.model(id: id) else {
                    throw GoogleError.notFound("models/\(id) is not found for API version \(version).")
                }
                return jsonResponse(model.pretty + "\n")
            }
            router.post(RouterPath("/\(version)/models/{name}")) { request, context in
                try await modelMethod(request, name: context.parameters.require("name"))
            }
            registerResources(on: router, version: version)
        }
        router.post("/v1beta/openai/chat/completions") { request, _ in try await openAIChat(request) }
        router.post("/v1beta/openai/embeddings") { request, _ in try await openAIEmbeddings(request) }
        router.get(RouterPath(Self.statsPath)) { _, _ in stats() }
    }

    // MARK: Native methods

    private func modelMethod(_ request: Request, name: String) async throws -> Response {
        try authorize(request)
        let parts = name.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let method = ModelMethod(rawValue: parts[1]) else {
            throw GoogleError.notFound("models/\(name) is not found or is not a supported method.")
        }
        let model = parts[0]
        let body = try await request.body.collect(upTo: Self.maxBody)
        let json = try RequestJSON(bytes: body)
        let format = ResponseFormat(query: request.uri.query)
        switch method {
        case .generateContent:
            let answer = try await prompt(json, body: body, model: model)
            let response = GeminiAnswers.generate(answer.synthesis, model: model, faults: answer.faults, chunks: 1, enums: format.enums)[0]
            if answer.faults.contains(.gzip), request.headers[.acceptEncoding]?.contains("gzip") == true {
                var gzipped = jsonResponse("")
                gzipped.headers[.contentEncoding] = "gzip"
                gzipped.body = ResponseBody(byteBuffer: ByteBuffer(bytes: Gzip.encode(Array((response.pretty + "\n").utf8))))
                return gzipped
            }
            return jsonResponse(response.pretty + "\n")
        case .streamGenerateContent:
            let answer = try await prompt(json, body: body, model: model)
            let held = answer.faults.contains(.hold)
            let chunks = GeminiAnswers.generate(answer.synthesis, model: model, faults: answer.faults, chunks: 3, enums: format.enums)
            if format.isSSE {
                return stream(StreamFraming.sse(chunks), contentType: "text/event-stream", held: held)
            }
            return stream(StreamFraming.jsonArray(chunks), contentType: "application/json; charset=UTF-8", held: held)
        case .countTokens:
            let texts = textParts(in: json.root)
            try await applyFaults(Fault.parse(texts), body: body, model: model)
            return jsonResponse(GeminiAnswers.countTokens(texts.reduce(0) { $0 + wordCount($1) }, enums: format.enums).pretty + "\n")
        case .embedContent:
            guard let content = json.root["content"] else {
                throw GoogleError.invalidArgument("* EmbedContentRequest.content: content is not specified")
            }
            let text = try await embeddingText(content, body: body, model: model)
            return jsonResponse(JSONValue.object([("embedding", GeminiAnswers.embedding(text))]).pretty + "\n")
        case .batchEmbedContents:
            guard let requests = json.root["requests"] as? [[String: Any]], !requests.isEmpty else {
                throw GoogleError.invalidArgument("* BatchEmbedContentsRequest.requests: requests is not specified")
            }
            var embeddings: [JSONValue] = []
            for (index, item) in requests.enumerated() {
                if let itemModel = item["model"] as? String, itemModel != "models/\(model)" {
                    throw GoogleError.invalidArgument(
                        "* BatchEmbedContentsRequest.requests[\(index)].model: model must be models/\(model), got \(itemModel)"
                    )
                }
                embeddings.append(GeminiAnswers.embedding(try await embeddingText(item["content"] ?? [:], body: body, model: model)))
            }
            return jsonResponse(JSONValue.object([("embeddings", .array(embeddings))]).pretty + "\n")
        case .batchGenerateContent:
            return try await createBatch(json, body: body, model: model)
        }
    }

    private enum ModelMethod: String {
        case generateContent, streamGenerateContent, countTokens, embedContent, batchEmbedContents, batchGenerateContent
    }

    /// A 200 stream of `pieces`, `chunkDelay` apart, held after the first when `held`.
    func stream(_ pieces: [String], contentType: String, held: Bool) -> Response {
        StreamFraming.response(pieces, contentType: contentType, delay: configuration.chunkDelay, held: held, recorder: recorder)
    }

    /// The synthesized answer to a generateContent body, after its faults have been applied.
    func prompt(_ json: RequestJSON, body: ByteBuffer, model: String) async throws -> (synthesis: Synthesis, faults: [Fault]) {
        guard let contents = json.root["contents"] as? [[String: Any]], !contents.isEmpty else {
            throw GoogleError.invalidArgument("* GenerateContentRequest.contents: contents is not specified")
        }
        let texts = textParts(in: json.root)
        let faults = Fault.parse(texts)
        try await applyFaults(faults, body: body, model: model)
        let lastUser = contents.last { ($0["role"] as? String) != "model" }
        let lastText = ((lastUser?["parts"] as? [[String: Any]]) ?? []).compactMap { $0["text"] as? String }.last
        let config = (json.root["generationConfig"] ?? json.root["generation_config"]) as? [String: Any]
        let limit = (config?["maxOutputTokens"] ?? config?["max_output_tokens"]) as? Int
        let thinks = (config?["thinkingConfig"] ?? config?["thinking_config"]) != nil
        let synthesis = Synthesis(body: body, texts: texts, lastUserText: lastText ?? texts.last ?? "", maxOutputTokens: limit, thinks: thinks)
        return (synthesis, faults)
    }

    private func embeddingText(_ content: Any, body: ByteBuffer, model: String) async throws -> String {
        let texts = textParts(in: content)
        try await applyFaults(Fault.parse(texts), body: body, model: model)
        return texts.joined(separator: "\n")
    }

    /// Sleeps for `[[fault:slow:MS]]`, then throws the first error trigger, if any.
    func applyFaults(_ faults: [Fault], body: ByteBuffer, model: String) async throws {
        for case .slow(let delay) in faults { try await Task.sleep(for: delay) }
        if faults.contains(.quota) { throw GoogleError.quotaExceeded(model: model) }
        if faults.contains(.internalError) { throw GoogleError.internalError }
        if faults.contains(.unavailable) { throw GoogleError.overloaded }
        if faults.contains(.internalErrorOnce), recorder.isFirstSighting(of: fnv1a(body.readableBytesView)) {
            throw GoogleError.internalError
        }
    }

    private func listModels(_ request: Request) throws -> Response {
        try authorize(request)
        let query = request.uri.queryParameters
        let pageSize = query["pageSize"].flatMap { Int($0) }.map { min(max($0, 1), 1000) } ?? 50
        var offset = 0
        if let token = query["pageToken"], !token.isEmpty {
            guard token.hasPrefix("mock-page-"), let value = Int(token.dropFirst(10)), (0..<GeminiAnswers.models.count).contains(value) else {
                throw GoogleError.invalidArgument("Invalid page token.")
            }
            offset = value
        }
        let end = min(offset + pageSize, GeminiAnswers.models.count)
        var fields: [(String, JSONValue)] = [("models", .array(GeminiAnswers.models[offset..<end].map(\.body)))]
        if end < GeminiAnswers.models.count { fields.append(("nextPageToken", .string("mock-page-\(end)"))) }
        return jsonResponse(JSONValue.object(fields).pretty + "\n")
    }

    // MARK: OpenAI-compatible surface

    private func openAIChat(_ request: Request) async throws -> Response {
        try authorize(request)
        let body = try await request.body.collect(upTo: Self.maxBody)
        let json = try RequestJSON(bytes: body)
        guard let messages = json.root["messages"] as? [[String: Any]], !messages.isEmpty else {
            throw GoogleError.invalidArgument("Invalid request: messages is required.")
        }
        let model = openAIModel(json)
        let texts = messages.flatMap { message -> [String] in
            if let content = message["content"] as? String { return [content] }
            return textParts(in: message["content"] ?? [])
        }
        let faults = Fault.parse(texts)
        try await applyFaults(faults, body: body, model: model)
        let lastUser = messages.last { ($0["role"] as? String) == "user" }
        let lastText = (lastUser?["content"] as? String) ?? textParts(in: lastUser?["content"] ?? []).last
        let limit = (json.root["max_completion_tokens"] ?? json.root["max_tokens"]) as? Int
        let synthesis = Synthesis(body: body, texts: texts, lastUserText: lastText ?? texts.last ?? "", maxOutputTokens: limit)
        let stream = json.root["stream"] as? Bool ?? false
        let chunks = OpenAIAnswers.chat(synthesis, model: model, faults: faults, stream: stream)
        guard stream else { return jsonResponse(chunks[0].compact) }
        return self.stream(
            StreamFraming.openAI(chunks, done: !faults.contains(.truncate)),
            contentType: "text/event-stream",
            held: faults.contains(.hold)
        )
    }

    private func openAIEmbeddings(_ request: Request) async throws -> Response {
        try authorize(request)
        let body = try await request.body.collect(upTo: Self.maxBody)
        let json = try RequestJSON(bytes: body)
        let inputs: [String]
        if let input = json.root["input"] as? String {
            inputs = [input]
        } else if let input = json.root["input"] as? [String], !input.isEmpty {
            inputs = input
        } else {
            throw GoogleError.invalidArgument("Invalid request: input must be a string or an array of strings.")
        }
        let model = openAIModel(json)
        try await applyFaults(Fault.parse(inputs), body: body, model: model)
        return jsonResponse(OpenAIAnswers.embeddings(inputs, model: model).compact)
    }

    private func openAIModel(_ json: RequestJSON) -> String {
        let model = json.root["model"] as? String ?? "gemini-2.5-flash"
        return model.hasPrefix("models/") ? String(model.dropFirst(7)) : model
    }

    // MARK: Stats

    private func stats() -> Response {
        let paths = recorder.pathCounts.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.int($0.value)) }
        return jsonResponse(JSONValue.object([("requests", .int(recorder.totalRequests)), ("paths", .object(paths))]).compact)
    }

    // MARK: Auth

    /// Accepts `x-goog-api-key`, `?key=` or `Authorization: Bearer`, like Google.
    func authorize(_ request: Request) throws(GoogleError) {
        let header = request.headers[HTTPField.Name("x-goog-api-key")!]
        let query = request.uri.queryParameters["key"].map(String.init)
        let bearer = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        guard let key = [header, query, bearer].compactMap({ $0 }).first(where: { !$0.isEmpty }) else {
            throw .missingCredential
        }
        if let valid = configuration.validKeys, !valid.contains(key) { throw .invalidKey }
    }
}
