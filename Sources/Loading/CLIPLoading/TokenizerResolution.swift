import CLIP
import CLIPTokenizer
import Foundation

extension LoadedModel {
    /// The model's tokenizer: CLIP's BPE (the folder's own when it has one, OpenAI's otherwise), for SigLIP the
    /// SentencePiece model of its folder, for MetaCLIP 2 XLM-V's (`XLMRobertaTokenizer`), for CLIPA BERT's
    /// (`WordPieceTokenizer`), for `roberta-ViT-B-32` RoBERTa's (`GPT2BPETokenizer`). A vocabulary of its own is
    /// never replaced by OpenAI's BPE, whose ids would index other rows: a missing file is an error naming it.
    public func tokenizer() throws(TokenizerError) -> any TextTokenizer {
        func modelFile(_ names: [String], _ description: String) throws(TokenizerError) -> String {
            let beside = (path as NSString).deletingLastPathComponent
            let file = [tokenizerFolder, beside].compactMap { $0 }
                .flatMap { folder in names.map { folder + "/" + $0 } }
                .first { FileManager.default.fileExists(atPath: $0) }
            guard let file else {
                throw .missingResource("\(names.joined(separator: " or ")) (\(description); put it beside the weights of \(path))")
            }
            return file
        }
        switch model.configuration.text.vocabulary {
        case .sentencePiece:
            let file = try modelFile(["spiece.model", "tokenizer.model"], "a SigLIP model is tokenized with its own SentencePiece model")
            return try SentencePieceTokenizer.sigLIP(contentsOf: file)
        case .xlmRoberta:
            let file = try modelFile([Self.xlmRobertaFile], "this model is tokenized with an XLM-RoBERTa SentencePiece model, from the Hub repository its config's hf_tokenizer_name names: facebook/xlm-v-base for MetaCLIP 2, xlm-roberta-base or -large")
            return try XLMRobertaTokenizer(contentsOf: file)
        case .wordPiece:
            let file = try modelFile([Self.wordPieceFile], "this model is tokenized with BERT's WordPiece vocabulary, from the Hub repository bert-base-uncased")
            return try WordPieceTokenizer(vocabulary: file)
        case .bertWordPiece, .cnCLIPWordPiece:
            let rows: WordPieceTokenizer.Rows = model.configuration.text.vocabulary == .cnCLIPWordPiece ? .cnCLIP : .bert
            // cn_clip's checkpoints hold no vocabulary: Chinese-CLIP's own (21,128 entries) is bundled.
            do {
                let file = try modelFile([Self.wordPieceFile], "this model is tokenized with its BERT WordPiece vocabulary (vocab.txt, in its Hugging Face folder or beside its weights)")
                return try WordPieceTokenizer(vocabulary: file, rows: rows)
            } catch .missingResource(let what) {
                guard model.configuration.text.vocabSize == WordPieceTokenizer.chineseCLIPVocabularySize else {
                    throw .missingResource(what)
                }
                return try WordPieceTokenizer.chineseCLIP(rows: rows)
            }
        case .gpt2BPE:
            let file = try modelFile([GPT2BPETokenizer.files[0]], "this model is tokenized with RoBERTa's byte-level BPE (vocab.json and merges.txt), from the Hub repository roberta-base")
            return try GPT2BPETokenizer(folder: (file as NSString).deletingLastPathComponent)
        case .openAIBPE:
            if let tokenizerFolder { return try CLIPTokenizer(huggingFaceFolder: tokenizerFolder) }
            return try CLIPTokenizer.shared()
        }
    }
}
