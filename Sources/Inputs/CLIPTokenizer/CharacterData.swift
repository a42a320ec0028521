import Foundation

/// A set of Unicode scalars stored as sorted, disjoint ranges, with a bitmap for the Basic Latin block.
struct ScalarSet: Sendable {
    private var starts: [UInt32] = []
    private var ends: [UInt32] = []
    private var ascii: (UInt64, UInt64) = (0, 0)

    init() {}

    init(ranges: [(UInt32, UInt32)]) {
        for r in ranges.sorted(by: { $0.0 < $1.0 }) { add(r.0, r.1) }
    }

    init(_ scalars: String) {
        for s in scalars.unicodeScalars { add(s.value, s.value) }
    }

    mutating func add(_ a: UInt32, _ b: UInt32) {
        if a < 128 {
            for v in a...min(b, 127) {
                if v < 64 { ascii.0 |= 1 << v } else { ascii.1 |= 1 << (v - 64) }
            }
        }
        // Keep ranges sorted; callers add in increasing order or small sets.
        var i = starts.count
        while i > 0 && starts[i - 1] > a { i -= 1 }
        starts.insert(a, at: i)
        ends.insert(b, at: i)
    }

    func union(_ other: ScalarSet) -> ScalarSet {
        var out = ScalarSet()
        var all = zip(starts, ends).map { ($0, $1) } + zip(other.starts, other.ends).map { ($0, $1) }
        all.sort { $0.0 < $1.0 }
        for r in all { out.add(r.0, r.1) }
        return out
    }

    @inline(__always)
    func contains(_ v: UInt32) -> Bool {
        if v < 64 { return ascii.0 & (1 << v) != 0 }
        if v < 128 { return ascii.1 & (1 << (v - 64)) != 0 }
        var lo = 0, hi = starts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if starts[mid] <= v { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 && v <= ends[lo - 1]
    }

    @inline(__always)
    func contains(_ s: Unicode.Scalar) -> Bool { contains(s.value) }
}

/// Errors loading tokenizer data; each names the file.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case missingResource(String)
    case malformedData(file: String, line: Int, message: String)
    case textTooLong(index: Int, tokens: Int, contextLength: Int)
    case invalidContextLength(Int)
    case unknownTokenID(position: Int, id: Int)
    /// A language code the tokenizer has no token for (NLLB's 202 codes, as `eng_Latn`).
    case unknownLanguage(String)
    /// A language asked of a tokenizer (named) that has no language codes: only NLLB's has.
    case noLanguages(String)
    /// Text given to a model loaded without its text tower, which has no tokenizer either.
    case textTowerNotLoaded

    public var description: String {
        switch self {
        case .missingResource(let f): return "tokenizer data file '\(f)' is missing"
        case .malformedData(let f, let l, let m): return "\(f):\(l): \(m)"
        case .textTooLong(let i, let n, let c):
            return "text \(i) is \(n) tokens long (with start and end tokens), more than the context length \(c); shorten it or enable truncation"
        case .invalidContextLength(let c):
            return c < 2 ? "context length \(c) is too small; it needs room for the start and end tokens (at least 2)"
                         : "context length \(c) is too large; at most \(CLIPTokenizer.maximumContextLength) tokens are supported"
        case .unknownTokenID(let p, let id): return "token id \(id) at position \(p) is not in the vocabulary"
        case .unknownLanguage(let code):
            return "'\(code)' is not one of NLLB's 202 language codes (FLORES-200's, as eng_Latn, fra_Latn, zho_Hans, arb_Arab)"
        case .noLanguages(let kind):
            return "this model's tokenizer (\(kind)) has no language codes; a text language applies to NLLB-CLIP and NLLB-SigLIP models"
        case .textTowerNotLoaded:
            return "the model was loaded image-only (towers: .imageOnly), without its text tower or tokenizer; load it with both towers to encode text"
        }
    }
}

/// A bundled data file's bytes.
func resourceBytes(_ name: String) throws(TokenizerError) -> [UInt8] {
    guard let url = Bundle.module.url(forResource: name, withExtension: "txt", subdirectory: "Resources"),
          let data = try? Data(contentsOf: url) else {
        throw .missingResource("\(name).txt")
    }
    return [UInt8](data)
}

/// Reads a bundled data file's lines, dropping comment lines (starting with '#') when `comments` is set;
/// BPE merges are never comments, some of them start with '#'.
func resourceLines(_ name: String, comments: Bool = true) throws(TokenizerError) -> [Substring] {
    let data = try resourceBytes(name)
    // Split on the newline byte, not on Characters: grapheme breaking over 500 KB of merges took most of the
    // tokenizer's start-up. "\n" is ASCII, so every cut falls on a scalar boundary.
    let text = String(decoding: data, as: UTF8.self)
    var lines: [Substring] = []
    lines.reserveCapacity(data.count / 8)
    let utf8 = text.utf8
    var start = utf8.startIndex
    var i = start
    while i != utf8.endIndex {
        if utf8[i] == UInt8(ascii: "\n") {
            if start != i { lines.append(text[start..<i]) }
            start = utf8.index(after: i)
        }
        i = utf8.index(after: i)
    }
    if start != utf8.endIndex { lines.append(text[start...]) }
    return comments ? lines.filter { $0.utf8.first != UInt8(ascii: "#") } : lines
}

func parseHex(_ s: Substring, file: String, line: Int) throws(TokenizerError) -> UInt32 {
    guard let v = UInt32(s, radix: 16) else {
        throw .malformedData(file: file, line: line, message: "'\(s)' is not a hexadecimal code point")
    }
    return v
}

func scalars(_ fields: ArraySlice<Substring>, file: String, line: Int) throws(TokenizerError) -> [Unicode.Scalar] {
    var out: [Unicode.Scalar] = []
    for f in fields {
        guard let s = Unicode.Scalar(try parseHex(f, file: file, line: line)) else {
            throw .malformedData(file: file, line: line, message: "'\(f)' is not a Unicode scalar")
        }
        out.append(s)
    }
    return out
}

/// Character facts of the reference (Python 3 and the `regex` module), loaded from the bundled tables that
/// Scripts/fixtures/make_tokenizer_data.py exported, so that classification does not depend on Swift's Unicode version.
struct CharacterData: Sendable {
    /// Per-scalar flags for the Basic Multilingual Plane; ranges above it.
    private let bmp: [UInt8]
    /// One range set per flag bit, for scalars above U+FFFF.
    private let astral: [(flag: UInt8, set: ScalarSet)]
    let lowercase: [UInt32: [Unicode.Scalar]]

    static let letter: UInt8 = 1       // [\p{L}] under IGNORECASE
    static let number: UInt8 = 2       // [\p{N}]
    static let other: UInt8 = 4        // [^\s\p{L}\p{N}] under IGNORECASE
    static let regexSpace: UInt8 = 8   // the `regex` module's \s
    static let pythonSpace: UInt8 = 16 // str.isspace

    static let shared: Result<CharacterData, TokenizerError> = Result { () throws(TokenizerError) -> CharacterData in
        try CharacterData()
    }

    init() throws(TokenizerError) {
        var bmp = [UInt8](repeating: 0, count: 0x10000)
        var astral: [UInt8: [(UInt32, UInt32)]] = [:]
        let file = "char_classes.txt"
        for (i, line) in try resourceLines("char_classes").enumerated() {
            let f = line.split(separator: " ")
            guard f.count == 3 else { throw .malformedData(file: file, line: i + 1, message: "expected 'CLASS START END'") }
            let flag: UInt8
            switch f[0] {
            case "L": flag = Self.letter
            case "N": flag = Self.number
            case "O": flag = Self.other
            case "S": flag = Self.regexSpace
            case "P": flag = Self.pythonSpace
            default: throw .malformedData(file: file, line: i + 1, message: "unknown class '\(f[0])'")
            }
            let a = try parseHex(f[1], file: file, line: i + 1), b = try parseHex(f[2], file: file, line: i + 1)
            guard a <= b, b < 0x110000 else { throw .malformedData(file: file, line: i + 1, message: "bad range") }
            if a < 0x10000 {
                for v in a...min(b, 0xFFFF) { bmp[Int(v)] |= flag }
            }
            if b >= 0x10000 { astral[flag, default: []].append((max(a, 0x10000), b)) }
        }
        self.bmp = bmp
        self.astral = astral.map { (flag: $0.key, set: ScalarSet(ranges: $0.value)) }
        var lower: [UInt32: [Unicode.Scalar]] = [:]
        for (i, line) in try resourceLines("lowercase").enumerated() {
            let f = line.split(separator: " ")
            guard f.count >= 2 else { throw .malformedData(file: "lowercase.txt", line: i + 1, message: "expected 'FROM TO...'") }
            lower[try parseHex(f[0], file: "lowercase.txt", line: i + 1)] = try scalars(f[1...], file: "lowercase.txt", line: i + 1)
        }
        self.lowercase = lower
    }

    @inline(__always)
    func flags(_ v: UInt32) -> UInt8 {
        if v < 0x10000 { return bmp[Int(v)] }
        var result: UInt8 = 0
        for (flag, set) in astral where set.contains(v) { result |= flag }
        return result
    }
}

extension CharacterData {
    /// Python's `str.strip()`.
    func pythonStrip(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var a = 0, b = s.count
        while a < b && flags(s[a].value) & CharacterData.pythonSpace != 0 { a += 1 }
        while b > a && flags(s[b - 1].value) & CharacterData.pythonSpace != 0 { b -= 1 }
        return a == 0 && b == s.count ? s : Array(s[a..<b])
    }

    /// Python's `str.lower()`, including the final-sigma rule.
    func pythonLower(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        for (i, c) in s.enumerated() {
            let v = c.value
            if v < 0x80 {
                out.append(v >= 65 && v <= 90 ? Unicode.Scalar(v + 32)! : c)
            } else if v == 0x3A3 {
                out.append(isFinalSigma(s, i) ? "\u{3C2}" : "\u{3C3}")
            } else if let m = lowercase[v] {
                out.append(contentsOf: m)
            } else {
                out.append(c)
            }
        }
        return out
    }

    private func isFinalSigma(_ s: [Unicode.Scalar], _ i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && s[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0 && s[j].properties.isCased else { return false }
        j = i + 1
        while j < s.count && s[j].properties.isCaseIgnorable { j += 1 }
        return j == s.count || !s[j].properties.isCased
    }

}
