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
/// its id, and the text between them is encoded by `encode`.
func encodingSpecialTokens<E: Error>(_ text: String, _ specials: [(bytes: [UInt8], id: Int)],
                                     _ encode: (ArraySlice<UInt8>) throws(E) -> [Int]) throws(E) -> [Int] {
    var ids: [Int] = []
    let bytes = Array(text.utf8)
    var segmentStart = 0, i = 0
    while i < bytes.count {
        guard let special = specials.filter({ bytes[i...].starts(with: $0.bytes) }).max(by: { $0.bytes.count < $1.bytes.count }) else {
            i += 1
            continue
        }
        ids += try encode(bytes[segmentStart..<i])
        ids.append(special.id)
        i += special.bytes.count
        segmentStart = i
    }
    ids += try encode(bytes[segmentStart...])
    return ids
}
