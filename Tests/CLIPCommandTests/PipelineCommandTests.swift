import CLIPKit
import CLIPTestSupport
import Foundation
import Testing

struct ClassifyRecord: Decodable { let image: String; let labels: [String]; let probs: [Float] }

func classifyJSON(_ extra: [String]) throws -> [ClassifyRecord] {
    let ref = try PipelineReference.load()
    let r = try runClip(["classify", "--model", tinyModel, "--json"] + ref.imagePaths + ["--labels"] + ref.labels + extra)
    #expect(r.status == 0, "\(r.stderr)")
    return try r.stdout.split(separator: "\n").map { try JSONDecoder().decode(ClassifyRecord.self, from: Data($0.utf8)) }
}

@Test("classify gives the reference probabilities", arguments: [
    ("verbatim", ["--template", "{}"]), ("default", []), ("imagenet", ["--template", "imagenet"]),
])
func classifyMatchesReference(_ c: (name: String, args: [String])) throws {
    let ref = try PipelineReference.load()
    let records = try classifyJSON(c.args)
    #expect(records.count == ref.files.count)
    for (i, rec) in records.enumerated() {
        #expect(rec.image == ref.imagePaths[i])
        #expect(rec.labels == ref.labels)
        let expected = try #require(ref.probs[c.name])[i]
        for (p, q) in zip(rec.probs, expected) { #expect(abs(p - q) <= 1e-4, "\(c.name) image \(i): \(rec.probs) vs \(expected)") }
        if c.name == "verbatim" {
            // The seed example: softmax of model(image, text) logits.
            for (p, q) in zip(rec.probs, ref.seed_probs[i]) { #expect(abs(p - q) <= 1e-4) }
        }
    }
}

@Test func classifyTableIsSortedByProbability() throws {
    let ref = try PipelineReference.load()
    let r = try runClip(["classify", "--model", tinyModel, ref.imagePaths[0], "--labels"] + ref.labels)
    #expect(r.status == 0, "\(r.stderr)")
    let lines = r.stdout.split(separator: "\n").map(String.init)
    #expect(lines.first == ref.imagePaths[0])
    let percents = lines.dropFirst().compactMap { Double($0.trimmingCharacters(in: .whitespaces).split(separator: "%").first ?? "") }
    #expect(percents.count == 3 && percents == percents.sorted(by: >))
    #expect(abs(percents.reduce(0, +) - 100) < 0.05)
}

struct EmbedOutput: Decodable { let image_embeddings: [[Float]]?; let text_embeddings: [[Float]]? }

@Test("embed gives the reference embeddings", arguments: [false, true])
func embedMatchesReference(_ raw: Bool) throws {
    let ref = try PipelineReference.load()
    let args = ["embed", "--model", tinyModel] + ref.imagePaths.flatMap { ["--image", $0] } + ref.texts.flatMap { ["--text", $0] }
    let r = try runClip(args + (raw ? ["--raw"] : []))
    #expect(r.status == 0, "\(r.stderr)")
    let out = try JSONDecoder().decode(EmbedOutput.self, from: Data(r.stdout.utf8))
    let images = try #require(out.image_embeddings), texts = try #require(out.text_embeddings)
    let refImages = raw ? ref.image_embeddings_raw : ref.image_embeddings
    let refTexts = raw ? ref.text_embeddings_raw : ref.text_embeddings
    #expect(images.count == refImages.count && texts.count == refTexts.count)
    for (a, b) in zip(images, refImages) { #expect(relativeError(a, b) <= 1e-5, "image embedding error \(relativeError(a, b))") }
    for (a, b) in zip(texts, refTexts) { #expect(relativeError(a, b) <= 1e-5, "text embedding error \(relativeError(a, b))") }
}

@Test func embedWritesNPYFiles() throws {
    let ref = try PipelineReference.load()
    let out = scratchFile("emb.npy")
    let r = try runClip(["embed", "--model", tinyModel, "--image", ref.imagePaths[0], "--text", "a dog", "--text", "a cat", "--output", out])
    #expect(r.status == 0, "\(r.stderr)")
    let stem = String(out.dropLast(4))
    for (file, shape) in [(stem + "_images.npy", "(1, 32)"), (stem + "_texts.npy", "(2, 32)")] {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(String(decoding: data.prefix(80), as: UTF8.self).contains("'shape': \(shape)"))
    }
}

struct SimilarityOutput: Decodable { let images: [String]; let texts: [String]; let cosine: [[Float]] }

@Test func similarityMatchesReference() throws {
    let ref = try PipelineReference.load()
    let r = try runClip(["similarity", "--model", tinyModel, "--json"] + ref.imagePaths.flatMap { ["--image", $0] }
                        + ref.texts.flatMap { ["--text", $0] })
    #expect(r.status == 0, "\(r.stderr)")
    let out = try JSONDecoder().decode(SimilarityOutput.self, from: Data(r.stdout.utf8))
    #expect(out.texts == ref.texts)
    for (a, b) in zip(out.cosine, ref.cosine) { for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-5) } }
}

@Test("Errors exit 1 with one line naming the culprit", arguments: [
    (["classify", "--model", "/nonexistent.pt", "x.jpg", "--labels", "a"], "'/nonexistent.pt' is neither a file"),
    (["classify", "--model", "MODEL", "/missing/photo.jpg", "--labels", "a dog"], "/missing/photo.jpg: cannot read: no such file"),
    (["embed", "--model", "MODEL", "--text", String(repeating: "word ", count: 100)], "text 0 is 102 tokens long"),
    (["similarity", "--model", "MODEL", "--image", "IMAGES/../images", "--text", "x"], "is a directory"),
])
func userErrorsAreOneLine(_ c: (args: [String], message: String)) throws {
    let args = c.args.map { $0 == "MODEL" ? tinyModel : $0.replacingOccurrences(of: "IMAGES", with: imageDirectory) }
    let r = try runClip(args)
    #expect(r.status == 1)
    #expect(r.stderr.hasPrefix("clip: ") && r.stderr.contains(c.message), "\(r.stderr)")
    #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
}

@Test("Usage errors are reported as swift-argument-parser does", arguments: [
    ["classify", "--model", "m", "x.jpg"],
    ["classify", "--model", "m", "x.jpg", "--labels", "a", "--template", "no placeholder"],
    ["embed", "--model", "m"],
    ["similarity", "--model", "m", "--image", "x.jpg"],
])
func usageErrors(_ args: [String]) throws {
    let r = try runClip(args)
    #expect(r.status == 64, "status \(r.status): \(r.stderr)")
    #expect(r.stderr.contains("Error:") && r.stderr.contains("Usage:"))
}

@Test("classify with its labels cached loads the image tower alone, and prints what the first run printed")
func classifyWithCachedLabelsSkipsTheTextTower() throws {
    let ref = try PipelineReference.load()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clip-classify-cache-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let arguments = ["classify", "--model", tinyModel, "--json"] + ref.imagePaths + ["--labels"] + ref.labels
    func files(_ suffix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(suffix) }
    }
    let first = try runClip(arguments, environment: ["CLIP_WEIGHT_CACHE": dir])
    #expect(first.status == 0, "\(first.stderr)")
    #expect(try files(".cliplabels").count == 1 && files(".clippack").count == 2, "one file per tower")
    // Without packed weights but with the labels, a run that loaded the text tower would write its file again.
    for pack in try files(".clippack") { try FileManager.default.removeItem(atPath: dir + "/" + pack) }
    let second = try runClip(arguments, environment: ["CLIP_WEIGHT_CACHE": dir])
    #expect(second.status == 0, "\(second.stderr)")
    #expect(second.stdout == first.stdout)
    #expect(try files(".clippack").count == 1, "the text tower was loaded")
}
