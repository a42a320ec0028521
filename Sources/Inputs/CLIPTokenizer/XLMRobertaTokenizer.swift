/// MetaCLIP 2's tokenizer: XLM-V's (`facebook/xlm-v-base`), an XLM-RoBERTa tokenizer over a SentencePiece unigram
/// model (`sentencepiece.bpe.model`), encoding as open_clip encodes it, through Hugging Face's tokenizers library:
///
/// - open_clip's `whitespace` cleaning (ftfy-style fixing, HTML unescaping, whitespace collapsed; case kept);
/// - `<s>`, `<pad>`, `</s>`, `<unk>` and `<mask>` written in the text are those tokens;
/// - the model's precompiled normalization map applied as tokenizers applies it: to each grapheme cluster shorter
///   than 6 bytes by the map's *shortest* rule matching at its start (the whole cluster is replaced), else to each
///   character;
/// - words split at Unicode whitespace, each given a leading `▁` and split again before any `▁` inside it;
/// - each piece segmented by the unigram Viterbi in double precision (tokenizers' arithmetic, where the
///   `sentencepiece` library's is float), runs of unknown characters as one `<unk>`;
/// - fairseq's ids: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, the model's pieces from its id 3 on shifted up by one,
///   `<mask>` last.
///
/// Rows are `<s>`, the pieces, `</s>`, then `<pad>`; a text too long keeps its first `contextLength − 2` pieces.
///
/// ```swift
/// let tokenizer = try XLMRobertaTokenizer(contentsOf: "xlm-v-base/sentencepiece.bpe.model")
/// let rows = try tokenizer.tokenize(["a photo of a cat"], contextLength: 77, truncate: true)   // 1 × 77 ids
/// ```
public final class XLMRobertaTokenizer: TextTokenizer {
    /// The SentencePiece model the vocabulary and normalization come from.
    package let model: SentencePieceModel
    /// The cleaning and the normalization map, from the SentencePiece side.
    private let sentencePiece: SentencePieceTokenizer
    /// Every vocabulary entry by its id here (the special tokens included, as in tokenizers' vocabulary).
    private let trie: PieceTrie
    private let scores: [Double]
    private let unknownScore: Double
    private let specials: [(bytes: [UInt8], id: Int)]

    /// The row's first token, `<s>`.
    public static let beginning = 0
    /// The padding token, `<pad>`.
    public static let padding = 1
    /// The row's last token, `</s>` (MetaCLIP 2's text tower reads its features there).
    public static let end = 2
    /// The unknown token, `<unk>`.
    public static let unknown = 3

    /// Ids: the four special tokens, the model's pieces after its first three, and `<mask>`.
    public var vocabularySize: Int { model.pieces.count + 2 }

    /// A tokenizer for `model`, which must be laid out as fairseq's XLM-R models are: a unigram model whose first
    /// three pieces are `<unk>`, `<s>` and `</s>`.
    package init(model: SentencePieceModel) throws(TokenizerError) {
        func refuse(_ why: String) -> TokenizerError { .malformedData(file: model.origin, line: 0, message: why) }
        guard model.kind == .unigram else { throw refuse("an XLM-RoBERTa tokenizer needs a unigram model; this one is BPE") }
        guard model.pieces.count >= 4, model.unknownID == 0,
              model.pieces[1].type == .control, model.pieces[2].type == .control else {
            throw refuse("an XLM-RoBERTa model starts with the pieces <unk>, <s>, </s> (fairseq's layout); this one does not")
        }
        guard !model.byteFallback, !model.pieces.contains(where: { $0.type == .userDefined }) else {
            throw refuse("byte fallback and user-defined pieces are not part of XLM-RoBERTa tokenizers and are not implemented for them")
        }
        self.model = model
        sentencePiece = try SentencePieceTokenizer(model: model, cleaning: .whitespace)
        let mask = model.pieces.count + 1
        let specials: [([UInt8], Int)] = [(Array("<s>".utf8), 0), (Array("<pad>".utf8), 1), (Array("</s>".utf8), 2),
                                          (Array("<unk>".utf8), 3), (Array("<mask>".utf8), mask)]
        self.specials = specials.map { (bytes: $0.0, id: $0.1) }
        // tokenizers' vocabulary: the special tokens score 0, then the pieces from id 3 on with their scores.
        var entries = specials
        var scores = [Double](repeating: 0, count: mask + 1)
        var lowest = 0.0
        for (i, piece) in model.pieces.enumerated().dropFirst(3) {
            entries.append((piece.bytes, i + 1))
            scores[i + 1] = Double(piece.score)
            lowest = min(lowest, Double(piece.score))
        }
        trie = PieceTrie(entries)
        self.scores = scores
        unknownScore = lowest - 10
    }

    /// Reads `sentencepiece.bpe.model`.
    public convenience init(contentsOf path: String) throws(TokenizerError) {
        try self.init(model: SentencePieceModel(contentsOf: path))
    }

    /// One row of `contextLength` ids per text: `<s>`, the cleaned text's pieces, `</s>`, `<pad>` to the end. A text
    /// of more than `contextLength − 2` pieces keeps its first ones when `truncate` (as the reference truncates),
    /// else is an error naming it.
    public func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]] {
        try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [Self.beginning], end: Self.end,
                       padding: Self.padding) { (text) throws(TokenizerError) in try encode(cleanedText(text)) }
    }

    /// The text after open_clip's `whitespace` cleaning.
    public func cleanedText(_ text: String) -> String { sentencePiece.cleanedText(text) }

    /// The ids of `text` without `<s>` and `</s>` (tokenizers' `encode(text, add_special_tokens=False)`).
    public func encode(_ text: String) throws(TokenizerError) -> [Int] {
        try encodingSpecialTokens(text, specials) { (bytes) throws(TokenizerError) in try encodeSegment(bytes) }
    }

    /// Text between special tokens: normalized, split into words and pieces, each piece segmented.
    private func encodeSegment(_ bytes: ArraySlice<UInt8>) throws(TokenizerError) -> [Int] {
        guard !bytes.isEmpty else { return [] }
        let normalized = try sentencePiece.precompiledGraphemes(String(decoding: bytes, as: UTF8.self))
        var ids: [Int] = []
        for word in normalized.split(whereSeparator: { Self.isWhitespace($0) }) {
            // Metaspace: `▁` first unless the word starts with one, then a new piece before every `▁`.
            var text = String.UnicodeScalarView(word)
            if text.first != Self.metaspace { text.insert(Self.metaspace, at: text.startIndex) }
            var piece = String.UnicodeScalarView()
            for c in text {
                if c == Self.metaspace && !piece.isEmpty {
                    ids += segment(Array(String(piece).utf8))
                    piece = String.UnicodeScalarView()
                }
                piece.append(c)
            }
            if !piece.isEmpty { ids += segment(Array(String(piece).utf8)) }
        }
        return ids
    }

    /// One pre-token's ids, consecutive unknown characters fused into one `<unk>` (tokenizers' `fuse_unk`).
    private func segment(_ bytes: [UInt8]) -> [Int] {
        let path = unigramViterbi(bytes, trie: trie, unknown: (Self.unknown, unknownScore)) { id, _ in scores[id] }
        var ids: [Int] = []
        for (id, _) in path where !(id == Self.unknown && ids.last == Self.unknown) { ids.append(id) }
        return ids
    }

    private static let metaspace: Unicode.Scalar = "\u{2581}"

    /// Unicode's White_Space property (Rust's `char::is_whitespace`, which tokenizers' `WhitespaceSplit` uses).
    private static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }
}
