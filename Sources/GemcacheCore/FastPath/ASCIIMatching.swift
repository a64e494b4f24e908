/// Comparisons of received bytes with ASCII literals, for the fast path's parsers.
///
/// A `StaticString` and a loop over its bytes: comparing with `String.utf8` through `zip`,
/// `starts(with:)` or `elementsEqual` went through unspecialized iterators and showed in profiles of
/// the hit path (benchmarks/RESULTS.md §1).
extension Slice where Base == UnsafeRawBufferPointer {
    /// Whether these bytes start with `prefix`; with `ignoringCase` (and a lowercase `prefix`), ASCII
    /// letters compare without case.
    func starts(withASCII prefix: StaticString, ignoringCase: Bool = false) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard self.count >= count else { return false }
        var index = startIndex
        for offset in 0..<count {
            var byte = self[index]
            if ignoringCase && byte &- UInt8(ascii: "A") < 26 { byte |= 0x20 }
            guard byte == prefix.utf8Start[offset] else { return false }
            index += 1
        }
        return true
    }

    /// Whether these bytes are exactly `literal` (see ``starts(withASCII:ignoringCase:)``).
    func equals(ASCII literal: StaticString, ignoringCase: Bool = false) -> Bool {
        count == literal.utf8CodeUnitCount && starts(withASCII: literal, ignoringCase: ignoringCase)
    }
}
