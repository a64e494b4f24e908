import Foundation
import NIOCore

/// A prompt's deterministic answer: everything derives from the request body, so the same body
/// always gives the same bytes and different bodies give different texts.
struct Synthesis {
    /// FNV-1a of the raw request body.
    let digest: UInt64
    /// Words in all request texts.
    let promptTokens: Int
    /// The answer's words, after any output-token limit.
    let words: [String]
    /// True when the limit cut the answer short (finish reason MAX_TOKENS / `length`).
    let hitLimit: Bool
    /// True when the request configured thinking (`generationConfig.thinkingConfig`).
    let thinks: Bool

    init(body: ByteBuffer, texts: [String], lastUserText: String, maxOutputTokens: Int?, thinks: Bool = false) {
        self.digest = fnv1a(body.readableBytesView)
        self.thinks = thinks
        self.promptTokens = texts.reduce(0) { $0 + wordCount($1) }
        let quoted = String(lastUserText.split(whereSeparator: \.isWhitespace).joined(separator: " ").prefix(60))
        let full = "Mock answer to: \(quoted) [\(hex(digest).prefix(8))]".split(separator: " ").map(String.init)
        if let limit = maxOutputTokens, limit > 0, limit < full.count {
            self.words = Array(full.prefix(limit))
            self.hitLimit = true
        } else {
            self.words = full
            self.hitLimit = false
        }
    }

    var text: String { words.joined(separator: " ") }
    /// The opaque base64 signature of the model's thoughts that Gemini 3 puts on a part when thinking
    /// is configured (a client sends it back in later turns); nil otherwise.
    var thoughtSignature: String? {
        thinks ? Data(("mock-thought-signature-" + hex(digest)).utf8).base64EncodedString() : nil
    }
    var responseId: String { "mock-" + hex(digest) }
    /// A fixed Unix time for the OpenAI `created` field.
    var created: Int { 1_750_000_000 + Int(digest % 10_000_000) }

    /// The answer cut into at most `count` deltas that concatenate to `text`; each with its
    /// cumulative word count.
    func deltas(count: Int) -> [(text: String, cumulativeWords: Int)] {
        let chunkCount = max(1, min(count, words.count))
        return (0..<chunkCount).map { index in
            let start = words.count * index / chunkCount
            let end = words.count * (index + 1) / chunkCount
            let piece = words[start..<end].joined(separator: " ")
            return (index < chunkCount - 1 ? piece + " " : piece, end)
        }
    }
}

/// Eight embedding values in [-1, 1] derived from the text alone, so the same text embeds the
/// same way in `embedContent`, `batchEmbedContents` and `/openai/embeddings`.
func embeddingValues(for text: String) -> [JSONValue] {
    (0..<8).map { index in
        let hash = fnv1a(Array(text.utf8) + [UInt8(index)])
        return .double(Double(hash % 2_000_001) / 1_000_000 - 1)
    }
}

func wordCount(_ text: String) -> Int {
    text.split(whereSeparator: \.isWhitespace).count
}

func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
    bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01b3 }
}

func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// A `[[fault:…]]` trigger found in the prompt text.
enum Fault: Equatable {
    case quota, internalError, unavailable, internalErrorOnce
    case slow(Duration)
    case safety, blocked, truncate
    /// A stream stops after its first piece until the test releases it (`MockUpstreamRecorder.release()`).
    case hold
    /// Answer gzip-encoded when the client accepts it.
    case gzip

    /// All triggers in `texts`, in order; unknown triggers are ignored.
    static func parse(_ texts: [String]) -> [Fault] {
        texts.flatMap { text in
            text.split(separator: "[[fault:", omittingEmptySubsequences: false).dropFirst().compactMap { rest in
                guard let end = rest.firstRange(of: "]]") else { return nil }
                return Fault(String(rest[..<end.lowerBound]))
            }
        }
    }

    private init?(_ name: String) {
        switch name {
        case "429": self = .quota
        case "500": self = .internalError
        case "503": self = .unavailable
        case "once-500": self = .internalErrorOnce
        case "safety": self = .safety
        case "blocked": self = .blocked
        case "truncate": self = .truncate
        case "hold": self = .hold
        case "gzip": self = .gzip
        default:
            guard name.hasPrefix("slow:"), let ms = Int(name.dropFirst(5)), ms >= 0 else { return nil }
            self = .slow(.milliseconds(ms))
        }
    }
}
