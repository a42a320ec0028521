import CLIPTokenizer
import Foundation
import Testing

struct CorpusEntry: Decodable {
    let category: String
    let text: String
    let ids: [Int]
    let row: [Int]?
}

func loadCorpus(_ name: String) throws -> [CorpusEntry] {
    let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "jsonl"))
    let data = try Data(contentsOf: url)
    let decoder = JSONDecoder()
    return try data.split(separator: UInt8(ascii: "\n")).map { try decoder.decode(CorpusEntry.self, from: Data($0)) }
}

func escaped(_ s: String) -> String {
    s.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
}

@Test func goldenCorpusMatchesReferenceExactly() throws {
    let tokenizer = try CLIPTokenizer.shared()
    let corpus = try loadCorpus("golden")
    #expect(corpus.count >= 2000)
    var failures: [String] = []
    for e in corpus {
        let ids = tokenizer.encode(e.text)
        if ids != e.ids { failures.append("[\(e.category)] \(escaped(e.text)): got \(ids.prefix(20)) expected \(e.ids.prefix(20))") }
        if let row = e.row {
            #expect(try tokenizer.tokenize([e.text], truncate: true)[0] == row, "truncated row of \(escaped(e.text))")
        }
    }
    #expect(failures.isEmpty, "\(failures.count) of \(corpus.count) differ:\n\(failures.prefix(25).joined(separator: "\n"))")
}

@Test func fuzzCorpusMatchesReference() throws {
    let tokenizer = try CLIPTokenizer.shared()
    let corpus = try loadCorpus("fuzz")
    #expect(corpus.count >= 10_000)
    var failures: [String] = []
    for e in corpus where tokenizer.encode(e.text) != e.ids {
        failures.append(escaped(e.text))
    }
    let rate = 1 - Double(failures.count) / Double(corpus.count)
    // The documented remaining differences (docs/tokenizer.md) must stay under 0.1 %.
    #expect(rate >= 0.999, "\(failures.count) differ (\(rate * 100) % identical):\n\(failures.prefix(20).joined(separator: "\n"))")
}

/// A large local corpus (`python Scripts/fixtures/make_tokenizer_fixtures.py --stress FILE`), checked when
/// `CLIP_TOKENIZER_CORPUS` names it; prints every difference.
@Test(.enabled(if: ProcessInfo.processInfo.environment["CLIP_TOKENIZER_CORPUS"] != nil))
func stressCorpusMatchesReference() throws {
    let path = try #require(ProcessInfo.processInfo.environment["CLIP_TOKENIZER_CORPUS"])
    let tokenizer = try CLIPTokenizer.shared()
    let decoder = JSONDecoder()
    let lines = try Data(contentsOf: URL(fileURLWithPath: path)).split(separator: UInt8(ascii: "\n"))
    var failures = 0
    for line in lines {
        let e = try decoder.decode(CorpusEntry.self, from: Data(line))
        if tokenizer.encode(e.text) != e.ids {
            failures += 1
            if failures <= 30 { print("DIFF \(escaped(e.text)) => \(escaped(tokenizer.cleanedText(e.text)))") }
        }
    }
    print("stress corpus: \(lines.count - failures) of \(lines.count) identical")
    #expect(Double(failures) / Double(lines.count) <= 0.001)
}
