/// What a model's text tower needs from a tokenizer: texts as rows of ids of one length. CLIP's byte-level BPE
/// (`CLIPTokenizer`) and SigLIP's SentencePiece (`SentencePieceTokenizer`) both provide it.
public protocol TextTokenizer: Sendable {
    /// One row of `contextLength` ids per text, padded as the model was trained; a text that does not fit is cut
    /// when `truncate`, else an error naming it.
    func tokenize(_ texts: [String], contextLength: Int, truncate: Bool) throws(TokenizerError) -> [[Int]]
    /// The text as the tokenizer sees it after its cleaning.
    func cleanedText(_ text: String) -> String
    /// Number of ids the tokenizer can produce.
    var vocabularySize: Int { get }
}

extension CLIPTokenizer: TextTokenizer {}

/// The ids of `text` with the special tokens written in it kept whole, as Hugging Face tokenizers' added vocabulary
/// splits text before its normalizer sees it: at each position the longest special token starting there becomes
/// its id, and the text between them is encoded by `encode`. A token in `lstrip` (RoBERTa's `<mask>`) takes the
/// whitespace before it.
func encodingSpecialTokens<E: Error>(_ text: String, _ specials: [(bytes: [UInt8], id: Int)], lstrip: Set<Int> = [],
                                     _ encode: (ArraySlice<UInt8>) throws(E) -> [Int]) throws(E) -> [Int] {
    var ids: [Int] = []
    let bytes = Array(text.utf8)
    let firstBytes = Set(specials.compactMap(\.bytes.first))
    var segmentStart = 0, i = 0
    while i < bytes.count {
        guard firstBytes.contains(bytes[i]),
              let special = specials.filter({ bytes[i...].starts(with: $0.bytes) }).max(by: { $0.bytes.count < $1.bytes.count }) else {
            i += 1
            continue
        }
        var segmentEnd = i
        if lstrip.contains(special.id) {
            // Whole scalars with Unicode's White_Space property, as Rust's char::is_whitespace in tokenizers (U+3000
            // and U+00A0 go, U+200B stays).
            while segmentEnd > segmentStart {
                var start = segmentEnd - 1
                while start > segmentStart, bytes[start] & 0xC0 == 0x80 { start -= 1 }
                var decoder = UTF8()
                var iterator = bytes[start..<segmentEnd].makeIterator()
                guard case .scalarValue(let scalar) = decoder.decode(&iterator), scalar.properties.isWhitespace else { break }
                segmentEnd = start
            }
        }
        ids += try encode(bytes[segmentStart..<segmentEnd])
        ids.append(special.id)
        i += special.bytes.count
        segmentStart = i
    }
    ids += try encode(bytes[segmentStart...])
    return ids
}

/// One row of `contextLength` ids per text: `start`, the text's ids, `end`, then `padding`, as the Hugging Face and
/// SentencePiece tokenizers' callers in open_clip write them. A text whose ids do not fit keeps its first ones when
/// `truncate` (as the reference truncates), else is an error naming it.
func paddedRows(_ texts: [String], contextLength: Int, truncate: Bool, start: [Int], end: Int, padding: Int,
                encode: (String) throws(TokenizerError) -> [Int]) throws(TokenizerError) -> [[Int]] {
    let framing = start.count + 1
    guard contextLength >= framing, contextLength <= CLIPTokenizer.maximumContextLength else {
        throw .invalidContextLength(contextLength)
    }
    var rows: [[Int]] = []
    rows.reserveCapacity(texts.count)
    for (index, text) in texts.enumerated() {
        var ids = try encode(text)
        if ids.count + framing > contextLength {
            guard truncate else { throw .textTooLong(index: index, tokens: ids.count + framing, contextLength: contextLength) }
            ids.removeLast(ids.count + framing - contextLength)
        }
        var row = start + ids + [end]
        row += [Int](repeating: padding, count: contextLength - row.count)
        rows.append(row)
    }
    return rows
}
