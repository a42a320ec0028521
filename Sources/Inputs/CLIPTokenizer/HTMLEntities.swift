/// Python's `html.unescape`, exactly: the HTML5 named-entity table (with the legacy names that need no
/// semicolon, and the longest-prefix rule), and numeric references with the HTML5 replacements.
struct HTMLUnescaper: Sendable {
    /// Entity names as Python spells them, e.g. "amp;" and "amp"; values are the characters they stand for.
    let entities: [String: String]
    let longestName: Int

    init() throws(TokenizerError) {
        var table: [String: String] = [:]
        for (i, line) in try resourceLines("html5_entities").enumerated() {
            let f = line.split(separator: " ")
            guard f.count >= 2 else { throw .malformedData(file: "html5_entities.txt", line: i + 1, message: "expected 'NAME CODEPOINTS'") }
            var value = String.UnicodeScalarView()
            value.append(contentsOf: try scalars(f[1...], file: "html5_entities.txt", line: i + 1))
            table[String(f[0])] = String(value)
        }
        entities = table
        longestName = table.keys.map { $0.unicodeScalars.count }.max() ?? 0
    }

    /// HTML5's replacements for numeric references to C1 controls, NUL and CR (Windows-1252 meanings).
    static let invalidCharrefs: [UInt32: UInt32] = [
        0x00: 0xFFFD, 0x0D: 0x0D, 0x80: 0x20AC, 0x81: 0x81, 0x82: 0x201A, 0x83: 0x192, 0x84: 0x201E, 0x85: 0x2026,
        0x86: 0x2020, 0x87: 0x2021, 0x88: 0x2C6, 0x89: 0x2030, 0x8A: 0x160, 0x8B: 0x2039, 0x8C: 0x152, 0x8D: 0x8D,
        0x8E: 0x17D, 0x8F: 0x8F, 0x90: 0x90, 0x91: 0x2018, 0x92: 0x2019, 0x93: 0x201C, 0x94: 0x201D, 0x95: 0x2022,
        0x96: 0x2013, 0x97: 0x2014, 0x98: 0x2DC, 0x99: 0x2122, 0x9A: 0x161, 0x9B: 0x203A, 0x9C: 0x153, 0x9D: 0x9D,
        0x9E: 0x17E, 0x9F: 0x178,
    ]

    /// Code points a numeric reference may not produce; Python drops them.
    static func isInvalidCodepoint(_ n: UInt32) -> Bool {
        (0x1...0x8).contains(n) || n == 0xB || (0xE...0x1F).contains(n) || (0x7F...0x9F).contains(n)
            || (0xFDD0...0xFDEF).contains(n) || (n & 0xFFFE) == 0xFFFE
    }

    /// The text a numeric reference stands for. `digits` are the reference's digits; `hex` selects base 16.
    static func numericReference(_ digits: ArraySlice<Unicode.Scalar>, hex: Bool) -> String {
        var n: UInt32 = 0
        var overflow = false
        for d in digits {
            let v = hex ? UInt32(hexValue(d)) : d.value - 48
            if !overflow {
                let (m, o1) = n.multipliedReportingOverflow(by: hex ? 16 : 10)
                let (s, o2) = m.addingReportingOverflow(v)
                if o1 || o2 || s > 0x10FFFF { overflow = true } else { n = s }
            }
        }
        if overflow { return "\u{FFFD}" }
        if let r = invalidCharrefs[n] { return String(Unicode.Scalar(r)!) }
        if (0xD800...0xDFFF).contains(n) { return "\u{FFFD}" }
        if isInvalidCodepoint(n) { return "" }
        return String(Unicode.Scalar(n)!)
    }

    static func hexValue(_ s: Unicode.Scalar) -> Int {
        switch s.value {
        case 48...57: return Int(s.value) - 48
        case 65...70: return Int(s.value) - 55
        case 97...102: return Int(s.value) - 87
        default: return -1
        }
    }

    static func isDigit(_ s: Unicode.Scalar) -> Bool { s.value >= 48 && s.value <= 57 }

    /// `html.unescape(text)`.
    func unescape(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "&")) else { return text }
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            guard s[i] == "&", i + 1 < s.count else { out.append(s[i]); i += 1; continue }
            var j = i + 1
            if s[j] == "#" {
                // '&#' digits [;]  or  '&#x' hexdigits [;]
                j += 1
                let isHex = j < s.count && (s[j] == "x" || s[j] == "X")
                if isHex { j += 1 }
                let start = j
                while j < s.count && (isHex ? Self.hexValue(s[j]) >= 0 : Self.isDigit(s[j])) { j += 1 }
                guard j > start else { out.append(s[i]); i += 1; continue }
                let end = j
                if j < s.count && s[j] == ";" { j += 1 }
                out.append(contentsOf: Self.numericReference(s[start..<end], hex: isHex).unicodeScalars)
                i = j
                continue
            }
            // A name: 1 to 32 characters other than tab, LF, FF, space, '<', '&', '#', ';', then an optional ';'.
            while j < s.count && j - (i + 1) < 32 && !"\t\n\u{0C} <&#;".unicodeScalars.contains(s[j]) { j += 1 }
            guard j > i + 1 else { out.append(s[i]); i += 1; continue }
            if j < s.count && s[j] == ";" { j += 1 }
            let name = Array(s[(i + 1)..<j])
            out.append(contentsOf: replaceNamed(name).unicodeScalars)
            i = j
        }
        return String(out)
    }

    private func replaceNamed(_ name: [Unicode.Scalar]) -> String {
        func str(_ a: ArraySlice<Unicode.Scalar>) -> String {
            var v = String.UnicodeScalarView()
            v.append(contentsOf: a)
            return String(v)
        }
        if let v = entities[str(name[...])] { return v }
        // The longest prefix (at least 2 characters) that is an entity, followed by the rest as text.
        var x = name.count - 1
        while x > 1 {
            if let v = entities[str(name[..<x])] { return v + str(name[x...]) }
            x -= 1
        }
        return "&" + str(name[...])
    }
}
