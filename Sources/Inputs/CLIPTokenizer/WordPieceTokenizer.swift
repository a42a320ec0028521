import Foundation

/// CLIPA's tokenizer: BERT's WordPiece (`bert-base-uncased`'s `vocab.txt`), encoding as open_clip encodes it through
/// Hugging Face's tokenizers library (`BertNormalizer`, `BertPreTokenizer`, `WordPiece`):
///
/// - open_clip's `whitespace` cleaning (ftfy-style fixing, HTML unescaping, whitespace collapsed);
/// - `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]` and `[MASK]` written in the text (as written, before lower-casing) are those
///   tokens;
/// - NUL, U+FFFD and "other" characters removed, whitespace made spaces, CJK ideographs set apart, accents
///   stripped (NFD, then nonspacing marks removed), lower-cased — with the character classes of tokenizers'
///   own tables (`bert_classes.txt`, older than Swift's Unicode);
/// - words split at spaces, each punctuation character a word of its own;
/// - each word the longest vocabulary entries from its start, later ones as `##` continuations; a word of more than
///   100 characters, or with a part no entry matches, is one `[UNK]`.
///
/// open_clip's CLIPA rows (`strip_sep_token`): `[CLS]`, the pieces, 0 where `[SEP]` was, then `[PAD]`; a text too
/// long keeps its first `contextLength − 2` pieces. With `rows: .bert`, transformers' `BertTokenizer` rows as
/// Chinese-CLIP's processor writes them: the text as given (no cleaning), `[CLS]`, the pieces, `[SEP]`, `[PAD]`.
///
/// ```swift
/// let tokenizer = try WordPieceTokenizer(vocabulary: "bert-base-uncased/vocab.txt")
/// let rows = try tokenizer.tokenize(["a photo of a cat"], contextLength: 32, truncate: true)   // 1 × 32 ids
/// ```
public final class WordPieceTokenizer: TextTokenizer {
    /// The vocabulary file's path.
    public let origin: String
    private let ids: [String: Int]
    private let tokens: Int
    private let specials: [(bytes: [UInt8], id: Int)]
    /// The row's first id, `[CLS]`.
    public let classToken: Int
    /// `[SEP]`, which open_clip's CLIPA rows replace by 0.
    public let separator: Int
    /// The padding id, `[PAD]`.
    public let padding: Int
    /// `[UNK]`.
    public let unknown: Int
    private let cleaner: OpenCLIPCleaner
    private let classes: BertClasses

    /// The longest word WordPiece splits; longer ones are `[UNK]` (tokenizers' limit; cn_clip's FullTokenizer's is
    /// 200, used with `rows: .cnCLIP`).
    public static let maximumWordLength = 100

    /// How texts become rows.
    public enum Rows: Sendable {
        /// open_clip's CLIPA rows: cleaned text, `[SEP]` written as 0.
        case openCLIPStrippingSeparator
        /// transformers' BERT rows: the text as given, `[CLS]` … `[SEP]`.
        case bert
        /// cn_clip's rows (Google BERT's `FullTokenizer`): as `bert`, but `[CLS]`, `[MASK]` … written in the text are
        /// text and words of up to 200 characters are split. The character classes stay tokenizers': they differ
        /// from the FullTokenizer's (Python's Unicode tables) for private-use characters (dropped here, `[UNK]` there),
        /// final sigma (σ here, ς there) and about 500 code points Unicode classed differently between versions.
        case cnCLIP
    }

    /// The rows `tokenize` writes.
    public let rows: Rows

    /// Ids in the vocabulary.
    public var vocabularySize: Int { tokens }

    /// Reads a `vocab.txt` (one entry per line, its id the line's index), which must hold `[PAD]`, `[UNK]`, `[CLS]`
    /// and `[SEP]`.
    public init(vocabulary path: String, rows: Rows = .openCLIPStrippingSeparator) throws(TokenizerError) {
        self.rows = rows
        let data = try readTokenizerFile(path, limit: 64 << 20)
        // Entries, before they are split out: 50 million empty lines took 1.2 GB as subsequences.
        let count = data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        guard count <= 2_000_000 else {
            throw .malformedData(file: path, line: 0, message: "\(count) lines is more than a WordPiece vocabulary has (at most 2,000,000)")
        }
        var lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        if data.last == UInt8(ascii: "\n") { lines.removeLast() }
        var ids: [String: Int] = [:]
        for (index, entry) in lines.enumerated() {
            guard let token = String(validating: entry, as: UTF8.self) else {
                throw .malformedData(file: path, line: index + 1, message: "not UTF-8")
            }
            ids[token] = index  // a repeated entry takes its last line's id, as transformers reads the file
        }
        func required(_ name: String) throws(TokenizerError) -> Int {
            guard let id = ids[name] else { throw .malformedData(file: path, line: 0, message: "the vocabulary has no \(name)") }
            return id
        }
        origin = path
        tokens = lines.count
        (classToken, separator, padding, unknown) = (try required("[CLS]"), try required("[SEP]"), try required("[PAD]"), try required("[UNK]"))
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].compactMap { name in ids[name].map { (Array(name.utf8), $0) } }
        self.ids = ids
        cleaner = try OpenCLIPCleaner()
        classes = try BertClasses.shared.get()
    }

    /// Chinese-CLIP's vocabulary (Google's Chinese BERT `vocab.txt`, 21,128 entries, as the `cn_clip` package ships
    /// it), bundled so that cn_clip's checkpoints, which hold no vocabulary, tokenize offline; in `rows` (cn_clip's own
    /// by default).
    public static func chineseCLIP(rows: Rows = .cnCLIP) throws(TokenizerError) -> WordPieceTokenizer {
        guard let url = Bundle.module.url(forResource: chineseVocabularyResource, withExtension: "txt", subdirectory: "Resources") else {
            throw .missingResource("\(chineseVocabularyResource).txt")
        }
        return try WordPieceTokenizer(vocabulary: url.path, rows: rows)
    }

    /// The bundled Chinese BERT vocabulary's resource name, and its size.
    static let chineseVocabularyResource = "chinese_bert_vocab"
    /// Entries in the bundled Chinese BERT vocabulary.
    public static let chineseCLIPVocabularySize = 21_128

    /// One row of `contextLength` ids per text as open_clip writes CLIPA's: `[CLS]`, the pieces, 0 for `[SEP]`,
    /// `[PAD]` to the end. A text of more than `contextLength − 2` pieces keeps its first ones when `truncate`, else is
    /// an error naming it.
    public func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]] {
        if rows == .bert {
            return try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [classToken], end: separator,
                                  padding: padding) { encode($0) }
        }
        if rows == .cnCLIP {
            return try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [classToken], end: separator,
                                  padding: padding) { encodeSegment($0) }
        }
        // strip_sep_token: every [SEP] becomes 0, the row's last and any written in the text.
        return try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [classToken], end: 0,
                       padding: padding) { encode(cleanedText($0)).map { $0 == separator ? 0 : $0 } }
    }

    /// The text after open_clip's `whitespace` cleaning.
    public func cleanedText(_ text: String) -> String { cleaner.clean(text, canonicalize: false) }

    /// The ids of `text` without `[CLS]` and `[SEP]` (tokenizers' `encode(text, add_special_tokens=False)`).
    public func encode(_ text: String) -> [Int] {
        encodingSpecialTokens(text, specials) { encodeSegment(String(decoding: $0, as: UTF8.self)) }
    }

    private func encodeSegment(_ text: String) -> [Int] {
        var ids: [Int] = []
        var word: [Unicode.Scalar] = []
        func flush() {
            if !word.isEmpty { ids += wordPieces(word) }
            word.removeAll(keepingCapacity: true)
        }
        for c in normalize(text) {
            if classes.space.contains(c) {
                flush()
            } else if classes.punctuation.contains(c) {
                flush()
                ids += wordPieces([c])
            } else {
                word.append(c)
            }
        }
        flush()
        return ids
    }

    /// BertNormalizer: clean, CJK set apart, accents stripped, lower-cased.
    func normalize(_ text: String) -> [Unicode.Scalar] {
        var cleaned = String.UnicodeScalarView()
        for c in text.unicodeScalars where !classes.removed.contains(c) {
            if classes.space.contains(c) {
                cleaned.append(" ")
            } else if isCJK(c.value) {
                cleaned.append(" ")
                cleaned.append(c)
                cleaned.append(" ")
            } else {
                cleaned.append(c)
            }
        }
        var out: [Unicode.Scalar] = []
        for c in String(cleaned).decomposedStringWithCanonicalMapping.unicodeScalars where !classes.nonspacingMark.contains(c) {
            out += c.properties.lowercaseMapping.unicodeScalars
        }
        return out
    }

    /// WordPiece on one word: the longest entries, greedily from the start.
    private func wordPieces(_ word: [Unicode.Scalar]) -> [Int] {
        guard word.count <= (rows == .cnCLIP ? 200 : Self.maximumWordLength) else { return [unknown] }
        var pieces: [Int] = []
        var start = 0
        while start < word.count {
            var end = word.count, found: Int?
            while end > start {
                var piece = String(String.UnicodeScalarView(word[start..<end]))
                if start > 0 { piece = "##" + piece }
                if let id = ids[piece] { found = id; break }
                end -= 1
            }
            guard let found else { return [unknown] }
            pieces.append(found)
            start = end
        }
        return pieces
    }

    /// BERT's CJK Unified Ideographs blocks.
    private func isCJK(_ v: UInt32) -> Bool {
        switch v {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        // Google BERT's range starts at 0x2B820; tokenizers' BertNormalizer (transformers, open_clip) at 0x2B920.
        case 0x2B820...0x2B91F: return rows == .cnCLIP
        default: return false
        }
    }
}

/// The character classes of tokenizers' BERT normalizer and pre-tokenizer (`bert_classes.txt`).
struct BertClasses: Sendable {
    var removed = ScalarSet(), space = ScalarSet(), nonspacingMark = ScalarSet(), punctuation = ScalarSet()

    static let shared = Result { () throws(TokenizerError) -> BertClasses in try BertClasses() }

    init() throws(TokenizerError) {
        let file = "bert_classes.txt"
        var ranges: [String: [(UInt32, UInt32)]] = [:]
        for (n, line) in try resourceLines("bert_classes").enumerated() {
            let parts = line.split(separator: " ")
            guard parts.count == 3 else { throw .malformedData(file: file, line: n + 2, message: "expected CLASS FIRST LAST") }
            ranges[String(parts[0]), default: []].append((try parseHex(parts[1], file: file, line: n + 2),
                                                           try parseHex(parts[2], file: file, line: n + 2)))
        }
        removed = ScalarSet(ranges: ranges["R"] ?? [])
        space = ScalarSet(ranges: ranges["W"] ?? [])
        nonspacingMark = ScalarSet(ranges: ranges["M"] ?? [])
        punctuation = ScalarSet(ranges: ranges["P"] ?? [])
    }
}
