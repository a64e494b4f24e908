import GemcacheKey
public import HTTPTypes

/// A request on a cached route (SPEC §2): which operation, API version and model.
public struct CachedRoute: Sendable, Equatable {
    /// The cached operations.
    public enum Operation: String, Sendable, CaseIterable {
        case generateContent, streamGenerateContent, countTokens, embedContent, batchEmbedContents
        case listModels = "models.list"
        case getModel = "models.get"
        case openAIChat = "openai.chat"
        case openAIEmbeddings = "openai.embeddings"
    }

    public let operation: Operation
    public let apiVersion: String
    /// The model id without `models/`; empty on the OpenAI surface and the model list, where the model
    /// (if any) is named in the body.
    public let model: String

    /// The endpoint kind as it enters the key.
    public var endpoint: String { operation.rawValue }
    var dialect: BodyDialect { operation == .openAIChat || operation == .openAIEmbeddings ? .openAI : .gemini }
    var isGET: Bool { operation == .listModels || operation == .getModel }
    var isOpenAI: Bool { dialect == .openAI }

    public init(operation: Operation, apiVersion: String, model: String) {
        self.operation = operation
        self.apiVersion = apiVersion
        self.model = model
    }

    /// The cached route a request is on, or nil when the path is not cached.
    /// - Throws: 400 when the path is a cached operation but names an invalid model (`..`, encoded slashes).
    public init?(method: HTTPRequest.Method, path: String) throws(ProxyError) {
        // Split as bytes: `/` is ASCII, and splitting the String would walk grapheme clusters.
        let segments = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Substring.init)
        guard segments.count >= 3, segments[0].isEmpty, segments[1] == "v1" || segments[1] == "v1beta" else { return nil }
        let version = String(segments[1])
        let tail = segments.dropFirst(2)
        switch (method, tail.first) {
        case (.post, "openai") where version == "v1beta" && tail.elementsEqual(["openai", "chat", "completions"]):
            self.init(operation: .openAIChat, apiVersion: version, model: "")
        case (.post, "openai") where version == "v1beta" && tail.elementsEqual(["openai", "embeddings"]):
            self.init(operation: .openAIEmbeddings, apiVersion: version, model: "")
        case (.get, "models") where tail.count == 1:
            self.init(operation: .listModels, apiVersion: version, model: "")
        case (.get, "models") where tail.count == 2:
            self.init(operation: .getModel, apiVersion: version, model: try Self.validModel(segments[3]))
        case (.post, "models") where tail.count == 2:
            let name = segments[3]
            guard let colon = name.lastIndex(of: ":"), let operation = Operation(rawValue: String(name[name.index(after: colon)...])),
                Self.postOperations.contains(operation)
            else { return nil }
            self.init(operation: operation, apiVersion: version, model: try Self.validModel(name[..<colon]))
        default:
            return nil
        }
    }

    private static let postOperations: Set<Operation> = [.generateContent, .streamGenerateContent, .countTokens, .embedContent, .batchEmbedContents]

    /// Letters, digits, `.`, `-`, `_`; no path tricks.
    static func validModel(_ model: Substring) throws(ProxyError) -> String {
        let bytes = model.utf8
        let valid =
            (1...128).contains(bytes.count) && !zip(bytes, bytes.dropFirst()).contains { $0 == UInt8(ascii: ".") && $1 == UInt8(ascii: ".") }
            && bytes.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                    true
                default: false
                }
            }
        guard valid else { throw .invalidArgument("Invalid model name.") }
        return String(model)
    }
}

extension ProxyConfiguration.Cache {
    /// The time to live of an operation's answers (SPEC §1): its kind's `cache.ttl` entry, else
    /// `cache.default_ttl`, else the kind's built-in TTL (``TTLs/builtIn``).
    func ttl(for operation: CachedRoute.Operation) -> Duration {
        let builtIn = TTLs.builtIn
        let (named, kindDefault): (Duration?, Duration) =
            switch operation {
            case .generateContent, .streamGenerateContent: (ttl.generate, builtIn.generate)
            case .countTokens: (ttl.countTokens, builtIn.countTokens)
            case .embedContent, .batchEmbedContents: (ttl.embed, builtIn.embed)
            case .listModels, .getModel: (ttl.models, builtIn.models)
            case .openAIChat, .openAIEmbeddings: (ttl.openai, builtIn.openai)
            }
        return named ?? defaultTTL ?? kindDefault
    }
}
