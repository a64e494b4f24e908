/// Shapes of the OpenAI-compatible answers on `/v1beta/openai/*`.
enum OpenAIAnswers {
    /// A `chat.completion`, or with `stream` the `chat.completion.chunk`s (usage on the last one).
    static func chat(_ answer: Synthesis, model: String, faults: [Fault], stream: Bool) -> [JSONValue] {
        let filtered = faults.contains(.safety) || faults.contains(.blocked)
        let truncated = faults.contains(.truncate)
        let finish: JSONValue = truncated ? .null : .string(filtered ? "content_filter" : answer.hitLimit ? "length" : "stop")
        let completionTokens = filtered ? 0 : answer.words.count
        let usage = JSONValue.object([
            ("prompt_tokens", .int(answer.promptTokens)),
            ("completion_tokens", .int(completionTokens)),
            ("total_tokens", .int(answer.promptTokens + completionTokens)),
        ])
        let header: [(String, JSONValue)] = [
            ("id", .string("chatcmpl-" + hex(answer.digest))),
            ("object", .string(stream ? "chat.completion.chunk" : "chat.completion")),
            ("created", .int(answer.created)),
            ("model", .string(model)),
        ]
        guard stream else {
            let message = JSONValue.object([("role", .string("assistant")), ("content", .string(filtered ? "" : answer.text))])
            let choice = JSONValue.object([("index", .int(0)), ("message", message), ("finish_reason", finish)])
            return [.object(header + [("choices", .array([choice])), ("usage", usage)])]
        }
        let deltas = filtered ? [(text: "", cumulativeWords: 0)] : answer.deltas(count: 3)
        let pieces = truncated ? [deltas[0]] : deltas
        return pieces.enumerated().map { index, delta in
            let last = index == pieces.count - 1 && !truncated
            var deltaFields: [(String, JSONValue)] = [("content", .string(delta.text))]
            if index == 0 { deltaFields.insert(("role", .string("assistant")), at: 0) }
            let choice = JSONValue.object([
                ("index", .int(0)), ("delta", .object(deltaFields)), ("finish_reason", last ? finish : .null),
            ])
            return .object(header + [("choices", .array([choice]))] + (last ? [("usage", usage)] : []))
        }
    }

    static func embeddings(_ inputs: [String], model: String) -> JSONValue {
        let tokens = inputs.reduce(0) { $0 + wordCount($1) }
        return .object([
            ("object", .string("list")),
            (
                "data",
                .array(
                    inputs.enumerated().map { index, text in
                        .object([("object", .string("embedding")), ("index", .int(index)), ("embedding", .array(embeddingValues(for: text)))])
                    }
                )
            ),
            ("model", .string(model)),
            ("usage", .object([("prompt_tokens", .int(tokens)), ("total_tokens", .int(tokens))])),
        ])
    }
}
