import Foundation
import GemcacheTestSupport
import Testing

@testable import GemcacheKey

/// Pieces of text as people write it, from which random strings are made.
private enum Pieces {
    static let words = ["the", "Sky", "42", "x_y", " ", "  ", "\n", "\r\n", "\t", ",", ".", "{\"a\": 1}", "def f():\n    return 1"]
    static let latin = [
        "caf\u{E9}", "cafe\u{301}", "na\u{EF}ve", "Stra\u{DF}e", "\u{C5}ngstr\u{F6}m", "A\u{30A}", "\u{212B}", "\u{2126}",
        "\u{1D6}", "u\u{308}\u{304}", "\u{1E69}", "s\u{323}\u{307}", "s\u{307}\u{323}", "q\u{307}\u{323}", "\u{FB01}",
    ]
    static let vietnamese = ["Ti\u{1EBF}ng Vi\u{1EC7}t", "Tie\u{302}\u{301}ng Vie\u{323}\u{302}t", "o\u{31B}\u{323}", "\u{1EE3}"]
    static let greek = [
        "\u{3AC}\u{3BB}\u{3C6}\u{3B1}", "\u{3B1}\u{301}", "\u{1FB7}", "\u{3B1}\u{345}\u{342}", "\u{3B1}\u{342}\u{345}", "\u{387}", "\u{37E}",
    ]
    static let cyrillic = ["\u{41F}\u{440}\u{438}\u{432}\u{435}\u{442}", "\u{439}", "\u{438}\u{306}", "\u{451}", "\u{435}\u{308}"]
    static let hebrew = ["\u{5E9}\u{5C1}\u{5BC}", "\u{5E9}\u{5BC}\u{5C1}", "\u{5D1}\u{5B0}\u{5BC}", "\u{5E9}\u{5C1}"]
    static let arabic = ["\u{645}\u{64E}\u{651}", "\u{645}\u{651}\u{64E}", "\u{627}\u{653}", "\u{622}", "\u{644}\u{627}"]
    static let indic = [
        "\u{915}\u{93C}", "\u{958}", "\u{928}\u{93C}", "\u{929}", "\u{9C7}\u{9BE}", "\u{9CB}", "\u{B47}\u{B3E}", "\u{BC6}\u{BBE}",
        "\u{D46}\u{D3E}", "\u{DD9}\u{DCF}", "\u{1025}\u{102E}", "\u{F40}\u{FB2}\u{F71}\u{F72}",
    ]
    static let hangulSyllables = ["\u{D55C}\u{AD6D}\u{C5B4}", "\u{AC00}", "\u{AC01}", "\u{D7A3}"]
    static let cjk = ["\u{6F22}\u{5B57}", "\u{65E5}\u{672C}\u{8A9E}", "\u{F900}", "\u{2F800}", "\u{3042}\u{3099}", "\u{304C}", "\u{30AB}\u{3099}"]
    static let emoji = [
        "\u{1F600}", "\u{1F44D}\u{1F3FD}", "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", "\u{1F1EB}\u{1F1F7}", "1\u{FE0F}\u{20E3}",
        "\u{2764}\u{FE0F}", "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",
    ]
    /// Combining marks of many classes (1, 7, 9, 10–36, 202, 214–240), for short runs after a base.
    static let marks: [Unicode.Scalar] = [
        "\u{300}", "\u{301}", "\u{302}", "\u{303}", "\u{304}", "\u{306}", "\u{307}", "\u{308}", "\u{30A}", "\u{30B}", "\u{30C}",
        "\u{316}", "\u{31B}", "\u{323}", "\u{327}", "\u{328}", "\u{331}", "\u{334}", "\u{338}", "\u{340}", "\u{341}", "\u{343}",
        "\u{344}", "\u{345}", "\u{35C}", "\u{360}", "\u{5B0}", "\u{5BC}", "\u{5C1}", "\u{64B}", "\u{64E}", "\u{651}", "\u{670}",
        "\u{93C}", "\u{94D}", "\u{F71}", "\u{F72}", "\u{F74}", "\u{F80}", "\u{1DCE}", "\u{20D0}", "\u{302A}", "\u{3099}",
    ]
    static let bases: [Unicode.Scalar] = [
        "a", "e", "o", "u", "A", "\u{3B1}", "\u{438}", "\u{5D1}", "\u{645}", "\u{915}", "\u{1100}", "\u{E9}", "\u{1D6}",
    ]
    /// Conjoining jamo: L V and L V T, T within U+11A8...U+11C2.
    static func jamo(_ generator: inout SplitMix64) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.append(Unicode.Scalar(UInt32.random(in: 0x1100...0x1112, using: &generator))!)
        scalars.append(Unicode.Scalar(UInt32.random(in: 0x1161...0x1175, using: &generator))!)
        if Bool.random(using: &generator) {
            scalars.append(Unicode.Scalar(UInt32.random(in: 0x11A8...0x11C2, using: &generator))!)
        }
        return String(scalars)
    }

    /// A base followed by 1 to `maxMarks` marks.
    static func markRun(_ generator: inout SplitMix64, maxMarks: Int) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.append(bases.randomElement(using: &generator)!)
        for _ in 0..<Int.random(in: 1...maxMarks, using: &generator) {
            scalars.append(marks.randomElement(using: &generator)!)
        }
        return String(scalars)
    }

    /// A string of 1 to 40 pieces.
    static func text(_ generator: inout SplitMix64, maxMarks: Int) -> String {
        let lists = [words, latin, vietnamese, greek, cyrillic, hebrew, arabic, indic, hangulSyllables, cjk, emoji]
        var text = ""
        for _ in 0..<Int.random(in: 1...40, using: &generator) {
            switch Int.random(in: 0..<(lists.count + 2), using: &generator) {
            case lists.count: text += jamo(&generator)
            case lists.count + 1: text += markRun(&generator, maxMarks: maxMarks)
            case let list: text += lists[list].randomElement(using: &generator)!
            }
        }
        return text
    }
}

private func scalars(_ text: String) -> String {
    text.unicodeScalars.map { String($0.value, radix: 16, uppercase: true) }.joined(separator: " ")
}

/// `TextNormalization.nfc`: the NFC of the standard, the same as before for text as people write it,
/// and linear in time whatever the text.
@Suite struct TextNormalizationTests {
    /// Keys of ordinary requests must not change: on random text of many scripts, Hangul, emoji and
    /// combining marks in runs of up to 30, the result is byte for byte Foundation's NFC, which keyed
    /// requests before. (Byte comparison: `==` on String is canonical equivalence.)
    @Test func matchesFoundationOnOrdinaryText() {
        var generator = SplitMix64(seed: 15)
        for _ in 0..<3000 {
            let text = Pieces.text(&generator, maxMarks: 30)
            let expected = text.precomposedStringWithCanonicalMapping
            #expect(Array(TextNormalization.nfc(text).utf8) == Array(expected.utf8), "\(scalars(text))")
        }
    }

    /// Long runs are sorted before the standard library's normalizer sees them: the result must be
    /// the one it gives unaided (slowly: these runs are short enough for its quadratic sort).
    @Test func longRunsGiveTheNormalizersOwnResult() {
        var generator = SplitMix64(seed: 10)
        for _ in 0..<300 {
            let text = Pieces.text(&generator, maxMarks: 200)
            #expect(Array(TextNormalization.nfc(text).utf8) == Array(text._nfcCodeUnits), "\(scalars(text))")
        }
    }

    /// A long run keeps every mark: "q" composes with none of these, so the result has one scalar
    /// for each scalar of the marks' decompositions (U+0344 is two). Foundation loses marks in runs
    /// of marks that decompose (1,000 of these came back as 632 scalars instead of 1,201), so texts
    /// that differed only there shared a key before.
    @Test func longRunsLoseNoMark() {
        let marks: [(mark: Unicode.Scalar, decomposedLength: Int)] = [
            ("\u{300}", 1), ("\u{341}", 1), ("\u{316}", 1), ("\u{344}", 2), ("\u{64E}", 1), ("\u{345}", 1), ("\u{5B0}", 1), ("\u{F72}", 1),
        ]
        var generator = SplitMix64(seed: 64)
        for _ in 0..<100 {
            var text = String.UnicodeScalarView(["q"])
            var expected = 1
            for _ in 0..<Int.random(in: 31...1000, using: &generator) {
                let pick = marks.randomElement(using: &generator)!
                text.append(pick.mark)
                expected += pick.decomposedLength
            }
            #expect(TextNormalization.nfc(String(text)).unicodeScalars.count == expected, "\(scalars(String(text)))")
        }
    }

    /// The NFC of the standard is its own NFC; Foundation's and the unaided standard library's are not
    /// when U+0F73, U+0F75 or U+0F81 follow a mark (they reorder on a second pass).
    @Test(arguments: [
        ("\u{F73}\u{F73}", "\u{F71}\u{F71}\u{F72}\u{F72}"),
        ("\u{F40}\u{F74}\u{F73}", "\u{F40}\u{F71}\u{F72}\u{F74}"),
        ("\u{F75}\u{F81}", "\u{F71}\u{F71}\u{F80}\u{F74}"),
        ("\u{F40}\u{F73}", "\u{F40}\u{F71}\u{F72}"),
    ])
    func nonStarterDecompositionsAreReordered(text: String, expected: String) {
        let once = TextNormalization.nfc(text)
        #expect(scalars(once) == scalars(expected))
        #expect(Array(TextNormalization.nfc(once).utf8) == Array(once.utf8))
    }

    /// Random text with long runs and the three scalars above is a fixed point after one pass (the
    /// fuzz target checks the same of whole bodies).
    @Test func resultIsItsOwnNFC() {
        var generator = SplitMix64(seed: 73)
        let tibetan = ["\u{F73}", "\u{F75}", "\u{F81}", "\u{F40}\u{F74}\u{F73}"]
        for _ in 0..<300 {
            var text = Pieces.text(&generator, maxMarks: 80)
            text += tibetan.randomElement(using: &generator)! + Pieces.text(&generator, maxMarks: 80)
            let once = TextNormalization.nfc(text)
            #expect(Array(TextNormalization.nfc(once).utf8) == Array(once.utf8), "\(scalars(text))")
        }
    }

    /// Where Foundation on Linux departs from the standard, the result is the standard's (UAX #15
    /// and UnicodeData.txt): these texts get other keys than before, now correct ones.
    @Test(arguments: [
        ("\u{AC00}\u{11A8}", "\u{AC01}"),  // LV syllable + T jamo compose (Foundation: kept apart)
        ("\u{1100}\u{1161}\u{11C3}", "\u{AC00}\u{11C3}"),  // U+11C3 is no T jamo of the composition (Foundation: U+AC1C)
        ("\u{10041}\u{301}", "\u{10041}\u{301}"),  // no composition (Foundation: "Á", the scalar cut to 16 bits)
        ("\u{CCA}\u{CD5}", "\u{CCB}"),  // U+0CCB decomposes to U+0CCA U+0CD5 (Foundation: kept apart)
    ])
    func standardWhereFoundationErrs(text: String, expected: String) {
        #expect(scalars(TextNormalization.nfc(text)) == scalars(expected))
    }

    /// What the sort before normalization relies on, checked for every scalar with the standard
    /// library's own data: a non-starter decomposes into non-starters of its own class only, and the
    /// only scalars of class 0 whose decomposition starts with a non-starter are the three the
    /// normalizer is helped with. (The NFC of a lone non-starter, or of a scalar whose decomposition
    /// starts with one, is its decomposition: nothing before it can compose.)
    @Test func decompositionsKeepTheAssumptionsOfTheSort() {
        var startersDecomposingToNonStarters: [Unicode.Scalar] = []
        for value in UInt32(0x300)...0x10FFFF {
            guard let scalar = Unicode.Scalar(value), scalar.properties.generalCategory != .unassigned else { continue }
            let ccc = scalar.properties.canonicalCombiningClass
            let normalized = String(decoding: String(scalar)._nfcCodeUnits, as: UTF8.self).unicodeScalars
            if ccc != .notReordered {
                #expect(normalized.allSatisfy { $0.properties.canonicalCombiningClass == ccc }, "U+\(String(value, radix: 16))")
            } else if normalized.first!.properties.canonicalCombiningClass != .notReordered {
                startersDecomposingToNonStarters.append(scalar)
                #expect(Array(normalized) == TextNormalization.nonStarterDecompositions[scalar], "U+\(String(value, radix: 16))")
            }
        }
        #expect(Set(startersDecomposingToNonStarters) == Set(TextNormalization.nonStarterDecompositions.keys))
    }

    /// 1.2 MB texts that took Foundation 28 s (alternating marks), about a minute (decomposed "é") or,
    /// extrapolated, over an hour (a precomposed letter before the marks) take about a second here, in a
    /// debug build on a busy machine. The 10 s bound tells linear from quadratic; it is no speed target.
    @Test(arguments: [
        ("alternating marks", "a", "\u{301}\u{316}", 300_000, 600_000),  // á, then the rest sorted
        ("precomposed letter, then marks", "\u{E1}", "\u{316}", 600_000, 600_001),
        ("marks without a base", "", "\u{316}\u{301}", 300_000, 600_000),
        ("U+0F73 and marks", "", "\u{F73}\u{F74}", 200_000, 600_000),  // U+0F73 is U+0F71 U+0F72
        ("decomposed letters", "", "e\u{301}", 400_000, 400_000),  // é
        ("conjoining jamo", "", "\u{1100}\u{1161}\u{11A8}", 130_000, 130_000),  // 각
    ])
    func pathologicalTextTakesLinearTime(label: String, prefix: String, repeated: String, count: Int, scalarsAfter: Int) {
        let text = prefix + String(repeating: repeated, count: count)
        let start = ContinuousClock.now
        let result = TextNormalization.nfc(text)
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(10), "\(label): \(elapsed) for \(text.utf8.count) bytes")
        #expect(result.unicodeScalars.count == scalarsAfter)
    }
}
