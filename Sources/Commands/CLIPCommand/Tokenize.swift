import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPImage
import CLIPKit
import CLIPTokenizer
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print token ids as clip.tokenize returns them: a JSON array with one array per text.")

    @Option(help: "Ids per text, start and end tokens included; shorter texts are padded (with 0 for CLIP, </s> for SigLIP).")
    var contextLength = 77

    @Option(help: "A SentencePiece model file (SigLIP's spiece.model): tokenize as open_clip does for SigLIP (canonicalized text, </s>, padded with </s>; use --context-length 64) instead of with CLIP's BPE.")
    var sentencepiece: String?

    @Option(help: "An XLM-RoBERTa SentencePiece model (MetaCLIP 2's XLM-V sentencepiece.bpe.model): tokenize as open_clip does for MetaCLIP 2 (<s> … </s>, padded with <pad> 1).")
    var xlmRoberta: String?

    @Option(help: "A BERT WordPiece vocabulary (CLIPA's bert-base-uncased vocab.txt): tokenize as open_clip does for CLIPA ([CLS] …, [SEP] as 0, padded with [PAD]; use --context-length 32).")
    var wordpiece: String?

    @Option(help: "A folder holding RoBERTa's vocab.json and merges.txt (roberta-base's, for open_clip's roberta-ViT-B-32): tokenize as open_clip does for it (<s> … </s>, padded with <pad>).")
    var gpt2Bpe: String?

    @Option(help: "NLLB-200's SentencePiece model (sentencepiece.bpe.model of facebook/nllb-200-distilled-600M): tokenize as open_clip does for NLLB-CLIP (the language code, the pieces, </s>, padded with <pad> 1).")
    var nllb: String?

    @Option(help: "With --nllb: the language code each row starts with (one of FLORES-200's 202, as NllbTokenizer's src_lang; open_clip's rows always start with eng_Latn).")
    var language = "eng_Latn"

    @Flag(help: "Cut texts longer than the context (the last id becomes the end token) instead of failing.")
    var truncate = false

    @Flag(help: "Print the cleaned, lower-cased text each text is tokenized from, one JSON string per line (for debugging).")
    var showCleaned = false

    @Argument(help: "The texts.")
    var texts: [String] = []

    func run() throws {
        let tokenizer: any TextTokenizer
        guard [sentencepiece, xlmRoberta, wordpiece, gpt2Bpe, nllb].compactMap({ $0 }).count <= 1 else {
            throw ValidationError("--sentencepiece, --xlm-roberta, --wordpiece, --gpt2-bpe and --nllb name different tokenizers; give one")
        }
        guard nllb != nil || language == "eng_Latn" else { throw ValidationError("--language is NLLB's: give it with --nllb") }
        if let sentencepiece {
            tokenizer = try SentencePieceTokenizer(contentsOf: sentencepiece)
        } else if let xlmRoberta {
            tokenizer = try XLMRobertaTokenizer(contentsOf: xlmRoberta)
        } else if let wordpiece {
            tokenizer = try WordPieceTokenizer(vocabulary: wordpiece)
        } else if let nllb {
            guard NLLBTokenizer.languageCodes.contains(language) else {
                throw ValidationError("--language: \(TokenizerError.unknownLanguage(language))")
            }
            tokenizer = try NLLBTokenizer(contentsOf: nllb, language: language)
        } else if let gpt2Bpe {
            tokenizer = try GPT2BPETokenizer(folder: gpt2Bpe)
        } else {
            tokenizer = try CLIPTokenizer.shared()
        }
        if showCleaned {
            for t in texts { print(try jsonText(tokenizer.cleanedText(t))) }
            return
        }
        let rows: [[Int]]
        do { rows = try tokenizer.tokenize(texts, contextLength: contextLength, truncate: truncate) } catch {
            if case TokenizerError.invalidContextLength = error { throw ValidationError("--context-length: \(error)") }
            throw error
        }
        print(try jsonText(rows))
    }
}
