import Testing

@testable import GemcacheCore

/// The storing rules of SPEC §2 for answers cut short: a length-limited answer is stored only when the
/// request set the limit, and the request is parsed only for such an answer.
struct StorePolicyTests {
    /// Whether `answer` may be stored for `request`, and how often the request was parsed to decide.
    private static func decide(_ operation: CachedRoute.Operation, answer: String, request: String) -> (stored: Bool, parses: Int) {
        var parses = 0
        func parsedRequest() -> Any? {
            parses += 1
            return StorePolicy.parse(Array(request.utf8))
        }
        let stored = StorePolicy.isStorable(operation, status: 200, answer: StorePolicy.parse(Array(answer.utf8)), request: parsedRequest())
        return (stored, parses)
    }

    private static func generation(_ reasons: String...) -> String {
        #"{"candidates":["# + reasons.map { #"{"content":{"parts":[{"text":"x"}]},"finishReason":"\#($0)"}"# }.joined(separator: ",") + "]}"
    }

    /// The same answer with its finish reasons as numbers, as `$alt=json;enum-encoding=int` gives them.
    private static func generation(numbers reasons: Int...) -> String {
        #"{"candidates":["# + reasons.map { #"{"content":{"parts":[{"text":"x"}]},"finishReason":\#($0)}"# }.joined(separator: ",") + "]}"
    }

    @Test func aFinishedGenerationIsStoredWithoutParsingTheRequest() {
        let decision = Self.decide(.generateContent, answer: Self.generation("STOP", "STOP"), request: #"{"contents":[]}"#)
        #expect(decision.stored && decision.parses == 0)
    }

    @Test func aGenerationCutAtItsLengthIsStoredOnlyWhenTheRequestSetTheLimit() {
        let cut = Self.generation("STOP", "MAX_TOKENS", "MAX_TOKENS")
        let limited = Self.decide(.generateContent, answer: cut, request: #"{"generationConfig":{"maxOutputTokens":5}}"#)
        #expect(limited.stored && limited.parses == 1)
        #expect(Self.decide(.streamGenerateContent, answer: cut, request: #"{"generation_config":{"max_output_tokens":5}}"#).stored)
        #expect(!Self.decide(.generateContent, answer: cut, request: #"{"generationConfig":{"temperature":0}}"#).stored)
        #expect(!Self.decide(.generateContent, answer: cut, request: #"{"contents":[]}"#).stored)
    }

    @Test func blockedOrUnfinishedGenerationsAreNeverStored() {
        #expect(!Self.decide(.generateContent, answer: #"{"promptFeedback":{"blockReason":"SAFETY"}}"#, request: "{}").stored)
        #expect(!Self.decide(.generateContent, answer: Self.generation("STOP", "SAFETY"), request: "{}").stored)
        #expect(!Self.decide(.generateContent, answer: #"{"candidates":[]}"#, request: "{}").stored)
    }

    /// Google's generated REST clients ask for `$alt=json;enum-encoding=int`: STOP is 1, MAX_TOKENS 2,
    /// SAFETY 3, and a block reason is a number too. The rule reads both forms alike.
    @Test func finishAndBlockReasonsGivenAsNumbersFollowTheSameRule() {
        let finished = Self.decide(.generateContent, answer: Self.generation(numbers: 1, 1), request: "{}")
        #expect(finished.stored && finished.parses == 0)
        let cut = Self.generation(numbers: 1, 2)
        #expect(Self.decide(.streamGenerateContent, answer: cut, request: #"{"generationConfig":{"maxOutputTokens":5}}"#).stored)
        #expect(!Self.decide(.generateContent, answer: cut, request: "{}").stored)
        for unfinished in [0, 3, 4, 5, 8] {
            #expect(
                !Self.decide(.generateContent, answer: Self.generation(numbers: 1, unfinished), request: "{}").stored,
                "finishReason \(unfinished)"
            )
        }
        #expect(!Self.decide(.generateContent, answer: #"{"candidates":[{"finishReason":1.5}]}"#, request: "{}").stored)
        #expect(!Self.decide(.generateContent, answer: #"{"promptFeedback":{"blockReason":1}}"#, request: "{}").stored)
    }

    @Test func aChatCutAtItsLengthIsStoredOnlyWhenTheRequestSetTheLimit() {
        let cut = #"{"choices":[{"finish_reason":"length"},{"finish_reason":"length"}]}"#
        let limited = Self.decide(.openAIChat, answer: cut, request: #"{"max_tokens":5}"#)
        #expect(limited.stored && limited.parses == 1)
        #expect(Self.decide(.openAIChat, answer: cut, request: #"{"max_completion_tokens":5}"#).stored)
        #expect(!Self.decide(.openAIChat, answer: cut, request: #"{"max_tokens":null}"#).stored)
        let finished = Self.decide(.openAIChat, answer: #"{"choices":[{"finish_reason":"stop"}]}"#, request: "{}")
        #expect(finished.stored && finished.parses == 0)
    }
}
