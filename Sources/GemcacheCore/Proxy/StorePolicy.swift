import Foundation

/// Which upstream answers may be stored (SPEC §2), and the token counts they carry.
enum StorePolicy {
    /// Only complete, successful answers: HTTP 200 and, for generation, every candidate finished with
    /// STOP (MAX_TOKENS only when the request set `maxOutputTokens` itself); never a blocked prompt or
    /// an empty candidate list.
    static func isStorableGeneration(status: Int, answer: Any?, requestSetMaxTokens: Bool) -> Bool {
        guard status == 200, let object = answer as? [String: Any] else { return false }
        if let feedback = object["promptFeedback"] as? [String: Any], feedback["blockReason"] != nil {
            return false
        }
        guard let candidates = object["candidates"] as? [[String: Any]], !candidates.isEmpty else { return false }
        return candidates.allSatisfy { candidate in
            switch candidate["finishReason"] as? String {
            case "STOP": true
            case "MAX_TOKENS": requestSetMaxTokens
            default: false
            }
        }
    }

    /// Whether a generateContent request body sets `generationConfig.maxOutputTokens` (either spelling).
    static func setsMaxOutputTokens(_ request: Any?) -> Bool {
        guard let object = request as? [String: Any],
            let config = (object["generationConfig"] ?? object["generation_config"]) as? [String: Any]
        else { return false }
        return config["maxOutputTokens"] != nil || config["max_output_tokens"] != nil
    }

    /// `usageMetadata.promptTokenCount` and `totalTokenCount` (0 when absent).
    static func usage(_ answer: Any?) -> TokenUsage {
        guard let usage = (answer as? [String: Any])?["usageMetadata"] as? [String: Any] else { return .zero }
        return TokenUsage(prompt: (usage["promptTokenCount"] as? NSNumber)?.intValue ?? 0, total: (usage["totalTokenCount"] as? NSNumber)?.intValue ?? 0)
    }

    static func parse(_ bytes: [UInt8]) -> Any? {
        try? JSONSerialization.jsonObject(with: Data(bytes))
    }
}
