import Foundation

/// How a streamed answer is framed (gemini-api.md §5), and how to tell a complete recording from a
/// truncated one.
enum StreamFraming: Sendable {
    /// `?alt=sse`: events `data: <one-line JSON>` separated by blank lines; the stream just ends.
    case sse
    /// No `alt`: one JSON array written incrementally.
    case jsonArray
    /// The OpenAI surface: `data: <chunk>` events ending with `data: [DONE]`.
    case openAI

    /// The answer objects of a recorded stream, or nil when the recording is truncated (an event
    /// left unterminated, no closing bracket, no `[DONE]`) or does not parse.
    func answers(_ bytes: [UInt8]) -> [Any]? {
        switch self {
        case .jsonArray:
            return (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [Any]
        case .sse, .openAI:
            let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
            guard text.hasSuffix("\n\n") else { return nil }
            let payloads = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { event in
                event.split(separator: "\n").filter { $0.hasPrefix("data:") }.map { $0.dropFirst(5).drop { $0 == " " } }.joined(separator: "\n")
            }
            var answers: [Any] = []
            for (index, payload) in payloads.enumerated() {
                if self == .openAI && payload == "[DONE]" {
                    return index == payloads.count - 1 ? answers : nil
                }
                guard let answer = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) else { return nil }
                answers.append(answer)
            }
            return self == .openAI ? nil : answers
        }
    }

    /// Whether a recorded stream is complete and successful: its last answer finished normally.
    func isComplete(_ answers: [Any], request: @autoclosure () -> Any?) -> Bool {
        switch self {
        case .sse, .jsonArray:
            guard let last = answers.last else { return false }
            return StorePolicy.isCompleteGeneration(last, request: request())
        case .openAI:
            // A trailing usage-only chunk may follow the last chunk with choices.
            guard let last = answers.last(where: { (($0 as? [String: Any])?["choices"] as? [Any])?.isEmpty == false }) else { return false }
            return StorePolicy.isCompleteChat(last, request: request())
        }
    }

    /// The final usage: the last chunk that carries any (cumulative on Gemini streams).
    func usage(_ answers: [Any]) -> TokenUsage {
        answers.lazy.reversed().map(StorePolicy.usage).first { $0 != .zero } ?? .zero
    }
}
