@testable import GemcacheKey

/// libFuzzer's entry point: the first byte picks what the rest of the input is fed to.
///
/// - even: a request body for ``BodyNormalizer/normalize(_:level:dialect:)`` at every level and in
///   both dialects, then the cache key of each result. Properties checked (a violation traps, which
///   libFuzzer reports as a crash with the input): canonical forms are themselves valid and
///   normalize to themselves (the key of an equivalent request never depends on how often it was
///   canonicalized), `exact` returns the body unchanged.
/// - odd: a request head for ``RequestHead/parse(_:maxLength:)``; every range it returns lies inside
///   the input, and the raw key of an answerable head can be computed.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    if data[0] & 1 == 0 {
        normalizeBody(Array(input))
    } else {
        parseHead(UnsafeRawBufferPointer(input))
    }
    return 0
}

private func normalizeBody(_ body: [UInt8]) {
    for dialect in [BodyDialect.gemini, .openAI] {
        for level in NormalizationLevel.allCases {
            guard let canonical = try? BodyNormalizer.normalize(body, level: level, dialect: dialect) else { continue }
            if level == .exact { precondition(canonical == body, "exact changed the body") }
            let again = try? BodyNormalizer.normalize(canonical, level: level, dialect: dialect)
            precondition(again == canonical, "canonical form is not a fixed point at \(level)")
            let key = CacheKeyComponents(
                apiVersion: "v1beta", endpoint: "generateContent", model: "gemini-2.5-flash", scope: "shared",
                normalizedBody: canonical
            ).key
            precondition(key.bytes.count == 32)
        }
    }
}

/// One hasher for the run, as each connection has one.
nonisolated(unsafe) private let hasher = RawKeyHasher(normalize: .text)

private func parseHead(_ bytes: UnsafeRawBufferPointer) {
    guard case .head(let head) = RequestHead.parse(bytes, maxLength: 16 << 10) else { return }
    let all = 0...bytes.count
    precondition(all.contains(head.length) && head.target.lowerBound >= 0 && head.target.upperBound <= head.length)
    for range in [head.credential, head.namespace].compactMap({ $0 }) {
        precondition(range.lowerBound >= 0 && range.upperBound <= head.length)
    }
    let target = UnsafeRawBufferPointer(rebasing: bytes[head.target])
    if let model = RawRequestKey.modelRange(target: target) {
        precondition(model.lowerBound >= 0 && model.upperBound <= target.count)
        let body = UnsafeRawBufferPointer(rebasing: bytes[head.length..<min(bytes.count, head.length + head.contentLength)])
        var rawKey = [UInt8](repeating: 0, count: RawRequestKey.length)
        rawKey.withUnsafeMutableBytes { output in
            hasher.hash(target: target, scope: UnsafeRawBufferPointer(rebasing: bytes[0..<0]), namespace: nil, body: body, into: output)
        }
    }
}
