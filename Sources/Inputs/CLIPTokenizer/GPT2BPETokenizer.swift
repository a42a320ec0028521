import Foundation

/// RoBERTa's tokenizer (open_clip's `roberta-ViT-B-32`, `hf_tokenizer_name: roberta-base`): GPT-2's byte-level BPE
/// with fairseq's ids, from a Hugging Face folder's `vocab.json` and `merges.txt`, encoding as open_clip encodes it
/// through Hugging Face's tokenizers library:
///
/// - open_clip's `whitespace` cleaning (ftfy-style fixing, HTML unescaping, whitespace collapsed; case kept);
/// - `<s>`, `</s>`, `<pad>`, `<unk>` and `<mask>` written in the text are those tokens (`<mask>` takes the spaces
///   before it, as RoBERTa's tokenizer declares it);
/// - GPT-2's pre-tokenization, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, case
///   kept and no prefix space;
/// - each piece's UTF-8 bytes mapped to GPT-2's printable byte alphabet and merged by rank (no end-of-word marker).
///
/// Rows are `<s>`, the pieces, `</s>`, then `<pad>`; a text too long keeps its first `contextLength − 2` pieces.
///
/// ```swift
/// let tokenizer = try GPT2BPETokenizer(folder: "roberta-base")      // vocab.json + merges.txt
/// let rows = try tokenizer.tokenize(["a photo of a cat"], contextLength: 77, truncate: true)
/// ```
public final class GPT2BPETokenizer: TextTokenizer {
    /// Id of each token string (over the byte alphabet).
    private let ids: [String: Int]
    /// Id of the single-byte symbol of each byte.
    private let byteSymbol: [Int32]
    private let merges: BPEMerges
    private let cleaner: OpenCLIPCleaner
    private let specials: [(bytes: [UInt8], id: Int)]
    /// `<s>`, `</s>`, `<pad>` and `<mask>` as the vocabulary numbers them (0, 2, 1 and 50264 in roberta-base).
    public let beginning: Int, end: Int, padding: Int
    private let mask: Int?
    public let vocabularySize: Int

    /// The files a folder holds the vocabulary in.
    public static let files = ["vocab.json", "merges.txt"]

    /// Reads `vocab.json` and `merges.txt` in `folder`.
    public convenience init(folder: String) throws(TokenizerError) {
        try self.init(vocabularyJSON: try readTokenizerFile(folder + "/" + Self.files[0]),
                      merges: try readTokenizerFile(folder + "/" + Self.files[1]), source: folder)
    }

    /// A tokenizer from the bytes of `vocab.json` (token → id) and `merges.txt` ("left right" per line, by rank,
    /// after an optional `#version` line); `source` names them in errors.
    package init(vocabularyJSON: [UInt8], merges mergeBytes: [UInt8], source: String) throws(TokenizerError) {
        let vocabFile = source + "/vocab.json", mergesFile = source + "/merges.txt"
        guard let map = try? JSONDecoder().decode([String: Int].self, from: Data(vocabularyJSON)) else {
            throw .malformedData(file: vocabFile, line: 0, message: "not a JSON object of token → id")
        }
        let limit = 1 << 24
        var byID = Set<Int>()
        for (token, id) in map {
            guard (0..<limit).contains(id) else {
                throw .malformedData(file: vocabFile, line: 0, message: "token '\(token)' has id \(id), outside 0..<\(limit)")
            }
            guard byID.insert(id).inserted else { throw .malformedData(file: vocabFile, line: 0, message: "id \(id) is given twice") }
        }
        func special(_ name: String) throws(TokenizerError) -> Int {
            guard let id = map[name] else { throw .malformedData(file: vocabFile, line: 0, message: "the vocabulary lacks \(name)") }
            return id
        }
        (beginning, end, padding) = (try special("<s>"), try special("</s>"), try special("<pad>"))
        mask = map["<mask>"]
        var byteSymbol: [Int32] = []
        for b in 0..<256 {
            guard let id = map[String(Vocabulary.byteEncoder[b])] else {
                throw .malformedData(file: vocabFile, line: 0, message: "the vocabulary lacks the byte symbol for \(b)")
            }
            byteSymbol.append(Int32(id))
        }
        var table: [UInt64: (rank: Int32, merged: Int32)] = [:]
        var rank: Int32 = 0
        for (number, line) in String(decoding: mergeBytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.hasSuffix("\r") ? line.dropLast() : line
            if text.isEmpty || (number == 0 && text.hasPrefix("#version")) { continue }
            let (left, right) = Vocabulary.halves(text)
            guard let right, let l = map[String(left)], let r = map[String(right)], let m = map[String(left) + right] else {
                throw .malformedData(file: mergesFile, line: number + 1, message: "merge '\(text)' names tokens that are not in the vocabulary")
            }
            // A repeated merge takes its last rank: tokenizers' BPE builder collects the merges into a map, a later
            // entry replacing an earlier one (checked: merges a b, b c, a b give "abc" → a, bc with tokenizers 0.23.3).
            table[UInt64(l) << 32 | UInt64(r)] = (rank, Int32(m))
            rank += 1
        }
        ids = map
        self.byteSymbol = byteSymbol
        merges = BPEMerges(table)
        cleaner = try OpenCLIPCleaner()
        specials = ["<s>", "</s>", "<pad>", "<unk>", "<mask>"].compactMap { name in map[name].map { (Array(name.utf8), $0) } }
        vocabularySize = (byID.max() ?? 0) + 1
    }

    /// One row of `contextLength` ids per text: `<s>`, the cleaned text's pieces, `</s>`, `<pad>` to the end.
    public func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]] {
        try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [beginning], end: end,
                       padding: padding) { (text) throws(TokenizerError) in encode(cleanedText(text)) }
    }

    /// The text after open_clip's `whitespace` cleaning.
    public func cleanedText(_ text: String) -> String { cleaner.clean(text, canonicalize: false) }

    /// The ids of `text` without `<s>` and `</s>` (tokenizers' `encode(text, add_special_tokens=False)`): the special
    /// tokens written in it kept whole (`<mask>` with the whitespace before it), the text between them pre-tokenized
    /// and merged.
    public func encode(_ text: String) -> [Int] {
        encodingSpecialTokens(text, specials, lstrip: mask.map { [$0] } ?? []) { encodeStretch($0) }
    }

    /// Text between special tokens, pre-tokenized and merged.
    private func encodeStretch(_ bytes: ArraySlice<UInt8>) -> [Int] {
        guard !bytes.isEmpty else { return [] }
        let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
        var ids: [Int] = []
        for piece in Self.pretokenize(scalars) {
            ids += merges.apply(String(String.UnicodeScalarView(piece)).utf8.map { byteSymbol[Int($0)] })
        }
        return ids
    }

    private enum Kind { case letter, number, space, other }

    private static func kind(_ c: Unicode.Scalar) -> Kind {
        let p = c.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    private static let contractions: [[Unicode.Scalar]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }

    /// GPT-2's pattern, alternative by alternative, as a backtracking regex matches it at each position.
    static func pretokenize(_ s: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        var i = 0
        func run(from start: Int, of k: Kind) -> Int {
            var j = start
            while j < s.count && kind(s[j]) == k { j += 1 }
            return j
        }
        while i < s.count {
            if s[i] == "'", let c = contractions.first(where: { s[i...].starts(with: $0) }) {
                pieces.append(s[i..<(i + c.count)])
                i += c.count
                continue
            }
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one kind.
            let first = s[i] == " " && i + 1 < s.count ? i + 1 : i
            let k = kind(s[first])
            if k != .space {
                let j = run(from: first, of: k)
                pieces.append(s[i..<j])
                i = j
                continue
            }
            // `\s+(?!\S)`: whitespace up to, not including, the last one before a non-space; else `\s+`.
            let j = run(from: i, of: .space)
            let take = j < s.count && j - i > 1 ? j - 1 : j
            pieces.append(s[i..<take])
            i = take
        }
        return pieces
    }
}
