import CLIPTokenizer
import Testing

/// The strings after the corpus in `nllb/ids.jsonl` (Scripts/fixtures/make_nllb_fixtures.py's `NLLB_EXTRA`).
let nllbExtra = ["xeng_Latny", "eng_Latn", "a <mask> b", "a  <mask>", "</s>x", "a \u{A8} b", "two \u{FFFD}",
                 "\u{2581}lead and in\u{2581}side\u{2581}", "Eng_latn fra_Latn zho_Hans", "<s><pad><unk>", "\u{FF1C}mask\u{FF1E}",
                 Array(repeating: "word", count: 200).joined(separator: " "), "一只猫的照片", "صورة قطة على الطاولة",
                 "एक बिल्ली की तस्वीर", "🐱🐶 cat & dog 😀", "a\u{FFFD}<mask>", "\u{FE64}mask\u{FE65} x"]

private var nllbModel: String { "\(sentencePieceDirectory)/nllb/sentencepiece.bpe.model" }

/// NLLB-CLIP's tokenizer kind (NLLB-200's BPE over a SentencePiece model, language codes as special tokens) against
/// open_clip's HFTokenizer, which runs it through transformers' NllbTokenizer and tokenizers: the ids of every
/// cleaned string, the rows of 16 led by eng_Latn, and rows led by fra_Latn.
@Test("NLLB: ids and rows identical to open_clip's HFTokenizer on every corpus string, in English's and French's rows",
      arguments: ["ids", "rows", "rows_fra"])
func nllbMatchesOpenCLIP(_ kind: String) throws {
    let english = try NLLBTokenizer(contentsOf: nllbModel)
    // 3,000 pieces: <s> <pad> </s> <unk>, 2,997 pieces from id 4, 202 codes, <mask>.
    #expect(english.vocabularySize == 3_204 && english.language == "eng_Latn")
    let texts = kind == "rows_fra" ? nllbExtra + Array(try corpusTexts().prefix(300)) : try corpusTexts() + nllbExtra
    let tokenizer = kind == "rows_fra" ? try english.withLanguage("fra_Latn") : english
    try expectIdentical(texts, "\(sentencePieceDirectory)/nllb/\(kind).jsonl") { text in
        kind == "ids" ? try tokenizer.encode(tokenizer.cleanedText(text)) : try tokenizer.tokenize([text], contextLength: 16, truncate: true)[0]
    }
}

@Test("NLLB rows: the language code first, </s> last, <pad> after; codes and <mask> are tokens; unknown codes refused")
func nllbRowsAndRefusals() throws {
    let tokenizer = try NLLBTokenizer(contentsOf: nllbModel)
    let first = 3_001  // the first language code's id: after the 3,000 pieces shifted by one
    #expect(try tokenizer.tokenize([""], contextLength: 6, truncate: false)[0] == [first + 46, 2, 1, 1, 1, 1])
    #expect(NLLBTokenizer.languageCodes.count == 202 && NLLBTokenizer.languageCodes[46] == "eng_Latn")
    #expect(try tokenizer.encode("zul_Latn") == [first + 201])
    #expect(try tokenizer.encode("<mask>") == [first + 202])
    let long = String(repeating: "a photo of a dog ", count: 20)
    #expect(throws: TokenizerError.self) { _ = try tokenizer.tokenize([long], contextLength: 16, truncate: false) }
    #expect(try tokenizer.tokenize([long], contextLength: 16, truncate: true)[0].last == 2)
    #expect { _ = try tokenizer.withLanguage("english") } throws: { "\($0)".contains("'english' is not one of NLLB's 202 language codes") }
    #expect(throws: TokenizerError.unknownLanguage("fr")) { _ = try NLLBTokenizer(contentsOf: nllbModel, language: "fr") }
    // XLM-R's model is unigram, SigLIP's T5-style one has </s> at 1: neither is NLLB's layout.
    for name in ["xlmr/sentencepiece.bpe", "unigram_nfkc", "bpe_bytes"] {
        #expect(throws: TokenizerError.self) { _ = try NLLBTokenizer(contentsOf: "\(sentencePieceDirectory)/\(name).model") }
    }
}
