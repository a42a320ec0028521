import CLIPTokenizer
import Foundation
import Testing

// SentencePiece against the `sentencepiece` library (Scripts/fixtures/make_sentencepiece_fixtures.py): unigram and BPE
// models written by its own trainer in the configurations SigLIP-family tokenizers use (T5's and Gemma's), some with
// pieces marked unused, on the CLIP tokenizer's 12,142 corpus strings. Encoding must be identical for every string.

let sentencePieceDirectory: String = {
    let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)
    return (url?.path ?? "Tests/CLIPTokenizerTests/Fixtures") + "/sentencepiece"
}()

/// The golden and fuzz corpus strings, in the generator's order.
func corpusTexts() throws -> [String] {
    try loadCorpus("golden").map(\.text) + loadCorpus("fuzz").map(\.text)
}

func jsonLines(_ path: String) throws -> [[Int]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode([Int].self, from: Data($0)) }
}

/// `ours` of each text against the generator's line for it in `path`, the differing strings named (the first 20).
func expectIdentical(_ texts: [String], _ path: String, _ ours: (String) throws -> [Int]) throws {
    let expected = try jsonLines(path)
    #expect(texts.count == expected.count)
    var failures: [String] = []
    for (text, ids) in zip(texts, expected) {
        let got = try ours(text)
        if got != ids { failures.append("\(escaped(text)): got \(got.prefix(20)) expected \(ids.prefix(20))") }
    }
    #expect(failures.isEmpty, "\(failures.count) of \(texts.count) differ:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test("SentencePiece encodes every corpus string as the sentencepiece library does",
      arguments: ["unigram_nfkc", "unigram_bytes", "unigram_unused", "bpe_bytes", "bpe_unused"])
func sentencePieceMatchesLibrary(_ name: String) throws {
    let tokenizer = try SentencePieceTokenizer(contentsOf: "\(sentencePieceDirectory)/\(name).model", cleaning: .none)
    let texts = try corpusTexts()
    let expected = try jsonLines("\(sentencePieceDirectory)/\(name).ids.jsonl")
    #expect(texts.count == expected.count && texts.count >= 12_000)
    var failures: [String] = []
    for (text, ids) in zip(texts, expected) {
        let ours = try tokenizer.encode(text)
        if ours != ids { failures.append("\(escaped(text)): got \(ours.prefix(16)) expected \(ids.prefix(16))") }
    }
    #expect(failures.isEmpty, "\(failures.count) of \(texts.count) differ:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test("SigLIP rows: open_clip's canonicalize cleaning, the end token, truncation and padding (</s> for SigLIP's T5-style vocabulary, <pad> for SigLIP 2's Gemma-style one)",
      arguments: [("unigram_nfkc", "siglip_rows"), ("bpe_bytes", "siglip2_rows")])
func sigLIPRowsMatchOpenCLIP(_ model: String, _ rows: String) throws {
    let tokenizer = try SentencePieceTokenizer.sigLIP(contentsOf: "\(sentencePieceDirectory)/\(model).model")
    let texts = try corpusTexts()
    let expected = try jsonLines("\(sentencePieceDirectory)/\(rows).jsonl")
    var failures: [String] = []
    for (text, row) in zip(texts, expected) {
        let ours = try tokenizer.tokenize([text], contextLength: 16, truncate: true)[0]
        if ours != row { failures.append("\(escaped(text)): got \(ours) expected \(row)") }
    }
    // Every row identical (the ftfy-style fixer's rare differences from ftfy, docs/tokenizer.md, do not reach
    // these rows once punctuation is removed).
    #expect(failures.isEmpty, "\(failures.count) of \(texts.count) differ:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test func sigLIPRowsEndWithTheEndTokenAndRefuseOverlongTextsUnlessTruncating() throws {
    let tokenizer = try SentencePieceTokenizer(contentsOf: "\(sentencePieceDirectory)/unigram_nfkc.model")
    let long = String(repeating: "a photo of a dog ", count: 20)
    #expect(throws: TokenizerError.textTooLong(index: 1, tokens: try tokenizer.encode("a photo of a dog " + long).count + 0 + 1 - 5, contextLength: 16)) {
        _ = try tokenizer.tokenize(["a dog", long], contextLength: 16, truncate: false)
    }
    let rows = try tokenizer.tokenize(["", "A Dog!", long], contextLength: 16, truncate: true)
    #expect(rows.allSatisfy { $0.count == 16 })
    #expect(rows[0] == [Int](repeating: tokenizer.endOfText, count: 16))
    #expect(rows[1] == (try tokenizer.encode("a dog")) + [Int](repeating: tokenizer.endOfText, count: 16 - (try tokenizer.encode("a dog")).count))
    #expect(rows[2].last == tokenizer.endOfText)
    #expect(tokenizer.cleanedText("  Hello,   WORLD_wide!! ") == "hello world wide")
}

@Test("Hostile model files are refused with the reason", arguments: [
    ("empty", [UInt8]()),
    ("truncated varint", [0x0A, 0x85]),
    ("length past the end", [0x0A, 0x7F, 0x0A]),
    ("unknown wire type", [0x0B]),
    ("no pieces", [0x12, 0x00]),
])
func hostileSentencePieceModels(_ name: String, _ bytes: [UInt8]) {
    #expect(throws: TokenizerError.self, "\(name)") { try SentencePieceModel(bytes: bytes, origin: name) }
}

@Test func sentencePieceRefusesModelsItDoesNotImplement() throws {
    let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(sentencePieceDirectory)/unigram_nfkc.model")))
    // A trainer spec saying "word" (field 3 = 3), appended: protobuf lets the last value win.
    let word = data + [0x12, 0x02, 0x18, 0x03]
    #expect(throws: TokenizerError.self) { _ = try SentencePieceModel(bytes: word, origin: "word.model") }
    do { _ = try SentencePieceModel(bytes: word, origin: "word.model") } catch { #expect("\(error)".contains("word model")) }
    // A second unknown piece.
    let twoUnknown = data + [0x0A, 0x07, 0x0A, 0x03] + Array("zzz".utf8) + [0x18, 0x02]
    do {
        _ = try SentencePieceModel(bytes: twoUnknown, origin: "unk.model")
        Issue.record("a second unknown piece was accepted")
    } catch { #expect("\(error)".contains("unknown piece")) }
}

/// The strings after the corpus in `xlmr/ids.jsonl` (Scripts/fixtures/make_sentencepiece_fixtures.py's `XLMR_EXTRA`).
let xlmRobertaExtra = ["x <s> y </s>", "<mask>zz <pad><unk>", "a\u{2581}b\u{2581}", "\u{2581}\u{2581}lead", "\u{FF1C}s\u{FF1E} fullwidth",
                       "e\u{301} \u{FB01}\u{301} x", "\u{FF76}\u{FF9E}", "tab\tand\u{3000}ideographic\u{A0}nbsp", "<s", "</s>"]

/// MetaCLIP 2's tokenizer kind (XLM-RoBERTa over a SentencePiece unigram model) against open_clip's HFTokenizer,
/// which runs it through transformers and tokenizers: the ids of every cleaned string, and the rows of 16.
@Test("XLM-RoBERTa: ids and rows identical to open_clip's HFTokenizer on every corpus string",
      arguments: ["ids", "rows"])
func xlmRobertaMatchesOpenCLIP(_ kind: String) throws {
    let tokenizer = try XLMRobertaTokenizer(contentsOf: "\(sentencePieceDirectory)/xlmr/sentencepiece.bpe.model")
    #expect(tokenizer.vocabularySize == 3002)
    try expectIdentical(try corpusTexts() + xlmRobertaExtra, "\(sentencePieceDirectory)/xlmr/\(kind).jsonl") { text in
        kind == "ids" ? try tokenizer.encode(tokenizer.cleanedText(text)) : try tokenizer.tokenize([text], contextLength: 16, truncate: true)[0]
    }
}

@Test func xlmRobertaRowsAndRefusals() throws {
    let tokenizer = try XLMRobertaTokenizer(contentsOf: "\(sentencePieceDirectory)/xlmr/sentencepiece.bpe.model")
    let rows = try tokenizer.tokenize(["", "a dog"], contextLength: 8, truncate: false)
    #expect(rows[0] == [0, 2, 1, 1, 1, 1, 1, 1])
    #expect(rows[1].first == 0 && rows[1].contains(2) && rows[1].last == 1)
    let long = String(repeating: "a photo of a dog ", count: 20)
    #expect(throws: TokenizerError.self) { _ = try tokenizer.tokenize([long], contextLength: 16, truncate: false) }
    #expect(try tokenizer.tokenize([long], contextLength: 16, truncate: true)[0].last == 2)
    #expect(throws: TokenizerError.self) { _ = try tokenizer.tokenize(["a"], contextLength: 1, truncate: true) }
    // SigLIP's T5-style model puts </s> at 1 and has user-defined pieces; Gemma's is BPE: neither is XLM-R's layout.
    for name in ["unigram_nfkc", "bpe_bytes"] {
        #expect(throws: TokenizerError.self) { _ = try XLMRobertaTokenizer(contentsOf: "\(sentencePieceDirectory)/\(name).model") }
    }
}

/// The strings after the corpus in `wordpiece/ids.jsonl` (Scripts/fixtures/make_wordpiece_fixtures.py's `WORDPIECE_EXTRA`).
let wordPieceExtra = ["x [CLS] y [SEP]", "[mask] [MASK]z [PAD][UNK]", "Héllo wörld ÅNGSTRÖM", "日本語のテキスト 中文",
                      String(repeating: "x", count: 101), String(repeating: "x", count: 100), "don't-stop e.g. U.S.A.",
                      "\u{1F970} \u{1FAE8} face \u{E3F}\u{20C0}", "İstanbul ǅ ß", "tab\tnew\nline\u{A0}nbsp\u{200B}zero\u{2028}sep"]

/// CLIPA's tokenizer kind (BERT's WordPiece, lower-casing) against open_clip's HFTokenizer with `strip_sep_token`,
/// which runs it through transformers and tokenizers: the ids of every cleaned string, and the rows of 16.
@Test("WordPiece: ids and CLIPA rows identical to open_clip's HFTokenizer on every corpus string",
      arguments: ["ids", "rows"])
func wordPieceMatchesOpenCLIP(_ kind: String) throws {
    let directory = sentencePieceDirectory.replacingOccurrences(of: "/sentencepiece", with: "/wordpiece")
    let tokenizer = try WordPieceTokenizer(vocabulary: "\(directory)/vocab.txt")
    #expect(tokenizer.vocabularySize == 3000)
    try expectIdentical(try corpusTexts() + wordPieceExtra, "\(directory)/\(kind).jsonl") { text in
        kind == "ids" ? tokenizer.encode(tokenizer.cleanedText(text)) : try tokenizer.tokenize([text], contextLength: 16, truncate: true)[0]
    }
}
