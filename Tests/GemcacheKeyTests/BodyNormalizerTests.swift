import GemcacheKey
import Testing

/// Two bodies and the levels at which their normalized forms must be equal.
/// At every other level they must differ.
struct CollisionCase: Sendable, CustomTestStringConvertible {
    let label: String
    let dialect: BodyDialect
    let a: String
    let b: String
    let collidesAt: Set<NormalizationLevel>

    var testDescription: String { label }

    static let canonical: Set<NormalizationLevel> = [.canonical, .text]
    static let text: Set<NormalizationLevel> = [.text]
    static let never: Set<NormalizationLevel> = []

    static func gemini(_ label: String, _ a: String, _ b: String, _ collidesAt: Set<NormalizationLevel>) -> Self {
        Self(label: label, dialect: .gemini, a: a, b: b, collidesAt: collidesAt)
    }

    static func openAI(_ label: String, _ a: String, _ b: String, _ collidesAt: Set<NormalizationLevel>) -> Self {
        Self(label: label, dialect: .openAI, a: a, b: b, collidesAt: collidesAt)
    }
}

/// A generateContent body with one user text part (`text` is JSON string content, escapes allowed).
private func prompt(_ text: String, extra: String = "") -> String {
    #"{"contents":[{"role":"user","parts":[{"text":"\#(text)"}]}]\#(extra)}"#
}

/// A generateContent body with the given generationConfig object.
private func generationConfig(_ config: String) -> String {
    prompt("hi", extra: #","generationConfig":\#(config)"#)
}

@Suite struct BodyNormalizerTests {
    static let collisionCases: [CollisionCase] = [
        .gemini("identical bodies", prompt("hi"), prompt("hi"), [.exact, .canonical, .text]),
        .gemini("key order", #"{"b":2,"a":1}"#, #"{"a":1,"b":2}"#, CollisionCase.canonical),
        .gemini(
            "nested key order",
            generationConfig(#"{"topK":3,"temperature":0.2}"#),
            generationConfig(#"{"temperature":0.2,"topK":3}"#),
            CollisionCase.canonical
        ),
        .gemini("whitespace", " {\n \"a\" : [ 1 , 2 ]\t}\r\n", #"{"a":[1,2]}"#, CollisionCase.canonical),
        .gemini("1 vs 1.0", generationConfig(#"{"temperature":1}"#), generationConfig(#"{"temperature":1.0}"#), CollisionCase.canonical),
        .gemini("1 vs 1e0", generationConfig(#"{"temperature":1}"#), generationConfig(#"{"temperature":1e0}"#), CollisionCase.canonical),
        .gemini("1 vs 1.00", generationConfig(#"{"temperature":1}"#), generationConfig(#"{"temperature":1.00}"#), CollisionCase.canonical),
        .gemini("1 vs 10E-1", generationConfig(#"{"temperature":1}"#), generationConfig(#"{"temperature":10E-1}"#), CollisionCase.canonical),
        .gemini("0.5 vs 5e-1", generationConfig(#"{"temperature":0.5}"#), generationConfig(#"{"temperature":5e-1}"#), CollisionCase.canonical),
        .gemini("-0 vs 0", generationConfig(#"{"temperature":-0.0}"#), generationConfig(#"{"temperature":0}"#), CollisionCase.canonical),
        .gemini(
            "exact large integer in float form",
            generationConfig(#"{"seed":9007199254740993.0}"#),
            generationConfig(#"{"seed":9007199254740993}"#),
            CollisionCase.canonical
        ),
        .gemini(
            "generation_config vs generationConfig",
            prompt("hi", extra: #","generation_config":{"max_output_tokens":64,"response_mime_type":"text/plain"}"#),
            prompt("hi", extra: #","generationConfig":{"maxOutputTokens":64,"responseMimeType":"text/plain"}"#),
            CollisionCase.canonical
        ),
        .gemini(
            "thinking_config/thinking_budget",
            generationConfig(#"{"thinking_config":{"thinking_budget":0}}"#),
            generationConfig(#"{"thinkingConfig":{"thinkingBudget":0}}"#),
            CollisionCase.canonical
        ),
        .gemini(
            "inline_data/mime_type",
            #"{"contents":[{"parts":[{"inline_data":{"mime_type":"image/png","data":"AAAA"}}]}]}"#,
            #"{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png","data":"AAAA"}}]}]}"#,
            CollisionCase.canonical
        ),
        .gemini(
            "file_data/file_uri",
            #"{"contents":[{"parts":[{"file_data":{"file_uri":"https://x/files/a"}}]}]}"#,
            #"{"contents":[{"parts":[{"fileData":{"fileUri":"https://x/files/a"}}]}]}"#,
            CollisionCase.canonical
        ),
        .gemini(
            "system_instruction",
            prompt("hi", extra: #","system_instruction":{"parts":[{"text":"be brief"}]}"#),
            prompt("hi", extra: #","systemInstruction":{"parts":[{"text":"be brief"}]}"#),
            CollisionCase.canonical
        ),
        .gemini(
            "function_declarations container renamed, parameters kept",
            #"{"tools":[{"function_declarations":[{"name":"f","parameters":{"type":"object","properties":{"max_tokens":{"type":"integer"}}}}]}]}"#,
            #"{"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"max_tokens":{"type":"integer"}}}}]}]}"#,
            CollisionCase.canonical
        ),
        .gemini(
            "function_call container renamed, args kept",
            #"{"contents":[{"parts":[{"function_call":{"name":"f","args":{"max_tokens":1}}}]}]}"#,
            #"{"contents":[{"parts":[{"functionCall":{"name":"f","args":{"max_tokens":1}}}]}]}"#,
            CollisionCase.canonical
        ),
        .gemini(
            "response_schema container renamed",
            generationConfig(#"{"response_schema":{"properties":{"user_name":{"type":"STRING"}}}}"#),
            generationConfig(#"{"responseSchema":{"properties":{"user_name":{"type":"STRING"}}}}"#),
            CollisionCase.canonical
        ),
        .gemini("null member vs absent", prompt("hi", extra: #","cachedContent":null"#), prompt("hi"), CollisionCase.canonical),
        .gemini(
            "nested null member vs absent",
            generationConfig(#"{"seed":null,"temperature":0.2}"#),
            generationConfig(#"{"temperature":0.2}"#),
            CollisionCase.canonical
        ),
        .gemini("escaped vs raw UTF-8", prompt(#"caf\u00e9 \/"#), prompt("café /"), CollisionCase.canonical),
        .gemini("text CRLF vs LF", prompt(#"a\r\nb"#), prompt(#"a\nb"#), CollisionCase.text),
        .gemini("text lone CR vs LF", prompt(#"a\rb"#), prompt(#"a\nb"#), CollisionCase.text),
        .gemini("text trailing spaces", prompt("hello  "), prompt("hello"), CollisionCase.text),
        .gemini("text leading newline and tab", prompt(#"\n\thello"#), prompt("hello"), CollisionCase.text),
        .gemini("text NFC vs NFD (raw UTF-8)", prompt("caf\u{E9}"), prompt("cafe\u{301}"), CollisionCase.text),
        .gemini("text NFC vs NFD (escaped)", prompt(#"caf\u00e9"#), prompt(#"cafe\u0301"#), CollisionCase.text),
        .gemini(
            "systemInstruction text trimmed",
            prompt("hi", extra: #","systemInstruction":{"parts":[{"text":"be brief\r\n"}]}"#),
            prompt("hi", extra: #","systemInstruction":{"parts":[{"text":"be brief"}]}"#),
            CollisionCase.text
        ),
        .gemini(
            "countTokens nested request text",
            #"{"generateContentRequest":{"contents":[{"parts":[{"text":" x "}]}]}}"#,
            #"{"generateContentRequest":{"contents":[{"parts":[{"text":"x"}]}]}}"#,
            CollisionCase.text
        ),
        .gemini(
            "embedContent text",
            #"{"content":{"parts":[{"text":"x\r\n"}]},"task_type":"RETRIEVAL_QUERY"}"#,
            #"{"content":{"parts":[{"text":"x"}]},"taskType":"RETRIEVAL_QUERY"}"#,
            CollisionCase.text
        ),
        .gemini("inner whitespace differs", prompt("a  b"), prompt("a b"), CollisionCase.never),
        .gemini("inner newline differs", prompt(#"a\n\nb"#), prompt(#"a\nb"#), CollisionCase.never),
        .gemini("temperature 0.2 vs 0.3", generationConfig(#"{"temperature":0.2}"#), generationConfig(#"{"temperature":0.3}"#), CollisionCase.never),
        .gemini("seed differs", generationConfig(#"{"seed":1}"#), generationConfig(#"{"seed":2}"#), CollisionCase.never),
        .gemini(
            "large seed stays exact",
            generationConfig(#"{"seed":9007199254740993}"#),
            generationConfig(#"{"seed":9007199254740992}"#),
            CollisionCase.never
        ),
        .gemini(
            "systemInstruction present vs absent",
            prompt("hi", extra: #","systemInstruction":{"parts":[{"text":"x"}]}"#),
            prompt("hi"),
            CollisionCase.never
        ),
        .gemini(
            "tools differ",
            prompt("hi", extra: #","tools":[{"googleSearch":{}}]"#),
            prompt("hi", extra: #","tools":[{"codeExecution":{}}]"#),
            CollisionCase.never
        ),
        .gemini("empty object vs absent", prompt("hi", extra: #","generationConfig":{}"#), prompt("hi"), CollisionCase.never),
        .gemini("null array element kept", #"{"a":[null]}"#, #"{"a":[]}"#, CollisionCase.never),
        .gemini(
            "functionCall.args keys are user data",
            #"{"contents":[{"parts":[{"functionCall":{"name":"f","args":{"max_tokens":1}}}]}]}"#,
            #"{"contents":[{"parts":[{"functionCall":{"name":"f","args":{"maxTokens":1}}}]}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "functionResponse.response keys are user data",
            #"{"contents":[{"parts":[{"functionResponse":{"name":"f","response":{"user_id":1}}}]}]}"#,
            #"{"contents":[{"parts":[{"functionResponse":{"name":"f","response":{"userId":1}}}]}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "functionResponse.response keeps nulls",
            #"{"contents":[{"parts":[{"functionResponse":{"name":"f","response":{"error":null}}}]}]}"#,
            #"{"contents":[{"parts":[{"functionResponse":{"name":"f","response":{}}}]}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "functionResponse.response text not normalized",
            #"{"contents":[{"parts":[{"functionResponse":{"name":"f","response":{"parts":[{"text":"a "}]}}}]}]}"#,
            #"{"contents":[{"parts":[{"functionResponse":{"name":"f","response":{"parts":[{"text":"a"}]}}}]}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "responseSchema property names are user data",
            generationConfig(#"{"responseSchema":{"properties":{"user_name":{"type":"STRING"}}}}"#),
            generationConfig(#"{"responseSchema":{"properties":{"userName":{"type":"STRING"}}}}"#),
            CollisionCase.never
        ),
        .gemini(
            "responseJsonSchema property names are user data",
            generationConfig(#"{"response_json_schema":{"properties":{"user_name":{}}}}"#),
            generationConfig(#"{"responseJsonSchema":{"properties":{"userName":{}}}}"#),
            CollisionCase.never
        ),
        .gemini(
            "function parameters property names are user data",
            #"{"tools":[{"functionDeclarations":[{"name":"f","parameters":{"properties":{"max_tokens":{}}}}]}]}"#,
            #"{"tools":[{"functionDeclarations":[{"name":"f","parameters":{"properties":{"maxTokens":{}}}}]}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "parametersJsonSchema keeps nulls",
            #"{"tools":[{"functionDeclarations":[{"name":"f","parameters_json_schema":{"default":null}}]}]}"#,
            #"{"tools":[{"functionDeclarations":[{"name":"f","parametersJsonSchema":{}}]}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "labels are user data",
            prompt("hi", extra: #","labels":{"cost_center":"a"}"#),
            prompt("hi", extra: #","labels":{"costCenter":"a"}"#),
            CollisionCase.never
        ),
        .gemini(
            "inlineData.data never trimmed",
            #"{"contents":[{"parts":[{"inlineData":{"mimeType":"text/plain","data":"AAAA "}}]}]}"#,
            #"{"contents":[{"parts":[{"inlineData":{"mimeType":"text/plain","data":"AAAA"}}]}]}"#,
            CollisionCase.never
        ),
        .gemini("text outside parts not normalized", #"{"text":"a "}"#, #"{"text":"a"}"#, CollisionCase.never),
        .gemini("true vs 1", generationConfig(#"{"responseLogprobs":true}"#), generationConfig(#"{"responseLogprobs":1}"#), CollisionCase.never),
        .gemini("false vs 0", generationConfig(#"{"responseLogprobs":false}"#), generationConfig(#"{"responseLogprobs":0}"#), CollisionCase.never),
        .gemini("string 1 vs number 1", generationConfig(#"{"seed":"1"}"#), generationConfig(#"{"seed":1}"#), CollisionCase.never),
        .gemini("null vs string null", #"{"a":[null]}"#, #"{"a":["null"]}"#, CollisionCase.never),
        .gemini("NFC vs NFD keys stay distinct", "{\"caf\u{E9}\":1}", "{\"cafe\u{301}\":1}", CollisionCase.never),
        .openAI(
            "openAI message content trimmed",
            #"{"model":"m","messages":[{"role":"user","content":"hi\r\n"}]}"#,
            #"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            CollisionCase.text
        ),
        .openAI(
            "openAI content part text NFC",
            #"{"messages":[{"role":"user","content":[{"type":"text","text":"cafe\u0301"}]}]}"#,
            #"{"messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9"}]}]}"#,
            CollisionCase.text
        ),
        .openAI("openAI embeddings input string", #"{"model":"m","input":" a "}"#, #"{"model":"m","input":"a"}"#, CollisionCase.text),
        .openAI(
            "openAI embeddings input array",
            #"{"model":"m","input":["a\r\n","b"]}"#,
            #"{"model":"m","input":["a","b"]}"#,
            CollisionCase.text
        ),
        .openAI("openAI null member vs absent", #"{"model":"m","stop":null}"#, #"{"model":"m"}"#, CollisionCase.canonical),
        .openAI("openAI no renaming", #"{"max_tokens":5}"#, #"{"maxTokens":5}"#, CollisionCase.never),
        .openAI(
            "openAI tool parameters keep nulls",
            #"{"tools":[{"type":"function","function":{"name":"f","parameters":{"default":null}}}]}"#,
            #"{"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}"#,
            CollisionCase.never
        ),
        .openAI(
            "openAI inner whitespace kept",
            #"{"messages":[{"content":"a  b"}]}"#,
            #"{"messages":[{"content":"a b"}]}"#,
            CollisionCase.never
        ),
        .gemini(
            "gemini dialect ignores OpenAI text fields",
            #"{"messages":[{"content":"hi "}]}"#,
            #"{"messages":[{"content":"hi"}]}"#,
            CollisionCase.never
        ),
    ]

    @Test(arguments: collisionCases, NormalizationLevel.allCases)
    func collisions(_ testCase: CollisionCase, level: NormalizationLevel) throws {
        let a = try BodyNormalizer.normalize(Array(testCase.a.utf8), level: level, dialect: testCase.dialect)
        let b = try BodyNormalizer.normalize(Array(testCase.b.utf8), level: level, dialect: testCase.dialect)
        if testCase.collidesAt.contains(level) {
            #expect(a == b, "\(String(decoding: a, as: UTF8.self)) vs \(String(decoding: b, as: UTF8.self))")
        } else {
            #expect(a != b, "\(String(decoding: a, as: UTF8.self))")
        }
    }

    @Test(arguments: collisionCases, [NormalizationLevel.canonical, .text])
    func canonicalFormIsIdempotent(_ testCase: CollisionCase, level: NormalizationLevel) throws {
        let once = try BodyNormalizer.normalize(Array(testCase.a.utf8), level: level, dialect: testCase.dialect)
        let twice = try BodyNormalizer.normalize(once, level: level, dialect: testCase.dialect)
        #expect(once == twice)
    }

    @Test func exactReturnsTheBytesAsSent() throws {
        let body = Array(" {\"b\": 1.0, \"a\": null}\n".utf8)
        #expect(try BodyNormalizer.normalize(body, level: .exact, dialect: .gemini) == body)
    }

    /// The canonical form is the key contract: these outputs must not change without a scheme bump.
    @Test(arguments: [
        (
            #"{"b":1.50,"a":[true,null,{"x":null}],"generation_config":{"max_output_tokens":1e2}}"#,
            #"{"a":[true,null,{}],"b":1.5,"generationConfig":{"maxOutputTokens":100}}"#
        ),
        (
            #"{"s":"\u0001\b\f\n\r\t\"\\\/é\u2028\u007f"}"#,
            "{\"s\":\"\\u0001\\b\\f\\n\\r\\t\\\"\\\\/é\u{2028}\u{7f}\"}"
        ),
        (
            #"{"n":[0.1,-2.5e-3,1.5e-7,1e20,-9223372036854775808,9223372036854775807,9223372036854775808,100e-2,1E2,-0,1e-400,0.0000]}"#,
            #"{"n":[0.1,-0.0025,1.5e-07,1e+20,-9223372036854775808,9223372036854775807,9.223372036854776e+18,1,100,0,0,0]}"#
        ),
        (#"{"Z":1,"a":2,"_x":3,"é":4,"e":5}"#, #"{"Z":1,"_x":3,"a":2,"e":5,"é":4}"#),
        (#"{"a_b_c":1,"snake_1":2,"x__y":3,"_lead":4}"#, #"{"_lead":4,"aBC":1,"snake_1":2,"x_Y":3}"#),
        (#"{"contents":[{"parts":[{"text":"  a\r\n\tb \r"}]}]}"#, #"{"contents":[{"parts":[{"text":"a\n\tb"}]}]}"#),
    ])
    func canonicalGolden(input: String, expected: String) throws {
        let output = try BodyNormalizer.normalize(Array(input.utf8), level: .text, dialect: .gemini)
        #expect(String(decoding: output, as: UTF8.self) == expected)
    }

    static let malformed: [(String, [UInt8])] = [
        ("empty body", []),
        ("whitespace only", Array(" \n".utf8)),
        ("unterminated object", Array(#"{"a":1"#.utf8)),
        ("trailing comma in object", Array(#"{"a":1,}"#.utf8)),
        ("trailing comma in array", Array(#"{"a":[1,]}"#.utf8)),
        ("top-level array", Array("[]".utf8)),
        ("top-level string", Array(#""x""#.utf8)),
        ("top-level number", Array("1".utf8)),
        ("top-level null", Array("null".utf8)),
        ("leading zero", Array(#"{"a":01}"#.utf8)),
        ("bare fraction dot", Array(#"{"a":1.}"#.utf8)),
        ("leading dot", Array(#"{"a":.5}"#.utf8)),
        ("plus sign", Array(#"{"a":+1}"#.utf8)),
        ("NaN", Array(#"{"a":NaN}"#.utf8)),
        ("number overflows Double", Array(#"{"a":1e400}"#.utf8)),
        ("single quotes", Array("{'a':1}".utf8)),
        ("unknown escape", Array(#"{"a":"\x"}"#.utf8)),
        ("lone high surrogate", Array(#"{"a":"\ud800"}"#.utf8)),
        ("lone low surrogate", Array(#"{"a":"\udc00x"}"#.utf8)),
        ("raw control character", Array("{\"a\":\"\u{1}\"}".utf8)),
        ("trailing garbage", Array("{} x".utf8)),
        ("two values", Array("{}{}".utf8)),
        ("invalid UTF-8 in string", [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
        ("overlong UTF-8", [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]),
        ("invalid UTF-8 in key", [0x7b, 0x22, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
        ("UTF-8 BOM", [0xef, 0xbb, 0xbf] + Array("{}".utf8)),
        ("UTF-16LE", Array("{}".utf8).flatMap { [$0, 0] }),
        ("nesting too deep", Array(("{\"a\":" + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}").utf8)),
        ("literal truncated", Array(#"{"a":tru}"#.utf8)),
    ]

    @Test(arguments: malformed, [BodyDialect.gemini, .openAI])
    func malformedBodiesAreRejectedAtEveryLevel(_ body: (String, [UInt8]), dialect: BodyDialect) {
        for level in NormalizationLevel.allCases {
            let error = #expect(throws: NormalizationError.self, "\(body.0) at \(level)") {
                try BodyNormalizer.normalize(body.1, level: level, dialect: dialect)
            }
            #expect(error?.message.hasPrefix("Invalid JSON payload received. ") == true)
        }
    }

    /// A body of millions of tiny values would take gigabytes parsed (issue 15, class 7): past
    /// a million values it is refused, at every level; up to it, it is keyed.
    @Test func aBodyOfMoreValuesThanTheLimitIsRefused() throws {
        // The body object, its array, and the rest empty objects.
        func array(values: Int) -> [UInt8] {
            Array(("{\"contents\":[" + Array(repeating: "{}", count: values - 2).joined(separator: ",") + "]}").utf8)
        }
        for level in NormalizationLevel.allCases {
            let error = #expect(throws: NormalizationError.self, "\(level)") {
                try BodyNormalizer.normalize(array(values: 1_000_001), level: level, dialect: .gemini)
            }
            #expect(error?.message.contains("More than 1000000 values") == true)
        }
        #expect(try BodyNormalizer.normalize(array(values: 1_000_000), level: .canonical, dialect: .gemini).count > 0)
    }

    @Test func errorMessagesGiveOffsetsAndNeverEchoTheBody() throws {
        let trailing = #expect(throws: NormalizationError.self) {
            try BodyNormalizer.normalize(Array(#"{"a":1,}"#.utf8), level: .text, dialect: .gemini)
        }
        #expect(trailing?.message == "Invalid JSON payload received. Unexpected token at byte 7.")
        let secret = #expect(throws: NormalizationError.self) {
            try BodyNormalizer.normalize(Array(#"{"key":"AIzaSECRET"#.utf8), level: .exact, dialect: .gemini)
        }
        #expect(secret?.message.contains("SECRET") == false)
        #expect(secret?.description == secret?.message)
    }

    @Test(arguments: [
        #"{"a":1,"a":1}"#,
        #"{"generationConfig":{},"generation_config":{}}"#,
        #"{"generationConfig":{"max_output_tokens":1,"maxOutputTokens":1}}"#,
        #"{"contents":[{"parts":[{"functionCall":{"args":{"x":1,"x":2}}}]}]}"#,
    ])
    func duplicateFieldsAreRejectedOnceCanonicalized(body: String) throws {
        #expect(try BodyNormalizer.normalize(Array(body.utf8), level: .exact, dialect: .gemini) == Array(body.utf8))
        for level in [NormalizationLevel.canonical, .text] {
            let error = #expect(throws: NormalizationError.self) {
                try BodyNormalizer.normalize(Array(body.utf8), level: level, dialect: .gemini)
            }
            #expect(error?.message.contains("Duplicate field") == true)
        }
    }

    @Test func openAIDoesNotRenameSoSnakeAndCamelCoexist() throws {
        let body = Array(#"{"max_tokens":1,"maxTokens":2}"#.utf8)
        let output = try BodyNormalizer.normalize(body, level: .canonical, dialect: .openAI)
        #expect(String(decoding: output, as: UTF8.self) == #"{"maxTokens":2,"max_tokens":1}"#)
    }

    @Test func nestingUpToTheLimitIsAccepted() throws {
        let depth = 127  // plus the top-level object = 128
        let body = "{\"a\":" + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        #expect(throws: Never.self) { try BodyNormalizer.normalize(Array(body.utf8), level: .text, dialect: .gemini) }
    }
}
