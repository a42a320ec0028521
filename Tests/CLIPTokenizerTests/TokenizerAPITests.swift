@testable import CLIPTokenizer
import Foundation
import Testing

let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path

@Test func tokenizeMatchesTheSeedExample() throws {
    // clip.tokenize(["a diagram", "a dog", "a cat"]) from the reference.
    let rows = try CLIPTokenizer.shared().tokenize(["a diagram", "a dog", "a cat"])
    #expect(rows.count == 3 && rows.allSatisfy { $0.count == 77 })
    #expect(Array(rows[0].prefix(4)) == [49406, 320, 22697, 49407])
    #expect(Array(rows[1].prefix(4)) == [49406, 320, 1929, 49407])
    #expect(Array(rows[2].prefix(4)) == [49406, 320, 2368, 49407])
    #expect(rows.allSatisfy { $0[4...].allSatisfy { $0 == 0 } })
}

@Test func tooLongTextNamesItsIndexAndLength() throws {
    let t = try CLIPTokenizer.shared()
    let long = String(repeating: "word ", count: 80)
    #expect(throws: TokenizerError.textTooLong(index: 1, tokens: 82, contextLength: 77)) {
        try t.tokenize(["short", long])
    }
    let row = try t.tokenize([long], truncate: true)[0]
    #expect(row.count == 77 && row[76] == t.endOfText && row[0] == t.startOfText)
    #expect(try t.tokenize(["a dog"], contextLength: 5)[0] == [49406, 320, 1929, 49407, 0])
    #expect(try t.tokenize(["a dog"], contextLength: 3, truncate: true)[0] == [49406, 320, 49407])
    #expect(throws: TokenizerError.invalidContextLength(1)) { try t.tokenize(["x"], contextLength: 1) }
    #expect(try t.tokenize([]).isEmpty)
}

struct DecodeCase: Decodable { let ids: [Int]; let text: String }

@Test func decodeMatchesReference() throws {
    let t = try CLIPTokenizer.shared()
    let cases = try JSONDecoder().decode([DecodeCase].self, from: Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/decode.json")))
    #expect(cases.count > 100)
    for c in cases {
        #expect(try t.decode(c.ids) == c.text, "ids \(c.ids)")
    }
    #expect(throws: TokenizerError.unknownTokenID(position: 1, id: 49408)) { try t.decode([320, 49408]) }
    #expect(throws: TokenizerError.unknownTokenID(position: 0, id: -1)) { try t.decode([-1]) }
}

@Test func cacheStaysBounded() throws {
    let t = try CLIPTokenizer(cacheCapacity: 100)
    for i in 0..<1000 { _ = t.encode("uniqueword\(i)x thing\(i * 7)") }
    #expect(t.cachedWordCount <= 100)
    // Results do not depend on the cache.
    let uncached = try CLIPTokenizer(cacheCapacity: 0)
    #expect(uncached.encode("a photo of a dog, again and again") == t.encode("a photo of a dog, again and again"))
    #expect(uncached.cachedWordCount == 0)
}

struct HFExpected: Decodable { let text: String; let ids: [Int] }

@Test func huggingFaceVocabularyFilesLoad() throws {
    let folder = "\(fixtures)/hf_small"
    let expected = try JSONDecoder().decode([HFExpected].self, from: Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/hf_small_expected.json")))
    let fromPair = try CLIPTokenizer(huggingFaceFolder: folder)
    #expect(fromPair.vocabularySize == 2514)
    for e in expected { #expect(fromPair.encode(e.text) == e.ids, "\(e.text)") }

    // The same vocabulary as a tokenizer.json (merges in both of the forms Hugging Face writes).
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clip-hf-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let vocab = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/vocab.json")))
    let merges = try String(contentsOfFile: "\(folder)/merges.txt", encoding: .utf8).split(separator: "\n")
        .filter { !$0.hasPrefix("#version") }.enumerated()
        .map { (i, m) -> Any in i % 2 == 0 ? String(m) : m.split(separator: " ").map(String.init) }
    let json = try JSONSerialization.data(withJSONObject: ["model": ["type": "BPE", "vocab": vocab, "merges": merges]])
    try json.write(to: dir.appendingPathComponent("tokenizer.json"))
    let fromJSON = try CLIPTokenizer(huggingFaceFolder: dir.path)
    for e in expected { #expect(fromJSON.encode(e.text) == e.ids, "\(e.text)") }
}

@Test func brokenHuggingFaceFilesAreReported() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clip-hf-bad-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    #expect(throws: TokenizerError.self) { try CLIPTokenizer(huggingFaceFolder: dir.path) }
    try Data("{not json".utf8).write(to: dir.appendingPathComponent("vocab.json"))
    try Data("a b\n".utf8).write(to: dir.appendingPathComponent("merges.txt"))
    do {
        _ = try CLIPTokenizer(huggingFaceFolder: dir.path)
        Issue.record("expected an error")
    } catch {
        #expect(error.description.contains("vocab.json"))
    }
    try Data(#"{"a": 0, "b": 0}"#.utf8).write(to: dir.appendingPathComponent("vocab.json"))
    #expect(throws: TokenizerError.self) { try CLIPTokenizer(huggingFaceFolder: dir.path) }
}

@Test func concurrentEncodingIsConsistent() async throws {
    let t = try CLIPTokenizer(cacheCapacity: 50)
    let texts = (0..<200).map { "caption number \($0) of a photo with a dog and café" }
    let expected = texts.map { t.encode($0) }
    await withTaskGroup(of: Bool.self) { group in
        for _ in 0..<4 {
            group.addTask { texts.enumerated().allSatisfy { t.encode($1) == expected[$0] } }
        }
        for await ok in group { #expect(ok) }
    }
}

@Test func longWordsMergeExactlyWithoutQuadraticScans() throws {
    let t = try CLIPTokenizer.shared()
    var state: UInt64 = 99
    func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
    // Long words from a small alphabet (many repeated and overlapping pairs) and from text-like letters.
    for trial in 0..<60 {
        let alphabet: [UInt8] = trial % 2 == 0 ? Array("ab".utf8) : Array("etaoinshrdlucmfwyp".utf8)
        let length = 65 + Int(next() % 400)
        let word = (0..<length).map { _ in alphabet[Int(next() % UInt64(alphabet.count))] }
        #expect(t.vocabulary.encodeWord(word, longWord: 64) == t.vocabulary.encodeWord(word, longWord: .max), "trial \(trial)")
    }
    // A 200 KB word finishes (the quadratic scanning loop would take hours on it).
    let huge = String(repeating: "abcdefghij", count: 20_000)
    let ids = t.encode(huge)
    #expect(!ids.isEmpty)
    #expect(try t.tokenize([huge], truncate: true)[0].count == 77)
}

/// A small vocabulary over CLIP's byte alphabet: the 512 byte symbols, `extra`, then the two special tokens.
private func smallVocabulary(extra: [String], merges: [Substring], dropping drop: String? = nil) throws(TokenizerError) -> Vocabulary {
    let base: [String] = Vocabulary.byteEncoder.map { String($0) }
    var tokens: [String] = base + base.map { $0 + "</w>" }
    tokens += extra + ["<|startoftext|>", "<|endoftext|>"]
    tokens.removeAll { $0 == drop }
    return try Vocabulary(tokens: tokens, mergeLines: merges, source: "vocab.json")
}

@Test("A vocabulary merges by its ranks, and names what is wrong with it", arguments: [
    ("", ""),
    ("a token listed twice", "token 'ab</w>' appears twice"),
    ("a merge of tokens it lacks", "vocab.json:2: merge 'a zz' names tokens that are not in the vocabulary"),
    ("a byte symbol it lacks", "lacks the byte symbol for 97"),
])
func vocabularyErrorsNameTheProblem(_ broken: String, _ message: String) throws {
    let extra = broken == "a token listed twice" ? ["ab</w>", "ab</w>"] : ["ab</w>"]
    let merges: [Substring] = broken == "a merge of tokens it lacks" ? ["a b</w>", "a zz"] : ["a b</w>"]
    do {
        let v = try smallVocabulary(extra: extra, merges: merges, dropping: broken == "a byte symbol it lacks" ? "a" : nil)
        #expect(message.isEmpty, "expected an error: \(message)")
        #expect(v.tokens.count == 515 && v.tokens.string(512) == "ab</w>" && v.startOfText == 513 && v.endOfText == 514)
        #expect(v.encodeWord(Array("ab".utf8)) == [512])
        #expect(v.encodeWord(Array("ba".utf8)).count == 2)
    } catch {
        #expect(!message.isEmpty && error.description.contains(message), "\(error.description)")
    }
}

@Test func tokenTableFindsEveryTokenByItsBytesAfterGrowing() {
    var table = TokenTable(capacity: 1, bytes: 0)
    let words = (0..<5_000).map { "t\($0)é" }
    for w in words {
        let added = table.append(Array(w.utf8))
        #expect(added)
    }
    let again = table.append(Array("t42é".utf8))
    #expect(!again)
    #expect(table.count == 5_000)
    for (i, w) in words.enumerated() where i % 7 == 0 {
        let bytes = Array(w.utf8)
        #expect(table.id(bytes) == i)
        let split = bytes.withUnsafeBufferPointer { table.id(Bytes(rebasing: $0[..<2]), Bytes(rebasing: $0[2...])) }
        #expect(split == i)  // found as a concatenation too
        #expect(table.string(i) == w)
    }
    #expect(table.id(Array("t5000é".utf8)) == nil)
}
