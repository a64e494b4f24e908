import Foundation

/// Which upstream answers may be stored (SPEC §2), and the token counts they carry.
enum StorePolicy {
    /// Only complete, successful answers: HTTP 200 and a JSON body, and for generation every candidate
    /// (OpenAI: every choice) finished normally — length-limited only when the request set the limit.
    /// The request is parsed only for a length-limited answer.
    static func isStorable(_ operation: CachedRoute.Operation, status: Int, answer: Any?, request: @autoclosure () -> Any?) -> Bool {
        guard status == 200, let answer else { return false }
        switch operation {
        case .generateContent, .streamGenerateContent:
            return isCompleteGeneration(answer, request: request())
        case .openAIChat:
            return isCompleteChat(answer, request: request())
        case .countTokens, .embedContent, .batchEmbedContents, .listModels, .getModel, .openAIEmbeddings:
            return true
        }
    }

    /// Every candidate finished with STOP (MAX_TOKENS only when the request set `maxOutputTokens`);
    /// never a blocked prompt (a `blockReason` of any form) or an empty candidate list.
    static func isCompleteGeneration(_ answer: Any, request: @autoclosure () -> Any?) -> Bool {
        guard let object = answer as? [String: Any] else { return false }
        if let feedback = object["promptFeedback"] as? [String: Any], feedback["blockReason"] != nil {
            return false
        }
        guard let candidates = object["candidates"] as? [[String: Any]], !candidates.isEmpty else { return false }
        lazy var limited = setsLimit(
            request(),
            section: ["generationConfig", "generation_config"],
            fields: ["maxOutputTokens", "max_output_tokens"]
        )
        return candidates.allSatisfy { candidate in
            switch finishReason(candidate["finishReason"]) {
            case "STOP": true
            case "MAX_TOKENS": limited
            default: false
            }
        }
    }

    /// A candidate's finish reason by name. Answers carry the name, or with `$alt=json;enum-encoding=int`
    /// (what Google's generated REST clients ask for) its number in `Candidate.FinishReason`.
    private static func finishReason(_ value: Any?) -> String? {
        if let name = value as? String { return name }
        return (value as? NSNumber).flatMap { Int(exactly: $0.doubleValue) }.flatMap { finishReasonNames[$0] }
    }

    /// The numbers of the finish reasons the storing rule names (google.ai.generativelanguage.v1beta
    /// `Candidate.FinishReason`: STOP = 1, MAX_TOKENS = 2); every other number is a reason not to store.
    private static let finishReasonNames: [Int: String] = [1: "STOP", 2: "MAX_TOKENS"]

    /// Every choice finished with `stop` (`length` only when the request set `max_tokens`), in a whole
    /// answer or in the last chunk of a stream.
    static func isCompleteChat(_ answer: Any, request: @autoclosure () -> Any?) -> Bool {
        guard let choices = (answer as? [String: Any])?["choices"] as? [[String: Any]], !choices.isEmpty else { return false }
        lazy var limited = setsLimit(request(), section: [], fields: ["max_tokens", "max_completion_tokens"])
        return choices.allSatisfy { choice in
            switch choice["finish_reason"] as? String {
            case "stop": true
            case "length": limited
            default: false
            }
        }
    }

    private static func setsLimit(_ request: Any?, section: [String], fields: [String]) -> Bool {
        guard var object = request as? [String: Any] else { return false }
        if !section.isEmpty {
            guard let inner = section.lazy.compactMap({ object[$0] as? [String: Any] }).first else { return false }
            object = inner
        }
        return fields.contains { object[$0] != nil && !(object[$0] is NSNull) }
    }

    /// Prompt and total tokens: Gemini's `usageMetadata` or OpenAI's `usage` (0 when absent), each
    /// clamped to ``TokenUsage/range``.
    static func usage(_ answer: Any?) -> TokenUsage {
        guard let object = answer as? [String: Any] else { return .zero }
        if let usage = object["usageMetadata"] as? [String: Any] {
            return TokenUsage(prompt: TokenUsage.count(usage["promptTokenCount"]), total: TokenUsage.count(usage["totalTokenCount"]))
        }
        if let usage = object["usage"] as? [String: Any] {
            return TokenUsage(prompt: TokenUsage.count(usage["prompt_tokens"]), total: TokenUsage.count(usage["total_tokens"]))
        }
        return .zero
    }

    static func parse(_ bytes: [UInt8]) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(bytes))
    }
}
