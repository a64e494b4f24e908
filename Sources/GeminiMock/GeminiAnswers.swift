/// How an answer writes its enums: by name, or by number when the request asks for
/// `$alt=json;enum-encoding=int`, as Google's generated REST clients do (gemini-api.md §1.5).
enum EnumEncoding {
    case names, numbers

    /// `name`, or `number`, its value in the API's proto enum.
    func value(_ name: String, _ number: Int) -> JSONValue {
        self == .names ? .string(name) : .int(number)
    }
}

/// Shapes of the native Gemini answers (§4 of gemini-api.md).
enum GeminiAnswers {
    /// The GenerateContentResponse chunks for a prompt: `chunks` is 1 for `generateContent`
    /// and 3 for streams. Usage is cumulative on every chunk; the finish reason is on the last.
    /// A request that configures thinking (Gemini 3) gets a `thoughtSignature` on its first part.
    static func generate(_ answer: Synthesis, model: String, faults: [Fault], chunks: Int, enums: EnumEncoding = .names) -> [JSONValue] {
        if faults.contains(.blocked) {
            let feedback = JSONValue.object([("blockReason", enums.value("SAFETY", 1)), ("safetyRatings", safetyRatings(enums))])
            return [response([("promptFeedback", feedback)], answer: answer, candidateTokens: 0, model: model, enums: enums)]
        }
        if faults.contains(.safety) {
            let candidate = JSONValue.object([
                ("finishReason", enums.value("SAFETY", 3)), ("index", .int(0)), ("safetyRatings", safetyRatings(enums)),
            ])
            return [response([("candidates", .array([candidate]))], answer: answer, candidateTokens: 0, model: model, enums: enums)]
        }
        let truncated = faults.contains(.truncate)
        let deltas = answer.deltas(count: chunks)
        let pieces = truncated ? [deltas[0]] : deltas
        return pieces.enumerated().map { index, delta in
            var part: [(String, JSONValue)] = [("text", .string(delta.text))]
            if index == 0, let signature = answer.thoughtSignature { part.append(("thoughtSignature", .string(signature))) }
            var candidate: [(String, JSONValue)] = [
                ("content", .object([("parts", .array([.object(part)])), ("role", .string("model"))]))
            ]
            if index == pieces.count - 1, !truncated {
                candidate.append(("finishReason", answer.hitLimit ? enums.value("MAX_TOKENS", 2) : enums.value("STOP", 1)))
            }
            candidate.append(("index", .int(0)))
            return response(
                [("candidates", .array([.object(candidate)]))],
                answer: answer,
                candidateTokens: delta.cumulativeWords,
                model: model,
                enums: enums
            )
        }
    }

    static func countTokens(_ tokens: Int, enums: EnumEncoding = .names) -> JSONValue {
        .object([("totalTokens", .int(tokens)), ("promptTokensDetails", tokenDetails(tokens, enums))])
    }

    static func embedding(_ text: String) -> JSONValue {
        .object([("values", .array(embeddingValues(for: text)))])
    }

    /// The fixed model list served by `GET /{v}/models`.
    static let models: [(id: String, body: JSONValue)] = [
        model("gemini-2.5-flash", "Gemini 2.5 Flash", input: 1_048_576, output: 65_536, generative: true),
        model("gemini-2.5-pro", "Gemini 2.5 Pro", input: 1_048_576, output: 65_536, generative: true),
        model("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", input: 1_048_576, output: 65_536, generative: true),
        model("gemini-embedding-001", "Gemini Embedding 001", input: 2_048, output: 1, generative: false),
    ]

    /// The model named `id`, if it is in the list.
    static func model(id: String) -> JSONValue? {
        models.first { $0.id == id }?.body
    }

    private static func response(
        _ leading: [(String, JSONValue)],
        answer: Synthesis,
        candidateTokens: Int,
        model: String,
        enums: EnumEncoding
    ) -> JSONValue {
        var usage: [(String, JSONValue)] = [("promptTokenCount", .int(answer.promptTokens))]
        if candidateTokens > 0 { usage.append(("candidatesTokenCount", .int(candidateTokens))) }
        usage += [
            ("totalTokenCount", .int(answer.promptTokens + candidateTokens)),
            ("promptTokensDetails", tokenDetails(answer.promptTokens, enums)),
        ]
        return .object(
            leading + [
                ("usageMetadata", .object(usage)),
                ("modelVersion", .string(model)),
                ("responseId", .string(answer.responseId)),
            ]
        )
    }

    private static func tokenDetails(_ tokens: Int, _ enums: EnumEncoding) -> JSONValue {
        .array([.object([("modality", enums.value("TEXT", 1)), ("tokenCount", .int(tokens))])])
    }

    private static func safetyRatings(_ enums: EnumEncoding) -> JSONValue {
        .array([
            .object([
                ("category", enums.value("HARM_CATEGORY_DANGEROUS_CONTENT", 10)),
                ("probability", enums.value("HIGH", 4)),
                ("blocked", .bool(true)),
            ])
        ])
    }

    private static func model(
        _ id: String,
        _ displayName: String,
        input: Int,
        output: Int,
        generative: Bool
    ) -> (id: String, body: JSONValue) {
        let methods =
            generative
            ? ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
            : ["embedContent", "countTokens", "countTextTokens", "asyncBatchEmbedContent"]
        var fields: [(String, JSONValue)] = [
            ("name", .string("models/\(id)")),
            ("version", .string("001")),
            ("displayName", .string(displayName)),
            ("description", .string("Mock of \(displayName).")),
            ("inputTokenLimit", .int(input)),
            ("outputTokenLimit", .int(output)),
            ("supportedGenerationMethods", .array(methods.map(JSONValue.string))),
        ]
        if generative {
            fields += [
                ("temperature", .int(1)), ("topP", .double(0.95)), ("topK", .int(64)),
                ("maxTemperature", .int(2)), ("thinking", .bool(true)),
            ]
        }
        return (id, .object(fields))
    }
}
