// ftfy's mojibake repair (fix_encoding and its helpers): text that was UTF-8 decoded as a legacy single-byte
// charset, detected by the badness rules and re-decoded.
extension TextFixer {

    func fixEncoding(_ text: Scalars) -> Scalars {
        var text = text
        while true {
            let fixed = fixEncodingStep(text)
            if fixed == text { return text }
            text = fixed
        }
    }

    func fixEncodingStep(_ text: Scalars) -> Scalars {
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
    func decodeUTF8(_ bytes: [UInt8]) -> Scalars? {
        guard let s = String(validating: bytes, as: UTF8.self) else { return nil }
        return Array(s.unicodeScalars)
    }

    /// ftfy's "utf-8-variants": UTF-8 plus CESU-8 surrogate pairs and Java's C0 80 for NUL.
    func decodeUTF8Variants(_ b: [UInt8]) -> Scalars? {
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
    func alteredUTF8Match(_ b: [UInt8], at i: Int) -> Int? {
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

    func searchAlteredUTF8(_ b: [UInt8]) -> Int? {
        for i in b.indices where alteredUTF8Match(b, at: i) != nil { return i }
        return nil
    }

    func restoreByteA0(_ input: [UInt8]) -> [UInt8] {
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
    func replaceLossySequences(_ b: [UInt8]) -> [UInt8] {
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
    func utf8DetectorMatch(_ t: Scalars, at i: Int) -> Int? {
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
    func decodeInconsistentUTF8(_ text: Scalars) -> Scalars? {
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
}
