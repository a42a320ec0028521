/// SigLIP's tokenizer: a SentencePiece model (`spiece.model`; SigLIP 2's Gemma `tokenizer.model`) encoding exactly as
/// the `sentencepiece` library does (precompiled-map normalization, whitespace rules, unigram Viterbi over piece
/// scores with its float arithmetic and tie-breaking, or BPE merges by score; unknown runs merged, byte fallback),
/// after open_clip's `canonicalize` cleaning (ftfy-style fixing, HTML unescaping, `_` as a space, ASCII punctuation
/// removed, lowercase, whitespace collapsed). Rows end with the end-of-sequence token and are padded to the context
/// length (`sigLIP(contentsOf:)` pads as open_clip does for each vocabulary).
///
/// ```swift
/// let tokenizer = try SentencePieceTokenizer.sigLIP(contentsOf: "siglip/spiece.model")
/// let rows = try tokenizer.tokenize(["a photo of a cat"], contextLength: 64, truncate: true)   // 1 × 64 ids
/// ```
public final class SentencePieceTokenizer: TextTokenizer {
    /// The model: pieces, scores, normalizer.
    package let model: SentencePieceModel
    /// How text is cleaned before encoding.
    public let cleaning: Cleaning
    /// The id each row ends with.
    public let endOfText: Int
    /// The id rows are padded with.
    public let padding: Int
    private let pieces: PieceTrie
    private let userDefined: PieceTrie
    private let minScore: Float, maxScore: Float
    /// The cleaning's tables, loaded only when the tokenizer cleans.
    private let cleaner: OpenCLIPCleaner?

    /// Text cleaning before SentencePiece sees it.
    public enum Cleaning: String, Sendable {
        /// open_clip's `canonicalize` (SigLIP): fix, unescape, `_` → space, drop ASCII punctuation, lowercase,
        /// collapse whitespace.
        case canonicalize
        /// open_clip's `whitespace` (its Hugging Face tokenizers, as for MetaCLIP 2): fix, unescape, collapse
        /// whitespace; case and punctuation are kept.
        case whitespace
        /// None: the text is encoded as given.
        case none
    }

    /// Number of pieces.
    public var vocabularySize: Int { model.pieces.count }

    /// A tokenizer for `model`; rows end with its `</s>` (the trainer's end-of-sequence id) and are padded with
    /// `padding` (default: that same id, as SigLIP pads).
    package init(model: SentencePieceModel, cleaning: Cleaning = .canonicalize, padding: Int? = nil) throws(TokenizerError) {
        guard let eos = model.endOfSequenceID else {
            throw .malformedData(file: model.origin, line: 0, message: "the model defines no end-of-sequence piece, which every row ends with")
        }
        if let padding, padding < 0 || padding >= model.pieces.count {
            throw .malformedData(file: model.origin, line: 0, message: "padding id \(padding) is outside the \(model.pieces.count) pieces")
        }
        self.model = model
        self.cleaning = cleaning
        self.endOfText = eos
        self.padding = padding ?? eos
        var minScore = Float.greatestFiniteMagnitude, maxScore = Float.leastNormalMagnitude
        for p in model.pieces where p.type == .normal {
            minScore = min(minScore, p.score)
            maxScore = max(maxScore, p.score)
        }
        (self.minScore, self.maxScore) = (minScore, maxScore)
        let types: Set<SentencePieceModel.PieceType> = [.normal, .userDefined, .unused]
        pieces = PieceTrie(model.pieces.enumerated().filter { types.contains($0.element.type) }.map { ($0.element.bytes, $0.offset) })
        userDefined = PieceTrie(model.pieces.enumerated().filter { $0.element.type == .userDefined }.map { ($0.element.bytes, $0.offset) })
        cleaner = cleaning == .none ? nil : try OpenCLIPCleaner()
    }

    /// Reads a SentencePiece model file; rows are padded with `</s>`.
    public convenience init(contentsOf path: String, cleaning: Cleaning = .canonicalize) throws(TokenizerError) {
        try self.init(model: SentencePieceModel(contentsOf: path), cleaning: cleaning)
    }

    /// SigLIP's tokenizer from its model file, padded as open_clip pads: SigLIP's T5-style unigram vocabularies
    /// with `</s>`, SigLIP 2's Gemma BPE vocabulary with its `<pad>` (open_clip's `pad_token_id = 0 if gemma else 1`).
    public static func sigLIP(contentsOf path: String) throws(TokenizerError) -> SentencePieceTokenizer {
        let model = try SentencePieceModel(contentsOf: path)
        return try SentencePieceTokenizer(model: model, padding: model.kind == .bpe ? model.paddingID ?? 0 : nil)
    }

    // MARK: - Rows

    /// One row of `contextLength` ids per text: the cleaned text's pieces, `</s>`, then padding. A text longer than
    /// `contextLength − 1` pieces is cut there when `truncate` (as the reference truncates), else an error naming it.
    public func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]] {
        try paddedRows(texts, contextLength: contextLength, truncate: truncate, start: [], end: endOfText,
                       padding: padding) { (text) throws(TokenizerError) in try encode(cleanedText(text)) }
    }

    /// The text after `cleaning`.
    public func cleanedText(_ text: String) -> String {
        cleaner?.clean(text, canonicalize: cleaning == .canonicalize) ?? text
    }

    // MARK: - SentencePiece

    /// The piece ids of `text` as `SentencePieceProcessor.encode(text)` gives them (no cleaning, no end token).
    public func encode(_ text: String) throws(TokenizerError) -> [Int] {
        let normalized = try normalize(Array(text.utf8))
        guard !normalized.isEmpty else { return [] }
        let path = model.kind == .unigram ? unigramPieces(normalized) : bytePairPieces(normalized)
        var ids: [Int] = []
        ids.reserveCapacity(path.count)
        var previousUnknown = false
        for (piece, range) in path {
            let unknown = piece == model.unknownID
            if unknown && model.byteFallback {
                for b in normalized[range] { ids.append(model.ids[SentencePieceModel.bytePiece(b)] ?? model.unknownID) }
            } else if !(unknown && previousUnknown) {
                ids.append(piece)  // a run of unknown characters is one unknown piece
            }
            previousUnknown = unknown
        }
        return ids
    }

    /// The unigram model's best segmentation of `normalized`: each piece's id and bytes, in order.
    private func unigramPieces(_ normalized: [UInt8]) -> [(Int, Range<Int>)] {
        // A user-defined piece gets a bonus so it is always chosen; unused pieces are never chosen. Sums and
        // comparisons are in float, as the library's scores are.
        unigramViterbi(normalized, trie: pieces, unknown: (model.unknownID, minScore - 10)) { piece, length -> Float? in
            switch model.pieces[piece].type {
            case .unused: return nil
            case .userDefined: return Float(Double(Float(length) * maxScore) - 0.1)
            default: return model.pieces[piece].score
            }
        }
    }

    /// BPE over `normalized`: characters (user-defined pieces whole and never merged), then repeatedly the adjacent
    /// pair whose union is the highest-scoring piece (the leftmost on a tie) merged; a merged piece marked unused is
    /// split back into what it was merged from. Each piece's id (the unknown id when not in the vocabulary) and bytes.
    func bytePairPieces(_ normalized: [UInt8]) -> [(Int, Range<Int>)] {
        struct Symbol { var prev: Int, next: Int, range: Range<Int>, frozen: Bool }
        var symbols: [Symbol] = []
        var i = 0
        while i < normalized.count {
            let longest = userDefinedLength(normalized, at: i)
            let length = longest > 0 ? longest : min(Self.oneCharLength(normalized[i]), normalized.count - i)
            symbols.append(Symbol(prev: symbols.count - 1, next: i + length < normalized.count ? symbols.count + 1 : -1,
                                  range: i..<(i + length), frozen: longest > 0))
            i += length
        }
        struct Pair: HeapElement {
            var score: Float, left: Int, right: Int, size: Int
            // The highest score first, the leftmost on a tie (sentencepiece's order).
            static func precedes(_ a: Self, _ b: Self) -> Bool { a.score > b.score || (a.score == b.score && a.left < b.left) }
        }
        var agenda = BinaryHeap<Pair>()
        var unmerge: [[UInt8]: (Range<Int>, Range<Int>)] = [:]
        func consider(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0, !symbols[left].frozen, !symbols[right].frozen else { return }
            let range = symbols[left].range.lowerBound..<symbols[right].range.upperBound
            guard let id = pieces.lookup(normalized[range]) else { return }
            agenda.push(.init(score: model.pieces[id].score, left: left, right: right, size: range.count))
            if model.pieces[id].type == .unused {
                unmerge[Array(normalized[range])] = (symbols[left].range, symbols[right].range)
            }
        }
        for k in symbols.indices.dropFirst() { consider(k - 1, k) }
        while let top = agenda.pop() {
            let (l, r) = (symbols[top.left], symbols[top.right])
            // A pair whose symbols changed since it was queued is stale.
            guard !l.range.isEmpty, !r.range.isEmpty, l.range.count + r.range.count == top.size,
                  l.range.upperBound == r.range.lowerBound else { continue }
            symbols[top.left].range = l.range.lowerBound..<r.range.upperBound
            symbols[top.left].next = r.next
            if r.next >= 0 { symbols[r.next].prev = top.left }
            symbols[top.right].range = r.range.lowerBound..<r.range.lowerBound
            consider(symbols[top.left].prev, top.left)
            consider(top.left, symbols[top.left].next)
        }
        var out: [(Int, Range<Int>)] = []
        func emit(_ range: Range<Int>) {
            let id = pieces.lookup(normalized[range]) ?? model.ids[Array(normalized[range])] ?? model.unknownID
            if model.pieces[id].type == .unused, let (a, b) = unmerge[Array(normalized[range])] {
                emit(a)
                emit(b)
            } else {
                out.append((id, range))
            }
        }
        var k = symbols.isEmpty ? -1 : 0
        while k >= 0 {
            emit(symbols[k].range)
            k = symbols[k].next
        }
        return out
    }

    /// tokenizers' `Precompiled` normalizer over `text` (what the XLM-RoBERTa and NLLB tokenizers run, where the
    /// `sentencepiece` library runs `normalize`): each grapheme cluster shorter than 6 bytes replaced whole by the
    /// map's *shortest* rule matching at its start, else each of its characters by a rule matching it whole.
    func precompiledGraphemes(_ text: String) throws(TokenizerError) -> [Unicode.Scalar] {
        guard !model.normalizer.trie.isEmpty else { return Array(text.unicodeScalars) }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for grapheme in text {
            let bytes = Array(grapheme.utf8)
            if bytes.count < 6, let (offset, _) = longestRule(bytes, at: 0, shortest: true) {
                out += try replacement(at: offset)
                continue
            }
            for scalar in grapheme.unicodeScalars {
                let character = Array(String(scalar).utf8)
                if let (offset, length) = longestRule(character, at: 0, shortest: true), length == character.count {
                    out += try replacement(at: offset)
                } else {
                    out += character
                }
            }
        }
        return Array(String(decoding: out, as: UTF8.self).unicodeScalars)
    }

    /// The normalizer's output for `input`'s UTF-8 bytes (`▁` for spaces when escaping).
    func normalize(_ input: [UInt8]) throws(TokenizerError) -> [UInt8] {
        let spec = model.normalizer
        let space: [UInt8] = [0xE2, 0x96, 0x81]
        var i = 0
        if spec.removeExtraWhitespaces {
            while i < input.count {
                let (replacement, length) = try normalizedPrefix(input, at: i)
                guard replacement.elementsEqual([0x20]) else { break }
                i += length
            }
        }
        guard i < input.count else { return [] }
        var out: [UInt8] = []
        out.reserveCapacity(input.count * 3)
        let whitespace = spec.escapeWhitespaces ? space : [0x20]
        if !model.treatWhitespaceAsSuffix && spec.addDummyPrefix { out += whitespace }
        var previousSpace = spec.removeExtraWhitespaces
        while i < input.count {
            let (replacement, length) = try normalizedPrefix(input, at: i)
            var piece = replacement[...]
            while previousSpace, piece.first == 0x20 { piece = piece.dropFirst() }
            if !piece.isEmpty {
                for b in piece {
                    if spec.escapeWhitespaces && b == 0x20 { out += space } else { out.append(b) }
                }
                previousSpace = piece.last == 0x20
            }
            i += length
            if !spec.removeExtraWhitespaces { previousSpace = false }
        }
        if spec.removeExtraWhitespaces {
            while out.count >= whitespace.count, out.suffix(whitespace.count).elementsEqual(whitespace) {
                out.removeLast(whitespace.count)
            }
        }
        if model.treatWhitespaceAsSuffix && spec.addDummyPrefix { out += whitespace }
        return out
    }

    /// The normalized form of the longest rule matching at `i` and the bytes it consumes: a user-defined piece as
    /// it is, else the precompiled map's longest match, else one character unchanged (a malformed byte as U+FFFD).
    private func normalizedPrefix(_ input: [UInt8], at i: Int) throws(TokenizerError) -> ([UInt8], Int) {
        let longest = userDefinedLength(input, at: i)
        if longest > 0 { return (Array(input[i..<(i + longest)]), longest) }
        let spec = model.normalizer
        if !spec.trie.isEmpty, let (offset, length) = longestRule(input, at: i) {
            return (try replacement(at: offset), length)
        }
        let length = Self.validCharLength(input, at: i)
        if length == 0 { return ([0xEF, 0xBF, 0xBD], 1) }
        return (Array(input[i..<(i + length)]), length)
    }

    /// The precompiled map's replacement text starting at `offset` (up to its NUL).
    func replacement(at offset: Int) throws(TokenizerError) -> [UInt8] {
        let spec = model.normalizer
        guard offset < spec.replacements.count else {
            throw .malformedData(file: model.origin, line: 0, message: "the precompiled character map points at byte \(offset) of its \(spec.replacements.count) replacement bytes")
        }
        return Array(spec.replacements[offset...].prefix { $0 != 0 })
    }

    /// The length of the longest user-defined piece starting at `i` (0 when none does): such pieces are neither
    /// normalized nor split.
    private func userDefinedLength(_ bytes: [UInt8], at i: Int) -> Int {
        var node = 0, longest = 0, end = i
        while end < bytes.count, let next = userDefined.child(node, bytes[end]) {
            node = next
            end += 1
            if userDefined.value(node) != nil { longest = end - i }
        }
        return longest
    }

    /// Darts-clone's common-prefix search of the precompiled map from `i` (up to `limit`): the longest match's
    /// value and length, or with `shortest` the first match's.
    func longestRule(_ input: [UInt8], at i: Int, limit: Int? = nil, shortest: Bool = false) -> (Int, Int)? {
        let units = model.normalizer.trie
        func offset(_ u: UInt32) -> Int { Int((u >> 10) << ((u & (1 << 9)) >> 6)) }
        var best: (Int, Int)?
        var pos = offset(units[0])
        var k = i
        while k < (limit ?? input.count) {
            pos ^= Int(input[k])
            guard pos >= 0, pos < units.count else { break }
            let unit = units[pos]
            guard unit & ((1 << 31) | 0xFF) == UInt32(input[k]) else { break }
            pos ^= offset(unit)
            k += 1
            if (unit >> 8) & 1 == 1 {
                guard pos < units.count else { break }
                best = (Int(units[pos] & ((1 << 31) - 1)), k - i)
                if shortest { return best }
            }
        }
        return best
    }

    /// sentencepiece's `OneCharLen`: the length a UTF-8 lead byte announces.
    static func oneCharLength(_ b: UInt8) -> Int {
        switch b >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// The length of the valid UTF-8 character at `i` (sentencepiece's `DecodeUTF8`), or 0 when malformed.
    private static func validCharLength(_ s: [UInt8], at i: Int) -> Int {
        let b0 = UInt32(s[i]), left = s.count - i
        func trail(_ k: Int) -> UInt32? { s[i + k] & 0xC0 == 0x80 ? UInt32(s[i + k] & 0x3F) : nil }
        func valid(_ c: UInt32) -> Bool { c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF) }
        if b0 < 0x80 { return 1 }
        if left >= 2, b0 & 0xE0 == 0xC0, let t1 = trail(1) {
            let c = (b0 & 0x1F) << 6 | t1
            return c >= 0x80 && valid(c) ? 2 : 0
        }
        if left >= 3, b0 & 0xF0 == 0xE0, let t1 = trail(1), let t2 = trail(2) {
            let c = (b0 & 0x0F) << 12 | t1 << 6 | t2
            return c >= 0x800 && valid(c) ? 3 : 0
        }
        if left >= 4, b0 & 0xF8 == 0xF0, let t1 = trail(1), let t2 = trail(2), let t3 = trail(3) {
            let c = (b0 & 0x07) << 18 | t1 << 12 | t2 << 6 | t3
            return c >= 0x10000 && valid(c) ? 4 : 0
        }
        return 0
    }
}

/// open_clip's text cleaning before a Hugging Face or SentencePiece tokenizer: `whitespace` (ftfy-style fixing, HTML
/// unescaped twice, stripped, runs of whitespace one space) and `canonicalize` (also `_` as a space, ASCII
/// punctuation removed, lower-cased).
struct OpenCLIPCleaner: Sendable {
    let characters: CharacterData, html: HTMLUnescaper, fixer: TextFixer

    init() throws(TokenizerError) {
        html = try HTMLUnescaper()
        (characters, fixer) = (try CharacterData.shared.get(), try TextFixer(html: html))
    }

    func clean(_ text: String, canonicalize: Bool) -> String {
        var t = fixer.fixText(text)
        t = html.unescape(html.unescape(t))
        var s = characters.pythonStrip(Array(t.unicodeScalars))
        if canonicalize {
            s = s.compactMap { c in
                if c == "_" { return " " }
                return c.value < 0x80 && Self.punctuation.contains(UInt8(c.value)) ? nil : c
            }
            s = characters.pythonLower(s)
        }
        // " ".join(text.split()): runs of Python whitespace become one space, none at either end.
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for c in s {
            if characters.flags(c.value) & CharacterData.pythonSpace != 0 {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(c)
            }
        }
        return String(out)
    }

    /// Python's `string.punctuation`.
    private static let punctuation = Set(Array("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".utf8))
}

/// The best segmentation of `normalized` under a unigram vocabulary, as both the `sentencepiece` library
/// (`EncodeOptimized`) and Hugging Face's tokenizers (`encode_optimized`) compute it: for each byte position the
/// best-scoring path ending there, extended by every piece of `trie` starting at each character boundary (`score`
/// gives a piece's score given its byte length, nil for a piece never chosen), or by one unknown character when no
/// single-character piece starts there. Ties keep the path found first, whose last piece starts earliest. `S` is
/// the arithmetic: the library's float, or tokenizers' double. Returns each piece's id and bytes, in order.
func unigramViterbi<S: BinaryFloatingPoint>(_ normalized: [UInt8], trie: PieceTrie, unknown: (id: Int, score: S),
                                            score: (_ piece: Int, _ length: Int) -> S?) -> [(Int, Range<Int>)] {
    let n = normalized.count
    // The best path ending at each byte position: its score, where its last piece starts, and that piece's id.
    var best = [S](repeating: 0, count: n + 1)
    var start = [Int](repeating: -1, count: n + 1)
    var id = [Int](repeating: -1, count: n + 1)
    func offer(_ end: Int, _ candidate: S, from s: Int, _ piece: Int) {
        if start[end] == -1 || candidate > best[end] { (best[end], start[end], id[end]) = (candidate, s, piece) }
    }
    var s = 0
    while s < n {
        let here = best[s]
        let charLength = min(SentencePieceTokenizer.oneCharLength(normalized[s]), n - s)
        var hasSingle = false
        var node = 0, end = s
        while end < n, let next = trie.child(node, normalized[end]) {
            node = next
            end += 1
            guard let piece = trie.value(node), let pieceScore = score(piece, end - s) else { continue }
            offer(end, pieceScore + here, from: s, piece)
            if end - s == charLength { hasSingle = true }
        }
        if !hasSingle { offer(s + charLength, unknown.score + here, from: s, unknown.id) }
        s += charLength
    }
    var path: [(Int, Range<Int>)] = []
    var end = n
    while end > 0 {
        path.append((id[end], start[end]..<end))
        end = start[end]
    }
    return path.reversed()
}

/// A byte trie over pieces: children in one hash table keyed by (node, byte), so a 256,000-piece vocabulary costs
/// one entry per distinct prefix rather than a table per node.
struct PieceTrie: Sendable {
    private var children: [UInt64: Int32] = [:]
    private var values: [Int32] = [-1]

    init(_ entries: [([UInt8], Int)]) {
        for (bytes, id) in entries {
            var node = 0
            for b in bytes {
                let key = UInt64(node) << 8 | UInt64(b)
                if let next = children[key] {
                    node = Int(next)
                } else {
                    values.append(-1)
                    children[key] = Int32(values.count - 1)
                    node = values.count - 1
                }
            }
            values[node] = Int32(id)
        }
    }

    func child(_ node: Int, _ byte: UInt8) -> Int? { children[UInt64(node) << 8 | UInt64(byte)].map(Int.init) }
    func value(_ node: Int) -> Int? { values[node] >= 0 ? Int(values[node]) : nil }

    /// The id of the piece spelled exactly by `bytes`.
    func lookup(_ bytes: ArraySlice<UInt8>) -> Int? {
        var node = 0
        for b in bytes {
            guard let next = child(node, b) else { return nil }
            node = next
        }
        return value(node)
    }
}
