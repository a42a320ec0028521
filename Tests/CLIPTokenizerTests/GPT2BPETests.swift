import CLIPTokenizer
import Foundation
import Testing

// RoBERTa's tokenizer kind (GPT-2's byte-level BPE, fairseq's ids) against transformers' RobertaTokenizer as open_clip's
// HFTokenizer runs it for roberta-ViT-B-32 (Scripts/fixtures/make_gpt2_bpe_fixtures.py): a vocabulary trained by
// tokenizers and laid out as roberta-base's, the CLIP tokenizer's 12,142 corpus strings and the script's EXTRA ones.

let gpt2Directory: String = {
    let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil)
    return (url?.path ?? "Tests/CLIPTokenizerTests/Fixtures") + "/gpt2_bpe"
}()

/// The strings after the corpus in `gpt2_bpe/ids.jsonl` (the generator's `EXTRA`).
let gpt2Extra = ["x <s> y </s>", "a <mask> b", "a   <mask>b", "<mask>", "<s", "</s>x<pad><unk>", "it's I'M we'll they'VE 'd",
                 "hello     world", "tab\tand\nnewline", "1234 56.78 $9", "café naïve Ωmega 日本語 🙂", "  lead and trail  ",
                 "a'''s", "''", "x\u{A0}y\u{3000}z"]

@Test("GPT-2 BPE (RoBERTa): ids and rows identical to transformers' on every corpus string", arguments: ["ids", "rows"])
func gpt2BPEMatchesTransformers(_ kind: String) throws {
    let tokenizer = try GPT2BPETokenizer(folder: gpt2Directory)
    #expect(tokenizer.vocabularySize == 3000 && tokenizer.beginning == 0 && tokenizer.padding == 1 && tokenizer.end == 2)
    try expectIdentical(try corpusTexts() + gpt2Extra, "\(gpt2Directory)/\(kind).jsonl") { text in
        kind == "ids" ? tokenizer.encode(tokenizer.cleanedText(text)) : try tokenizer.tokenize([text], contextLength: 16, truncate: true)[0]
    }
}

@Test("GPT-2 BPE: rows, truncation and malformed files named")
func gpt2BPERowsAndRefusals() throws {
    let tokenizer = try GPT2BPETokenizer(folder: gpt2Directory)
    #expect(try tokenizer.tokenize([""], contextLength: 6, truncate: false)[0] == [0, 2, 1, 1, 1, 1])
    let long = String(repeating: "a photo of a dog ", count: 20)
    #expect(throws: TokenizerError.self) { _ = try tokenizer.tokenize([long], contextLength: 16, truncate: false) }
    #expect(try tokenizer.tokenize([long], contextLength: 16, truncate: true)[0].last == 2)
    let vocab = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(gpt2Directory)/vocab.json")))
    let merges = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(gpt2Directory)/merges.txt")))
    let cases: [(vocab: [UInt8], merges: [UInt8], named: String)] = [
        (Array("[1, 2]".utf8), merges, "vocab.json"),
        (Array("{\"<s>\": 0, \"</s>\": 2}".utf8), merges, "<pad>"),
        (vocab, merges + Array("\nzzqq xxyy\n".utf8), "merges.txt"),
        (Array("{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2, \"x\": -4}".utf8), merges, "-4"),
        (Array("{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 1}".utf8), merges, "twice"),
    ]
    for c in cases {
        #expect {
            _ = try GPT2BPETokenizer(vocabularyJSON: c.vocab, merges: c.merges, source: "bad")
        } throws: { "\($0)".contains(c.named) }
    }
}

@Test("GPT-2 BPE: a merge listed twice takes its last rank, as tokenizers' BPE builder does")
func gpt2BPERepeatedMergeTakesItsLastRank() throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: "\(gpt2Directory)/vocab.json"))
    var vocab = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Int])
    let next = (vocab.values.max() ?? 0) + 1
    vocab["qz"] = next
    vocab["zx"] = next + 1
    let json = [UInt8](try JSONSerialization.data(withJSONObject: vocab))
    // q z, z x, q z again: with the first rank "qzx" would merge q z first; with the last, z x (tokenizers 0.23.3
    // gives a, bc for the same pattern over "abc").
    let tokenizer = try GPT2BPETokenizer(vocabularyJSON: json, merges: Array("#version: 0.2\nq z\nz x\nq z\n".utf8), source: "test")
    #expect(tokenizer.encode("qzx") == [try #require(vocab["q"]), next + 1])
}

@Test("GPT-2 BPE: <mask> takes every Unicode whitespace before it, as tokenizers' lstrip does", arguments: [
    ("a\u{A0}<mask>b", [68, 2999, 69]), ("a \u{3000} <mask>b", [68, 2999, 69]), ("x\u{2003}\u{85}<mask>", [91, 2999]),
    ("a\u{200B}<mask>", [68, 558, 237, 2999]), ("a\u{1C}<mask>", [68, 220, 2999]), ("\u{1680}<mask>", [2999]),
])
func gpt2BPEMaskStripsUnicodeWhitespace(text: String, ids: [Int]) throws {
    // transformers 5.24.0's RobertaTokenizer over this folder with <mask> declared lstrip (as roberta-base's is), on
    // the text as given (no cleaning).
    #expect(try GPT2BPETokenizer(folder: gpt2Directory).encode(text) == ids)
}
