import HTTPTypes
import Testing

@testable import GemcacheCore

/// The nearest recording a replay 404 names (SPEC §11): fewest differing paths of the canonical
/// requests, among those of the request's own model and endpoint, and at most three paths shown.
struct ReplayIndexTests {
    static let path = "/v1beta/models/gemini-2.5-flash:generateContent"

    static func request(_ body: String, path: String = path) -> [UInt8] {
        RecordedRequest.json(path: path, query: [], fieldMask: nil, namespace: nil, canonical: Array(body.utf8))
    }

    static func index(_ bodies: [String]) -> ReplayIndex {
        var index = ReplayIndex()
        for (number, body) in bodies.enumerated() {
            index.add(request(body), key: "k\(number)", model: "gemini-2.5-flash", endpoint: "generateContent")
        }
        return index
    }

    static func message(_ index: ReplayIndex, _ body: String, model: String = "gemini-2.5-flash", path: String = path) -> String {
        let error = index.notRecorded(request(body, path: path), model: model, endpoint: "generateContent")
        #expect(error.status == .notFound && error.googleStatus == "NOT_FOUND")
        return error.message
    }

    @Test func theNearestRecordingIsTheOneWithFewestDifferingPaths() {
        let index = Self.index([
            #"{"contents":[{"parts":[{"text":"Other"}]}],"generationConfig":{"seed":1,"temperature":0.2}}"#,
            #"{"contents":[{"parts":[{"text":"Hi"}]}],"generationConfig":{"temperature":0.7}}"#,
            #"{"contents":[{"parts":[{"text":"Hi"}],"role":"user"}]}"#,
        ])
        #expect(index.count == 3)
        let message = Self.message(index, #"{"contents":[{"parts":[{"text":"Hi"}]}],"generationConfig":{"temperature":0.2}}"#)
        #expect(
            message
                == "gemcache replay: this request was not recorded; the nearest recorded gemini-2.5-flash generateContent request (key k1) differs at generationConfig.temperature: 0.7 recorded, 0.2 asked."
        )
    }

    @Test func pathsPresentOnOneSideOnlyAndTheAPIVersionAreNamed() {
        let index = Self.index([#"{"contents":[{"parts":[{"text":"Hi"}]}]}"#])
        let message = Self.message(
            index,
            #"{"contents":[{"parts":[{"text":"Hi"}]}],"generationConfig":{"seed":3}}"#,
            path: "/v1/models/gemini-2.5-flash:generateContent"
        )
        #expect(
            message.hasSuffix(
                #"differs at path: "/v1beta/models/gemini-2.5-flash:generateContent" recorded, "/v1/models/gemini-2.5-flash:generateContent" asked; generationConfig.seed: (none) recorded, 3 asked."#
            )
        )
    }

    @Test func atMostThreePathsAreShownAndLongValuesAreCut() {
        let long = String(repeating: "x", count: 200)
        let index = Self.index([#"{"a":1,"b":2,"c":3,"d":4,"e":"\#(long)"}"#])
        let message = Self.message(index, #"{"a":5,"b":6,"c":7,"d":8,"e":"y"}"#)
        #expect(message.hasSuffix("differs at a: 1 recorded, 5 asked; b: 2 recorded, 6 asked; c: 3 recorded, 7 asked (and 2 more)."))
        let cut = Self.message(index, #"{"a":1,"b":2,"c":3,"d":4,"e":"y\n"}"#)
        #expect(cut.hasSuffix(#"e: ""# + String(repeating: "x", count: 59) + #"… recorded, "y\n" asked."#))
    }

    /// Thousands of recordings of one model and endpoint: the one that differs in one path is found.
    @Test func theNearestOfThousandsIsFound() {
        let index = Self.index((0..<5000).map { #"{"contents":[{"parts":[{"text":"prompt \#($0)"}]}],"generationConfig":{"seed":\#($0 % 7)}}"# })
        let message = Self.message(index, #"{"contents":[{"parts":[{"text":"prompt 4321"}]}],"generationConfig":{"seed":9}}"#)
        #expect(message.contains("(key k4321) differs at generationConfig.seed: 2 recorded, 9 asked."), "\(message)")
    }

    @Test func anotherModelOrEndpointHasNoNearestRecording() {
        let index = Self.index([#"{"contents":[]}"#])
        #expect(
            Self.message(index, #"{"contents":[]}"#, model: "gemini-2.5-pro")
                == "gemcache replay: no request of gemini-2.5-pro generateContent was recorded."
        )
    }
}
