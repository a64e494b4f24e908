/// The `text` level's rule for one text part.
enum TextNormalization {
    /// Unicode NFC, then CRLF and lone CR to LF, then leading and trailing White_Space scalars
    /// trimmed. Inner whitespace is kept.
    static func normalize(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        var afterCR = false
        for scalar in nfc(text).unicodeScalars {
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
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else {
            return ""
        }
        return String(scalars[first...last])
    }

    /// Unicode Normalization Form C (UAX #15) of `text`, in time linear in its length.
    ///
    /// The standard library's normalizer does the work (`_nfcCodeUnits`, its public entry until
    /// Swift has a normalization API). It composes in one pass, but puts each run of non-starters
    /// (scalars of combining class other than 0) in canonical order with an insertion sort, quadratic
    /// in the run; and it takes every scalar of class 0 for the start of a segment, which U+0F73,
    /// U+0F75 and U+0F81 are not. So ``prepared(_:)`` first replaces those three by their
    /// decompositions and puts runs longer than ``longRun`` in canonical order, with a stable counting
    /// sort by class; the normalizer then finds every run in order. The result is the NFC of the
    /// standard for every input: a stable sort by class is what canonical ordering is, and a
    /// non-starter decomposes only into non-starters of its own class (TextNormalizationTests checks
    /// this and the list of three for every scalar). Being the standard's NFC, it is its own NFC.
    ///
    /// Foundation's `precomposedStringWithCanonicalMapping` is not used: on Linux it is quadratic in
    /// every composition (1 MB of decomposed "é" took 35 s), gets some compositions wrong (a syllable
    /// LV followed by a jamo T stays apart; U+10041 U+0301 becomes "Á"), the three above as well, and
    /// drops marks from long runs of marks that decompose.
    static func nfc(_ text: String) -> String {
        String(decoding: prepared(text)._nfcCodeUnits, as: UTF8.self)
    }

    /// Runs of non-starters longer than this are sorted before normalization: UAX #15's stream-safe
    /// limit, far above the runs of any written language, so ordinary text reaches the normalizer as sent.
    static let longRun = 30

    /// The scalars of combining class 0 whose decomposition starts with a non-starter (UAX #15 calls
    /// them non-starter decompositions; their use is discouraged), and that decomposition.
    static let nonStarterDecompositions: [Unicode.Scalar: [Unicode.Scalar]] = [
        "\u{0F73}": ["\u{0F71}", "\u{0F72}"],
        "\u{0F75}": ["\u{0F71}", "\u{0F74}"],
        "\u{0F81}": ["\u{0F71}", "\u{0F80}"],
    ]

    /// `text`, canonically equivalent, with the ``nonStarterDecompositions`` decomposed and each run of
    /// more than ``longRun`` non-starters stably sorted by class; `text` itself when it has neither.
    private static func prepared(_ text: String) -> String {
        var run = 0
        let needsWork = text.unicodeScalars.contains { scalar in
            run = combiningClass(scalar) == 0 ? 0 : run + 1
            return run > longRun || nonStarterDecomposition(scalar) != nil
        }
        guard needsWork else { return text }
        var scalars: [Unicode.Scalar] = []
        for scalar in text.unicodeScalars {
            if let decomposition = nonStarterDecomposition(scalar) {
                scalars.append(contentsOf: decomposition)
            } else {
                scalars.append(scalar)
            }
        }
        var start = 0
        while start < scalars.count {
            var end = start
            while end < scalars.count, combiningClass(scalars[end]) != 0 {
                end += 1
            }
            if end - start > longRun {
                sortByCombiningClass(&scalars[start..<end])
            }
            start = end + 1
        }
        var sorted = String.UnicodeScalarView()
        sorted.append(contentsOf: scalars)
        return String(sorted)
    }

    /// The decomposition of `scalar` if it is one of the ``nonStarterDecompositions``; two comparisons
    /// for any other scalar.
    private static func nonStarterDecomposition(_ scalar: Unicode.Scalar) -> [Unicode.Scalar]? {
        (0x0F73...0x0F81).contains(scalar.value) ? nonStarterDecompositions[scalar] : nil
    }

    /// A stable counting sort of `run` by combining class.
    private static func sortByCombiningClass(_ run: inout ArraySlice<Unicode.Scalar>) {
        var next = [Int](repeating: 0, count: 257)
        for scalar in run {
            next[combiningClass(scalar) + 1] += 1
        }
        for ccc in 1...256 {
            next[ccc] += next[ccc - 1]
        }
        for scalar in Array(run) {
            let ccc = combiningClass(scalar)
            run[run.startIndex + next[ccc]] = scalar
            next[ccc] += 1
        }
    }

    /// The canonical combining class, the one the standard library's normalizer sorts by.
    private static func combiningClass(_ scalar: Unicode.Scalar) -> Int {
        scalar.value < 0x300 ? 0 : Int(scalar.properties.canonicalCombiningClass.rawValue)
    }
}
