import CLIP
import CLIPTokenizer
import Foundation

extension LoadedModel {
    /// The model's tokenizer: CLIP's BPE (the folder's own when it has one, OpenAI's otherwise), for SigLIP the
    /// SentencePiece model of its folder, for MetaCLIP 2 XLM-V's (`XLMRobertaTokenizer`), for CLIPA BERT's
    /// (`WordPieceTokenizer`), for `roberta-ViT-B-32` RoBERTa's (`GPT2BPETokenizer`), for NLLB-CLIP NLLB-200's
    /// (`NLLBTokenizer`, rows led by eng_Latn as open_clip's are by default). A vocabulary of its own is
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
        case .nllb:
            let file = try modelFile([Self.xlmRobertaFile], "this model is tokenized with NLLB-200's SentencePiece model, from the Hub repository its config's hf_tokenizer_name names: facebook/nllb-200-distilled-600M or -1.3B")
            let tokenizer = try NLLBTokenizer(contentsOf: file)
            // NLLB-200's embedding has two rows past <mask> (256,204 ids, 256,206 rows): another vocabulary's ids
            // would read other rows.
            let rows = model.configuration.text.vocabSize
            guard tokenizer.vocabularySize + 2 == rows else {
                throw .malformedData(file: file, line: 0, message: "gives \(tokenizer.vocabularySize) ids (its pieces, 202 language codes and <mask>); the NLLB text tower has \(rows) rows, two more than the ids of its own tokenizer")
            }
            return tokenizer
        case .wordPiece:
            let file = try modelFile([Self.wordPieceFile], "this model is tokenized with BERT's WordPiece vocabulary, from the Hub repository bert-base-uncased")
            return try WordPieceTokenizer(vocabulary: file)
        case .bertWordPiece:
            // A Hugging Face folder's own vocab.txt, never one from the folder's parent.
            let file = tokenizerFolder.map { $0 + "/" + Self.wordPieceFile }
            guard let file, FileManager.default.fileExists(atPath: file) else {
                throw .missingResource("\(Self.wordPieceFile) (this model is tokenized with its BERT WordPiece vocabulary; put it in its Hugging Face folder \(path))")
            }
            return try checkedBERTVocabulary(WordPieceTokenizer(vocabulary: file, rows: .bert))
        case .cnCLIPWordPiece:
            // cn_clip tokenizes with the vocabulary it ships whatever lies beside a checkpoint, so the bundled one
            // wins when it fits the text tower; another vocab.txt beside the weights only for another vocabulary size.
            if model.configuration.text.vocabSize == WordPieceTokenizer.chineseCLIPVocabularySize {
                return try WordPieceTokenizer.chineseCLIP(rows: .cnCLIP)
            }
            let file = try modelFile([Self.wordPieceFile], "this cn_clip model's text tower has \(model.configuration.text.vocabSize) rows, not Chinese-CLIP's 21,128: its BERT WordPiece vocabulary is needed")
            return try checkedBERTVocabulary(WordPieceTokenizer(vocabulary: file, rows: .cnCLIP))
        case .gpt2BPE:
            let file = try modelFile([GPT2BPETokenizer.files[0]], "this model is tokenized with RoBERTa's byte-level BPE (vocab.json and merges.txt), from the Hub repository roberta-base")
            return try GPT2BPETokenizer(folder: (file as NSString).deletingLastPathComponent)
        case .openAIBPE:
            if let tokenizerFolder { return try CLIPTokenizer(huggingFaceFolder: tokenizerFolder) }
            return try CLIPTokenizer.shared()
        }
    }

    /// A BERT vocabulary the text tower can use: as many entries as its embedding has rows, `[PAD]` at 0 (the id the
    /// tower masks).
    private func checkedBERTVocabulary(_ t: WordPieceTokenizer) throws(TokenizerError) -> WordPieceTokenizer {
        let rows = model.configuration.text.vocabSize
        guard t.vocabularySize == rows, t.padding == 0 else {
            throw .malformedData(file: t.origin, line: 0, message: "has \(t.vocabularySize) entries with [PAD] at \(t.padding); the text tower has \(rows) rows and masks id 0 as padding")
        }
        return t
    }
}
