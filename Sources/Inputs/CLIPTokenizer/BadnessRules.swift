/// One pattern of ftfy's mojibake heuristic (`ftfy.badness.BADNESS_RE`): a short sequence of character
/// classes that is far likelier to be mojibake than intended text.
struct BadnessRule: Sendable {
    enum Step: Sendable {
        case any(ScalarSet)
        case none(ScalarSet)       // any character not in the set
        case optional(ScalarSet)   // zero or one character from the set
        case notNewline
        case textStart
    }

    let steps: [Step]

    func matches(_ t: [Unicode.Scalar], at i: Int) -> Bool { match(t, i, 0) }

    private func match(_ t: [Unicode.Scalar], _ i: Int, _ k: Int) -> Bool {
        if k == steps.count { return true }
        switch steps[k] {
        case .textStart:
            return i == 0 && match(t, i, k + 1)
        case .any(let s):
            return i < t.count && s.contains(t[i].value) && match(t, i + 1, k + 1)
        case .none(let s):
            return i < t.count && !s.contains(t[i].value) && match(t, i + 1, k + 1)
        case .notNewline:
            return i < t.count && t[i] != "\n" && match(t, i + 1, k + 1)
        case .optional(let s):
            if i < t.count && s.contains(t[i].value) && match(t, i + 1, k + 1) { return true }
            return match(t, i, k + 1)
        }
    }

    /// The rules in ftfy 6.3's order, over its character categories; `word` and `space` are Python's \w and \s.
    static func all(categories c: [String: ScalarSet], word: ScalarSet, space: ScalarSet) -> [BadnessRule] {
        func u(_ names: String...) -> ScalarSet {
            names.reduce(ScalarSet()) { acc, n in acc.union(c[n] ?? ScalarSet()) }
        }
        func lit(_ s: String) -> ScalarSet { ScalarSet(s) }
        let lowerAZ = ScalarSet(ranges: [(0x61, 0x7A)])
        let letterAZ = ScalarSet(ranges: [(0x41, 0x5A), (0x61, 0x7A)])
        let arabic = u("common", "currency", "bad", "numeric", "start_punctuation").union(lit("ŸŠ®°µ»"))
        let r: [[Step]] = [
            [.any(u("c1"))],
            [.any(u("bad", "lower_accented", "upper_accented", "box", "start_punctuation", "end_punctuation", "currency", "numeric", "law")), .any(u("bad"))],
            [.any(letterAZ), .any(u("lower_common", "upper_common")), .any(u("bad"))],
            [.any(u("bad")), .any(u("lower_accented", "upper_accented", "box", "start_punctuation", "end_punctuation", "currency", "numeric", "law"))],
            [.any(u("lower_accented", "lower_common", "box", "end_punctuation", "currency", "numeric")), .any(u("upper_accented"))],
            [.any(u("box", "end_punctuation", "currency", "numeric")), .any(u("lower_accented"))],
            [.any(u("lower_accented", "box", "end_punctuation")), .any(u("currency"))],
            [.any(space), .any(u("upper_accented")), .any(u("currency"))],
            [.any(u("upper_accented", "box")), .any(u("numeric", "law"))],
            [.any(u("lower_accented", "upper_accented", "box", "currency", "end_punctuation")), .any(u("start_punctuation")), .any(u("numeric"))],
            [.any(u("lower_accented", "upper_accented", "currency", "numeric", "box", "law")), .any(u("end_punctuation")), .any(u("start_punctuation"))],
            [.any(u("currency", "numeric", "box")), .any(u("start_punctuation"))],
            [.any(lowerAZ), .any(u("upper_accented")), .any(u("start_punctuation", "currency"))],
            [.any(u("box")), .any(u("kaomoji"))],
            [.any(u("lower_accented", "upper_accented", "currency", "numeric", "start_punctuation", "end_punctuation", "law")), .any(u("box"))],
            [.any(u("box")), .any(u("end_punctuation"))],
            [.any(u("lower_accented", "upper_accented")), .any(u("start_punctuation", "end_punctuation")), .any(word)],
            [.any(lit("Œœ")), .none(letterAZ)],
            [.any(u("upper_accented")), .any(lit("°"))],
            [.any(lit("ÂÃÎÐ")), .any(lit("€œŠš¢£Ÿž\u{A0}\u{AD}®©°·»–—´").union(u("start_punctuation", "end_punctuation")))],
            [.any(lit("×")), .any(lit("²³"))],
            [.any(lit("ØÙ")), .any(arabic), .any(lit("ØÙ")), .any(arabic)],
            [.any(lit("à")), .any(lit("²µ¹¼½¾"))],
            [.any(lit("√")), .any(lit("±∂†≠®™´≤≥¥µø"))],
            [.any(lit("≈")), .any(lit("°¢"))],
            [.any(lit("‚")), .any(lit("Ä")), .any(lit("ìîïòôúùû†°¢π"))],
            [.any(lit("‚")), .any(lit("âó")), .any(lit("àä°ê"))],
            [.any(lit("в")), .any(lit("Ђ"))],
            [.any(lit("ВГРС")), .any(u("c1", "bad", "start_punctuation", "end_punctuation", "currency").union(lit("°µ"))), .any(lit("ВГРС"))],
            [.any(lit("Г")), .any(lit("ў")), .any(lit("В")), .any(lit("Ђ")), .any(lit("В")), .notNewline, .any(letterAZ.union(lit(" ")))],
            [.any(lit("Ã")), .any(lit("\u{A0}¡"))],
            [.any(lowerAZ), .optional(space), .any(lit("ÃÂ")), .any(lit(" "))],
            [.textStart, .any(lit("ÃÂ")), .any(lit(" "))],
            [.any(lowerAZ.union(lit(".,?!")).union(u("end_punctuation"))), .any(lit("Â")), .any(lit(" ").union(u("start_punctuation", "end_punctuation")))],
            [.any(lit("β")), .any(lit("€")), .any(lit("™\u{A0}Ά\u{AD}®°"))],
            [.any(lit("ΒΓΞΟ")), .any(u("c1", "bad", "start_punctuation", "end_punctuation", "currency").union(lit("°"))), .any(lit("ΒΓΞΟ"))],
            [.any(lit("ā")), .any(lit("€"))],
        ]
        return r.map { BadnessRule(steps: $0) }
    }
}
