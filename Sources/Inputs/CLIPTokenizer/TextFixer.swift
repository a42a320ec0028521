import Foundation

/// A port of `ftfy.fix_text` with its default settings, the first step of the reference tokenizer's
/// cleaning: HTML entities (outside markup), mojibake repair (text decoded in the wrong single-byte encoding,
/// with ftfy's badness heuristic deciding when), C1 controls, Latin ligatures, full/half-width forms, curly
/// quotes, line breaks, terminal escapes, control characters and NFC. Character facts come from ftfy's own
/// tables (ftfy_data.txt). Known differences are listed in docs/tokenizer.md.
struct TextFixer: Sendable {
    typealias Scalars = [Unicode.Scalar]

    /// Bytes 0x80...0xFF and 0x1A of each single-byte encoding ftfy tries, in its order.
    let charmaps: [(name: String, decode: [UInt32], encode: [UInt32: UInt8], allowed: ScalarSet)]
    let strict1252: [UInt32?]
    let categories: [String: ScalarSet]
    let clues: [String: ScalarSet]
    let ligatures: [UInt32: Scalars]
    let widths: [UInt32: Scalars]
    let entities: [String: String]
    let word: ScalarSet
    let respace: ScalarSet
    let html: HTMLUnescaper
    let rules: [BadnessRule]

    init(html: HTMLUnescaper) throws(TokenizerError) {
        self.html = html
        let file = "ftfy_data.txt"
        var charmaps: [(String, [UInt32], [UInt32: UInt8], ScalarSet)] = []
        var strict: [UInt32?] = []
        var categories: [String: ScalarSet] = [:], clues: [String: ScalarSet] = [:]
        var ligatures: [UInt32: Scalars] = [:], widths: [UInt32: Scalars] = [:]
        var entities: [String: String] = [:]
        var wordRanges: [(UInt32, UInt32)] = [], spaceRanges: [(UInt32, UInt32)] = []
        func rangeSet(_ fields: ArraySlice<Substring>, _ line: Int) throws(TokenizerError) -> ScalarSet {
            var rs: [(UInt32, UInt32)] = []
            for f in fields {
                let ab = f.split(separator: "-")
                guard ab.count == 2 else { throw .malformedData(file: file, line: line, message: "bad range '\(f)'") }
                rs.append((try parseHex(ab[0], file: file, line: line), try parseHex(ab[1], file: file, line: line)))
            }
            return ScalarSet(ranges: rs)
        }
        for (i, line) in try resourceLines("ftfy_data").enumerated() {
            let f = line.split(separator: " ")
            let n = i + 1
            guard f.count >= 2 else { throw .malformedData(file: file, line: n, message: "short line") }
            switch f[0] {
            case "charmap": charmaps.append(try Self.charmap(f, file: file, line: n))
            case "strict":
                strict = f[2...].map { $0 == "-" ? nil : UInt32($0, radix: 16) }
                guard strict.count == 128 else { throw .malformedData(file: file, line: n, message: "table needs 128 entries") }
            case "category": categories[String(f[1])] = try rangeSet(f[2...], n)
            case "clue": clues[String(f[1])] = try rangeSet(f[2...], n)
            case "ligature": ligatures[try parseHex(f[1], file: file, line: n)] = try scalars(f[2...], file: file, line: n)
            case "width": widths[try parseHex(f[1], file: file, line: n)] = try scalars(f[2...], file: file, line: n)
            case "entity":
                var v = String.UnicodeScalarView()
                v.append(contentsOf: try scalars(f[2...], file: file, line: n))
                entities[String(f[1])] = String(v)
            case "word": wordRanges.append((try parseHex(f[1], file: file, line: n), try parseHex(f[2], file: file, line: n)))
            case "respace": spaceRanges.append((try parseHex(f[1], file: file, line: n), try parseHex(f[2], file: file, line: n)))
            default: throw .malformedData(file: file, line: n, message: "unknown record '\(f[0])'")
            }
        }
        guard charmaps.count == 10, strict.count == 128 else {
            throw .malformedData(file: file, line: 0, message: "expected 10 charmaps and the strict windows-1252 table")
        }
        try Self.checkRequired(categories: categories, clues: clues, file: file)
        self.charmaps = charmaps.map { (name: $0.0, decode: $0.1, encode: $0.2, allowed: $0.3) }
        self.strict1252 = strict
        self.categories = categories
        self.clues = clues
        self.ligatures = ligatures
        self.widths = widths
        self.entities = entities
        self.word = ScalarSet(ranges: wordRanges)
        self.respace = ScalarSet(ranges: spaceRanges)
        self.rules = BadnessRule.all(categories: categories, word: self.word, space: self.respace)
    }

    /// One `charmap <name> <129 hex code points>` record: what bytes 0x80...0xFF and 0x1A decode to.
    private static func charmap(_ f: [Substring], file: String,
                                line n: Int) throws(TokenizerError) -> (String, [UInt32], [UInt32: UInt8], ScalarSet) {
        let cps = try f[2...].map { (x) throws(TokenizerError) -> UInt32 in try parseHex(x, file: file, line: n) }
        guard cps.count == 129 else { throw .malformedData(file: file, line: n, message: "charmap needs 129 entries") }
        var enc: [UInt32: UInt8] = [:]
        for v in 0..<0x80 where v != 0x1A { enc[UInt32(v)] = UInt8(v) }
        for (k, cp) in cps.enumerated() {
            enc[cp] = k == 128 ? 0x1A : UInt8(0x80 + k)
        }
        let allowed = ScalarSet(ranges: [(0, 0x19), (0x1B, 0x7F)]).union(ScalarSet(ranges: cps.map { ($0, $0) }))
        return (String(f[1]), cps, enc, allowed)
    }

    /// The badness rules and the UTF-8 detector need these classes; a data file without them is refused.
    private static func checkRequired(categories: [String: ScalarSet], clues: [String: ScalarSet],
                                      file: String) throws(TokenizerError) {
        for name in ["c1", "bad", "common", "law", "currency", "start_punctuation", "end_punctuation", "numeric",
                     "kaomoji", "upper_accented", "lower_accented", "upper_common", "lower_common", "box"]
        where categories[name] == nil {
            throw .malformedData(file: file, line: 0, message: "missing category '\(name)'")
        }
        for name in ["utf8_first_of_2", "utf8_first_of_3", "utf8_first_of_4", "utf8_continuation",
                     "utf8_continuation_strict"] where clues[name] == nil {
            throw .malformedData(file: file, line: 0, message: "missing clue class '\(name)'")
        }
    }

    // MARK: fix_text

    /// `ftfy.fix_text(text)` with default settings.
    func fixText(_ text: String) -> String {
        if isTriviallyClean(text) { return text }
        let s = Array(text.unicodeScalars)
        var out = Scalars()
        var unescape = true
        var pos = 0
        // ftfy fixes each line (segment ending in "\n") on its own; once a segment contains '<', HTML
        // unescaping stays off for the rest of the text.
        while pos < s.count {
            var end = pos
            while end < s.count && s[end] != "\n" { end += 1 }
            end = min(end < s.count ? end + 1 : s.count, pos + 1_000_000)
            let segment = Array(s[pos..<end])
            if unescape && segment.contains("<") { unescape = false }
            out.append(contentsOf: fixSegment(segment, unescapeHTML: unescape))
            pos = end
        }
        return string(out)
    }

    /// Text that every step leaves unchanged: printable ASCII, tab, LF, FF and no '&'.
    private func isTriviallyClean(_ text: String) -> Bool {
        for b in text.utf8 {
            if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "&") { continue }
            if b == 0x09 || b == 0x0A || b == 0x0C { continue }
            return false
        }
        return true
    }

    func fixSegment(_ segment: Scalars, unescapeHTML: Bool) -> Scalars {
        var text = segment
        while true {
            let original = text
            if unescapeHTML { text = unescapeEntities(text) }
            text = fixEncoding(text)
            text = fixC1Controls(text)
            text = translate(text, ligatures)
            text = translate(text, widths)
            text = text.map { s in
                if s.value == 0x2BC || (0x2018...0x201B).contains(s.value) { return "'" }
                if (0x201C...0x201F).contains(s.value) { return "\"" }
                return s
            }
            text = fixLineBreaks(text)
            text = removeTerminalEscapes(text)
            text = text.filter { !isRemovedControl($0.value) }
            text = nfc(text)
            if text == original { return text }
        }
    }

    // MARK: simple fixes

    private func translate(_ text: Scalars, _ table: [UInt32: Scalars]) -> Scalars {
        guard text.contains(where: { table[$0.value] != nil }) else { return text }
        var out = Scalars()
        for s in text {
            if let r = table[s.value] { out.append(contentsOf: r) } else { out.append(s) }
        }
        return out
    }

    private func fixLineBreaks(_ text: Scalars) -> Scalars {
        var out = Scalars()
        var i = 0
        while i < text.count {
            let v = text[i].value
            if v == 0x0D {
                out.append("\n")
                i += (i + 1 < text.count && text[i + 1] == "\n") ? 2 : 1
                continue
            }
            out.append(v == 0x2028 || v == 0x2029 || v == 0x85 ? "\n" : text[i])
            i += 1
        }
        return out
    }

    /// Removes `ESC [ (digits|;)* letter` sequences (digits as Python's \d: any decimal digit).
    private func removeTerminalEscapes(_ text: Scalars) -> Scalars {
        guard text.contains("\u{1B}") else { return text }
        var out = Scalars()
        var i = 0
        while i < text.count {
            if text[i] == "\u{1B}", i + 1 < text.count, text[i + 1] == "[" {
                var j = i + 2
                while j < text.count && (text[j] == ";" || text[j].properties.generalCategory == .decimalNumber) { j += 1 }
                if j < text.count, text[j].isASCII, text[j].properties.isAlphabetic {
                    i = j + 1
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    private func isRemovedControl(_ v: UInt32) -> Bool {
        v <= 0x08 || v == 0x0B || (0x0E...0x1F).contains(v) || v == 0x7F || (0x206A...0x206F).contains(v)
            || v == 0xFEFF || (0xFFF9...0xFFFC).contains(v)
    }

    private func nfc(_ text: Scalars) -> Scalars {
        guard text.contains(where: { $0.value >= 0x300 }) else { return text }
        return composeHangul(Array(string(text).precomposedStringWithCanonicalMapping.unicodeScalars))
    }

    /// Unicode's algorithmic Hangul composition (L+V → LV, LV+T → LVT), which Foundation's NFC on Linux
    /// leaves undone for LV+T; every jamo has combining class 0, so composing adjacent pairs is exact.
    private func composeHangul(_ s: Scalars) -> Scalars {
        guard s.contains(where: { (0x1100...0x11FF).contains($0.value) }) else { return s }
        var out = Scalars()
        out.reserveCapacity(s.count)
        for c in s {
            let v = c.value
            if let last = out.last?.value {
                if (0x1100...0x1112).contains(last) && (0x1161...0x1175).contains(v) {
                    out[out.count - 1] = Unicode.Scalar(0xAC00 + ((last - 0x1100) * 21 + (v - 0x1161)) * 28)!
                    continue
                }
                if (0xAC00...0xD7A3).contains(last) && (last - 0xAC00) % 28 == 0 && (0x11A8...0x11C2).contains(v) {
                    out[out.count - 1] = Unicode.Scalar(last + (v - 0x11A7))!
                    continue
                }
            }
            out.append(c)
        }
        return out
    }

    /// ftfy's `unescape_html`: `&#?[0-9A-Za-z]{1,24};` replaced when it is a ';'-terminated HTML5 entity
    /// (or an all-caps variant ftfy accepts) or a numeric reference Python can decode.
    func unescapeEntities(_ text: Scalars) -> Scalars {
        guard text.contains("&") else { return text }
        var out = Scalars()
        var i = 0
        func isAlnum(_ s: Unicode.Scalar) -> Bool {
            let v = s.value
            return (48...57).contains(v) || (65...90).contains(v) || (97...122).contains(v)
        }
        while i < text.count {
            if text[i] == "&" {
                var match: Int?
                for start in (text.count > i + 1 && text[i + 1] == "#") ? [i + 2, i + 1] : [i + 1] {
                    var j = start
                    while j < text.count && j - start < 24 && isAlnum(text[j]) { j += 1 }
                    if j > start && j < text.count && text[j] == ";" { match = j + 1; break }
                }
                if let end = match {
                    let entity = string(Array(text[i..<end]))
                    if let v = entities[entity] {
                        out.append(contentsOf: v.unicodeScalars)
                    } else if text[i + 1] == "#" {
                        let u = html.unescape(entity)
                        out.append(contentsOf: (u.unicodeScalars.contains(";") ? entity : u).unicodeScalars)
                    } else {
                        out.append(contentsOf: text[i..<end])
                    }
                    i = end
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    // MARK: badness

    /// ftfy's `is_bad`: whether any of its mojibake patterns occurs in the text.
    func isBad(_ text: Scalars) -> Bool {
        for i in text.indices {
            for rule in rules where rule.matches(text, at: i) { return true }
        }
        return false
    }

    private func string(_ s: Scalars) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: s)
        return String(v)
    }
}
