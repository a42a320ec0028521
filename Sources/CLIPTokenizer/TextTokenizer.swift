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
