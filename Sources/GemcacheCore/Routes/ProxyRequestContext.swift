public import Hummingbird
public import NIOCore

/// The request context of the proxy's router: Hummingbird's basic one plus the client's connection, so
/// that a streamed answer can tell when its client has gone (``GeminiProxy/stream(_:connection:logger:)``).
public struct ProxyRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came on.
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
