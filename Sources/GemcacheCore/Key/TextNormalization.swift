import Foundation

/// The `text` level's rule for one text part.
enum TextNormalization {
    /// Unicode NFC, then CRLF and lone CR to LF, then leading and trailing White_Space scalars
    /// trimmed. Inner whitespace is kept.
    static func normalize(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        var afterCR = false
        for scalar in text.precomposedStringWithCanonicalMapping.unicodeScalars {
            if scalar == "\r" {
                scalars.append("\n")
                afterCR = true
                continue
            }
            if !(afterCR && scalar == "\n") {
                scalars.append(scalar)
            }
            afterCR = false
        }
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else {
            return ""
        }
        return String(scalars[first...last])
    }
}
