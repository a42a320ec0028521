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
            case "charmap":
                let cps = try f[2...].map { (x) throws(TokenizerError) -> UInt32 in try parseHex(x, file: file, line: n) }
                guard cps.count == 129 else { throw .malformedData(file: file, line: n, message: "charmap needs 129 entries") }
                var enc: [UInt32: UInt8] = [:]
                var allowed = ScalarSet(ranges: [(0, 0x19), (0x1B, 0x7F)])
                for v in 0..<0x80 where v != 0x1A { enc[UInt32(v)] = UInt8(v) }
                for (k, cp) in cps.enumerated() {
                    enc[cp] = k == 128 ? 0x1A : UInt8(0x80 + k)
                }
                allowed = allowed.union(ScalarSet(ranges: cps.map { ($0, $0) }))
                charmaps.append((String(f[1]), cps, enc, allowed))
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
        for name in ["c1", "bad", "common", "law", "currency", "start_punctuation", "end_punctuation", "numeric",
                     "kaomoji", "upper_accented", "lower_accented", "upper_common", "lower_common", "box"]
        where categories[name] == nil {
            throw .malformedData(file: file, line: 0, message: "missing category '\(name)'")
        }
        for name in ["utf8_first_of_2", "utf8_first_of_3", "utf8_first_of_4", "utf8_continuation",
                     "utf8_continuation_strict"] where clues[name] == nil {
            throw .malformedData(file: file, line: 0, message: "missing clue class '\(name)'")
        }
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

    // MARK: mojibake

    func fixEncoding(_ text: Scalars) -> Scalars {
        var text = text
        while true {
            let fixed = fixEncodingStep(text)
            if fixed == text { return text }
            text = fixed
        }
    }

    private func fixEncodingStep(_ text: Scalars) -> Scalars {
        if text.isEmpty || text.allSatisfy({ $0.value < 0x80 }) || !isBad(text) { return text }
        var possible: [String] = []
        for map in charmaps where text.allSatisfy({ map.allowed.contains($0.value) }) {
            possible.append(map.name)
            var bytes = text.map { map.encode[$0.value]! }
            if map.name != "macroman", searchAlteredUTF8(bytes) != nil {
                bytes = restoreByteA0(bytes)
            }
            if map.name.hasPrefix("sloppy") {
                bytes = replaceLossySequences(bytes)
            }
            let variants = bytes.contains(0xED) || bytes.contains(0xC0)
            if let decoded = variants ? decodeUTF8Variants(bytes) : decodeUTF8(bytes) {
                return decoded
            }
        }
        if let fixed = decodeInconsistentUTF8(text), fixed != text { return fixed }
        if possible.contains("latin-1") {
            // ftfy checks for "windows-1252" in a list that only ever holds "sloppy-windows-1252", so this
            // strict re-decoding is always attempted.
            var out = Scalars()
            var ok = true
            for s in text {
                if s.value >= 0x80 && s.value < 0x100 {
                    guard let v = strict1252[Int(s.value) - 0x80] else { ok = false; break }
                    out.append(Unicode.Scalar(v)!)
                } else {
                    out.append(s)
                }
            }
            if ok && out != text { return out }
        }
        if text.contains(where: { (0x80...0x9F).contains($0.value) }) { return fixC1Controls(text) }
        return text
    }

    /// C1 controls read as Windows-1252, as browsers do.
    func fixC1Controls(_ text: Scalars) -> Scalars {
        guard text.contains(where: { (0x80...0x9F).contains($0.value) }) else { return text }
        let sloppy1252 = charmaps[1].decode
        return text.map { (0x80...0x9F).contains($0.value) ? Unicode.Scalar(sloppy1252[Int($0.value) - 0x80])! : $0 }
    }

    /// Python's strict UTF-8 decoder.
    private func decodeUTF8(_ bytes: [UInt8]) -> Scalars? {
        guard let s = String(validating: bytes, as: UTF8.self) else { return nil }
        return Array(s.unicodeScalars)
    }

    /// ftfy's "utf-8-variants": UTF-8 plus CESU-8 surrogate pairs and Java's C0 80 for NUL.
    private func decodeUTF8Variants(_ b: [UInt8]) -> Scalars? {
        var out = Scalars()
        var i = 0
        var run = [UInt8]()
        func flush() -> Bool {
            guard !run.isEmpty else { return true }
            guard let s = String(validating: run, as: UTF8.self) else { return false }
            out.append(contentsOf: s.unicodeScalars)
            run.removeAll(keepingCapacity: true)
            return true
        }
        func inRange(_ k: Int, _ lo: UInt8, _ hi: UInt8) -> Bool { k < b.count && b[k] >= lo && b[k] <= hi }
        while i < b.count {
            if b[i] == 0xC0 && i + 1 < b.count && b[i + 1] == 0x80 {
                guard flush() else { return nil }
                out.append("\u{0}")
                i += 2
            } else if b[i] == 0xED && inRange(i + 1, 0xA0, 0xBF) {
                guard flush() else { return nil }
                guard inRange(i + 1, 0xA0, 0xAF), inRange(i + 2, 0x80, 0xBF), i + 3 < b.count, b[i + 3] == 0xED,
                      inRange(i + 4, 0xB0, 0xBF), inRange(i + 5, 0x80, 0xBF) else { return nil }
                let cp = (UInt32(b[i + 1] & 0x0F) << 16) + (UInt32(b[i + 2] & 0x3F) << 10)
                    + (UInt32(b[i + 4] & 0x0F) << 6) + UInt32(b[i + 5] & 0x3F) + 0x10000
                out.append(Unicode.Scalar(cp)!)
                i += 6
            } else {
                run.append(b[i])
                i += 1
            }
        }
        return flush() ? out : nil
    }

    /// Position of the first byte sequence that would be UTF-8 if a 0x20 were 0xA0 (ftfy's ALTERED_UTF8_RE).
    private func alteredUTF8Match(_ b: [UInt8], at i: Int) -> Int? {
        func r(_ k: Int, _ ok: (UInt8) -> Bool) -> Bool { k < b.count && ok(b[k]) }
        let cont: (UInt8) -> Bool = { ($0 >= 0x80 && $0 <= 0x84) || ($0 >= 0x86 && $0 <= 0x9F) || ($0 >= 0xA1 && $0 <= 0xBF) }
        let any: (UInt8) -> Bool = { $0 >= 0x80 && $0 <= 0xBF }
        let sp: (UInt8) -> Bool = { $0 == 0x20 }
        let x = b[i]
        if [0xC2, 0xC3, 0xC5, 0xCE, 0xD0, 0xD9].contains(x) && r(i + 1, sp) { return 2 }
        if (x == 0xE2 || x == 0xE3) && r(i + 1, sp) && r(i + 2, cont) { return 3 }
        if (0xE0...0xE3).contains(x) && r(i + 1, cont) && r(i + 2, sp) { return 3 }
        if x == 0xF0 {
            if r(i + 1, sp) && r(i + 2, any) && r(i + 3, any) { return 4 }
            if r(i + 1, any) && r(i + 2, sp) && r(i + 3, any) { return 4 }
            if r(i + 1, any) && r(i + 2, any) && r(i + 3, sp) { return 4 }
        }
        return nil
    }

    private func searchAlteredUTF8(_ b: [UInt8]) -> Int? {
        for i in b.indices where alteredUTF8Match(b, at: i) != nil { return i }
        return nil
    }

    private func restoreByteA0(_ input: [UInt8]) -> [UInt8] {
        // "à" whose A0 became a space, unless a Portuguese/Italian word or a second space follows.
        var b = [UInt8]()
        var i = 0
        while i < input.count {
            if input[i] == 0xC3, i + 1 < input.count, input[i + 1] == 0x20 {
                let rest = input[(i + 2)...]
                let exceptions: [[UInt8]] = [[0x20], Array("quele".utf8), Array("quela".utf8), Array("quilo".utf8), [0x73, 0x20]]
                if !exceptions.contains(where: { rest.starts(with: $0) }) {
                    b += [0xC3, 0xA0, 0x20]
                    i += 2
                    continue
                }
            }
            b.append(input[i])
            i += 1
        }
        var out = [UInt8]()
        i = 0
        while i < b.count {
            if let n = alteredUTF8Match(b, at: i) {
                out += b[i..<(i + n)].map { $0 == 0x20 ? 0xA0 : $0 }
                i += n
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    /// UTF-8 sequences whose bytes were lost to '?' or the sloppy codecs' 0x1A become U+FFFD.
    private func replaceLossySequences(_ b: [UInt8]) -> [UInt8] {
        guard b.contains(0x1A) || b.contains(0x3F) else { return b }
        func r(_ k: Int, _ ok: (UInt8) -> Bool) -> Bool { k < b.count && ok(b[k]) }
        let lost: (UInt8) -> Bool = { $0 == 0x1A || $0 == 0x3F }
        let cont: (UInt8) -> Bool = { $0 == 0x1A || ($0 >= 0x80 && $0 <= 0xBF) }
        let lostOrCont: (UInt8) -> Bool = { $0 == 0x1A || $0 == 0x3F || ($0 >= 0x80 && $0 <= 0xBF) }
        let sub: (UInt8) -> Bool = { $0 == 0x1A }
        func match(_ i: Int) -> Int? {
            let x = b[i]
            if (0xC2...0xDF).contains(x) && r(i + 1, sub) { return 2 }
            if (0xC2...0xC3).contains(x) && r(i + 1, { $0 == 0x3F }) { return 2 }
            if x == 0xED {
                if r(i + 1, { (0xA0...0xAF).contains($0) }) && r(i + 2, lost) && r(i + 3, { $0 == 0xED })
                    && r(i + 4, { (0xB0...0xBF).contains($0) }) && r(i + 5, lostOrCont) { return 6 }
                if r(i + 1, { (0xA0...0xAF).contains($0) }) && r(i + 2, lostOrCont) && r(i + 3, { $0 == 0xED })
                    && r(i + 4, { (0xB0...0xBF).contains($0) }) && r(i + 5, lost) { return 6 }
            }
            if (0xE0...0xEF).contains(x) {
                if r(i + 1, lost) && r(i + 2, cont) { return 3 }
                if r(i + 1, cont) && r(i + 2, lost) { return 3 }
            }
            if (0xF0...0xF4).contains(x) {
                if r(i + 1, lost) && r(i + 2, cont) && r(i + 3, cont) { return 4 }
                if r(i + 1, cont) && r(i + 2, lost) && r(i + 3, cont) { return 4 }
                if r(i + 1, cont) && r(i + 2, cont) && r(i + 3, lost) { return 4 }
            }
            if x == 0x1A { return 1 }
            return nil
        }
        var out = [UInt8]()
        var i = 0
        while i < b.count {
            if let n = match(i) {
                out += [0xEF, 0xBF, 0xBD]
                i += n
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    /// Length of ftfy's UTF8_DETECTOR_RE match starting at `i`, or nil.
    private func utf8DetectorMatch(_ t: Scalars, at i: Int) -> Int? {
        if i > 0, clues["utf8_continuation_strict"]!.contains(t[i - 1].value) { return nil }
        let f2 = clues["utf8_first_of_2"]!, f3 = clues["utf8_first_of_3"]!, f4 = clues["utf8_first_of_4"]!
        let c = clues["utf8_continuation"]!
        func conts(_ k: Int, _ n: Int) -> Bool {
            guard k + n <= t.count else { return false }
            return (k..<(k + n)).allSatisfy { c.contains(t[$0].value) }
        }
        var q = i
        while q < t.count {
            let v = t[q].value
            if f2.contains(v) && conts(q + 1, 1) { q += 2 } else if f3.contains(v) && conts(q + 1, 2) { q += 3 } else if f4.contains(v) && conts(q + 1, 3) { q += 4 } else { break }
        }
        return q > i ? q - i : nil
    }

    /// ftfy's `decode_inconsistent_utf8`; nil when the detector finds nothing.
    private func decodeInconsistentUTF8(_ text: Scalars) -> Scalars? {
        var out = Scalars()
        var found = false
        var i = 0
        while i < text.count {
            if let n = utf8DetectorMatch(text, at: i) {
                found = true
                let sub = Array(text[i..<(i + n)])
                out.append(contentsOf: sub.count < text.count && isBad(sub) ? fixEncoding(sub) : sub)
                i += n
            } else {
                out.append(text[i])
                i += 1
            }
        }
        return found ? out : nil
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
