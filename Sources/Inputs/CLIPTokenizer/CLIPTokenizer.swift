import Foundation
import Synchronization

/// CLIP's tokenizer, identical to the reference `clip.tokenize` / `SimpleTokenizer`: ftfy-style cleaning,
/// HTML unescaping, whitespace collapsing and Python lowercasing, the reference pre-tokenization pattern, and
/// byte-level BPE. Thread-safe; the merge cache is bounded.
///
/// ```swift
/// let tokenizer = try CLIPTokenizer.shared()
/// let ids = try tokenizer.tokenize(["a diagram", "a dog", "a cat"])   // 3 rows × 77 ids
/// ```
public final class CLIPTokenizer: Sendable {
    package let vocabulary: Vocabulary
    let characters: CharacterData
    let html: HTMLUnescaper
    let fixer: TextFixer
    private let cache: Mutex<[[UInt8]: [Int]]>
    /// Most pre-tokens cached; past this the cache is emptied, so memory stays flat under endless new words.
    public let cacheCapacity: Int

    /// Id of `<|startoftext|>` (49406 in CLIP's vocabulary).
    public var startOfText: Int { vocabulary.startOfText }
    /// Id of `<|endoftext|>` (49407 in CLIP's vocabulary).
    public var endOfText: Int { vocabulary.endOfText }
    /// Number of tokens in the vocabulary (49408 in CLIP's).
    public var vocabularySize: Int { vocabulary.tokens.count }

    private static let sharedResult = Result { () throws(TokenizerError) -> CLIPTokenizer in try CLIPTokenizer() }

    /// The tokenizer with CLIP's bundled vocabulary, loaded once per process.
    public static func shared() throws(TokenizerError) -> CLIPTokenizer { try sharedResult.get() }

    /// A tokenizer with CLIP's bundled 49,408-token vocabulary.
    public convenience init(cacheCapacity: Int = 65_536) throws(TokenizerError) {
        let merges = MergeLines(text: try resourceBytes("bpe_merges"))
        guard merges.count == 48_894 else {
            throw .malformedData(file: "bpe_merges.txt", line: merges.count, message: "expected 48894 merges")
        }
        let tokens = try Vocabulary.referenceOrder(merges: merges, source: "bpe_merges.txt")
        try self.init(vocabulary: Vocabulary(tokens: tokens, merges: merges, source: "bpe_merges.txt"), cacheCapacity: cacheCapacity)
    }

    /// A tokenizer from a Hugging Face folder's `vocab.json` and `merges.txt`, or its `tokenizer.json`.
    public convenience init(huggingFaceFolder folder: String, cacheCapacity: Int = 65_536) throws(TokenizerError) {
        try self.init(vocabulary: Self.loadHuggingFace(folder), cacheCapacity: cacheCapacity)
    }

    init(vocabulary: Vocabulary, cacheCapacity: Int) throws(TokenizerError) {
        self.vocabulary = vocabulary
        self.characters = try CharacterData.shared.get()
        self.html = try HTMLUnescaper()
        self.fixer = try TextFixer(html: html)
        self.cacheCapacity = max(cacheCapacity, 0)
        self.cache = Mutex([:])
    }

    // MARK: - Encoding

    /// Token ids of `text`, without start/end tokens or padding (the reference's `SimpleTokenizer.encode`).
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        for piece in pretokenize(clean(text)) {
            ids.append(contentsOf: encodePiece(piece))
        }
        return ids
    }

    /// The longest context a text may be padded to (a model's positional embedding has at most this many rows).
    public static let maximumContextLength = 16_384

    /// `clip.tokenize`: for each text, start token, ids, end token, zero padding → `contextLength` ids.
    /// A text longer than the context is an error naming it, unless `truncate`, which keeps the first
    /// `contextLength` ids and makes the last one the end token.
    public func tokenize(_ texts: [String], contextLength: Int = 77, truncate: Bool = false) throws(TokenizerError) -> [[Int]] {
        guard (2...Self.maximumContextLength).contains(contextLength) else { throw .invalidContextLength(contextLength) }
        var rows: [[Int]] = []
        rows.reserveCapacity(texts.count)
        for (i, text) in texts.enumerated() {
            var ids = [startOfText] + encode(text) + [endOfText]
            if ids.count > contextLength {
                guard truncate else { throw .textTooLong(index: i, tokens: ids.count, contextLength: contextLength) }
                ids.removeLast(ids.count - contextLength)
                ids[contextLength - 1] = endOfText
            }
            rows.append(ids + [Int](repeating: 0, count: contextLength - ids.count))
        }
        return rows
    }

    /// Text of `ids` as the reference decodes it: token bytes joined, invalid UTF-8 replaced by U+FFFD,
    /// `</w>` turned into a space.
    public func decode(_ ids: [Int]) throws(TokenizerError) -> String {
        var bytes: [UInt8] = []
        for (p, id) in ids.enumerated() {
            guard id >= 0 && id < vocabulary.tokens.count else { throw .unknownTokenID(position: p, id: id) }
            for s in vocabulary.tokens.string(id).unicodeScalars {
                bytes.append(Self.byteDecoder[s.value] ?? 0x3F)
            }
        }
        return String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "</w>", with: " ")
    }

    private static let byteDecoder: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in Vocabulary.byteEncoder.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()

    private func encodePiece(_ piece: [Unicode.Scalar]) -> [Int] {
        var bytes: [UInt8] = []
        for s in piece { bytes.append(contentsOf: UTF8.encode(s)!) }
        if bytes == Self.startBytes { return [startOfText] }
        if bytes == Self.endBytes { return [endOfText] }
        if let hit = cache.withLock({ $0[bytes] }) { return hit }
        let ids = vocabulary.encodeWord(bytes)
        cache.withLock { c in
            if c.count >= cacheCapacity { c.removeAll(keepingCapacity: true) }
            if cacheCapacity > 0 { c[bytes] = ids }
        }
        return ids
    }

    private static let startBytes = Array("<|startoftext|>".utf8)
    private static let endBytes = Array("<|endoftext|>".utf8)

    /// Number of pre-tokens currently cached (for monitoring memory in long-running servers).
    public var cachedWordCount: Int { cache.withLock { $0.count } }

    // MARK: - Cleaning

    /// The text as the reference tokenizes it: `whitespace_clean(basic_clean(text)).lower()`.
    public func cleanedText(_ text: String) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: clean(text))
        return String(v)
    }

    /// The reference's `whitespace_clean(basic_clean(text)).lower()`.
    func clean(_ text: String) -> [Unicode.Scalar] {
        var t = fixer.fixText(text)
        t = html.unescape(html.unescape(t))
        var s = characters.pythonStrip(Array(t.unicodeScalars))
        // Runs of the `regex` module's \s become one space.
        var collapsed: [Unicode.Scalar] = []
        collapsed.reserveCapacity(s.count)
        var inSpace = false
        for c in s {
            if characters.flags(c.value) & CharacterData.regexSpace != 0 {
                if !inSpace { collapsed.append(" ") }
                inSpace = true
            } else {
                collapsed.append(c)
                inSpace = false
            }
        }
        s = characters.pythonStrip(collapsed)
        return characters.pythonLower(s)
    }

    // MARK: - Pre-tokenization

    /// The reference pattern `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
    /// (case-insensitive), as `regex.findall` applies it.
    func pretokenize(_ s: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var pieces: [[Unicode.Scalar]] = []
        var i = 0
        while i < s.count {
            if let n = literalMatch(s, i) {
                pieces.append(Array(s[i..<(i + n)]))
                i += n
                continue
            }
            let f = characters.flags(s[i].value)
            if f & CharacterData.letter != 0 {
                var j = i + 1
                while j < s.count && characters.flags(s[j].value) & CharacterData.letter != 0 { j += 1 }
                pieces.append(Array(s[i..<j]))
                i = j
            } else if f & CharacterData.number != 0 {
                pieces.append([s[i]])
                i += 1
            } else if f & CharacterData.other != 0 {
                var j = i + 1
                while j < s.count && characters.flags(s[j].value) & CharacterData.other != 0 { j += 1 }
                pieces.append(Array(s[i..<j]))
                i = j
            } else {
                i += 1  // whitespace: no alternative matches here
            }
        }
        return pieces
    }

    private static let literals: [[Unicode.Scalar]] = ["<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
        .map { Array($0.unicodeScalars) }

    /// Length of the first literal alternative matching at `i`, compared case-insensitively by simple case
    /// folding (after lowercasing, only U+017F LATIN SMALL LETTER LONG S still folds to an ASCII letter).
    private func literalMatch(_ s: [Unicode.Scalar], _ i: Int) -> Int? {
        let c = s[i]
        guard c == "<" || c == "'" else { return nil }
        outer: for lit in Self.literals {
            guard i + lit.count <= s.count else { continue }
            for (k, l) in lit.enumerated() {
                let x = s[i + k]
                if x == l || (l == "s" && x == "\u{17F}") { continue }
                continue outer
            }
            return lit.count
        }
        return nil
    }

    // MARK: - Hugging Face files

    static func loadHuggingFace(_ folder: String) throws(TokenizerError) -> Vocabulary {
        let fm = FileManager.default
        let vocabPath = folder + "/vocab.json", mergesPath = folder + "/merges.txt", tokPath = folder + "/tokenizer.json"
        if fm.fileExists(atPath: vocabPath) && fm.fileExists(atPath: mergesPath) {
            guard let map = try decodeJSON([String: Double].self, vocabPath) else {
                throw .malformedData(file: vocabPath, line: 0, message: "expected a JSON object of token → id")
            }
            guard let text = String(validating: try readTokenizerFile(mergesPath), as: UTF8.self) else {
                throw .malformedData(file: mergesPath, line: 0, message: "not readable as UTF-8 text")
            }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true).filter { !$0.hasPrefix("#version") }
            return try vocabulary(from: map, merges: lines, source: vocabPath)
        }
        if fm.fileExists(atPath: tokPath) {
            guard let root = try decodeJSON(TokenizerJSON.self, tokPath) else {
                throw .malformedData(file: tokPath, line: 0, message: "expected model.vocab and model.merges (each merge \"a b\" or [\"a\", \"b\"])")
            }
            return try vocabulary(from: root.model.vocab, merges: root.model.merges.map { Substring($0.line) }, source: tokPath)
        }
        throw .missingResource("\(folder)/vocab.json and merges.txt, or tokenizer.json")
    }

    /// `tokenizer.json` as the tokenizers library writes a BPE model: the vocabulary and the merges, each merge
    /// either `"a b"` or (tokenizers ≥ 0.20) `["a", "b"]`.
    private struct TokenizerJSON: Decodable {
        struct Model: Decodable {
            var vocab: [String: Double]
            var merges: [Merge]
        }
        struct Merge: Decodable {
            var line: String
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { line = s; return }
                let pair = try c.decode([String].self)
                guard pair.count == 2 else {
                    throw DecodingError.dataCorruptedError(in: c, debugDescription: "a merge pair has \(pair.count) parts")
                }
                line = pair[0] + " " + pair[1]
            }
        }
        var model: Model
    }

    /// The file at `path` decoded as `T`: nil when it is JSON of another shape; an error when it is not JSON.
    private static func decodeJSON<T: Decodable>(_ type: T.Type, _ path: String) throws(TokenizerError) -> T? {
        let data = Data(try readTokenizerFile(path))
        do { return try JSONDecoder().decode(T.self, from: data) } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            throw .malformedData(file: path, line: 0, message: "invalid JSON")
        } catch {
            return nil
        }
    }

    private static func vocabulary(from map: [String: Double], merges: [Substring], source: String) throws(TokenizerError) -> Vocabulary {
        guard map.count <= 10_000_000 else { throw .malformedData(file: source, line: 0, message: "vocabulary too large") }
        var tokens = [String?](repeating: nil, count: map.count)
        for (token, value) in map {
            guard let id = Int(exactly: value), id >= 0, id < map.count, tokens[id] == nil else {
                throw .malformedData(file: source, line: 0, message: "token '\(token)' has an id that is not a unique integer in 0..<\(map.count)")
            }
            tokens[id] = token
        }
        return try Vocabulary(tokens: tokens.map { $0 ?? "" }, mergeLines: merges, source: source)
    }
}
