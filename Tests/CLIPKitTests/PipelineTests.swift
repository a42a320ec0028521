import CLIPKit
import CLIPTestSupport
import Foundation
import Synchronization
import Testing

// CLIPKit's API against the reference: the seed example (model, preprocess, tokenize, softmax of the logits) run
// by OpenAI's `clip` package on a small random-weight ViT (Scripts/fixtures/make_pipeline_fixtures.py writes the model and
// reference.json). Tolerances: embeddings relative L2 error ≤ 1e-5, probabilities and cosines absolute ≤ 1e-5.

let pipeline: Result<CLIPPipeline, PipelineError> = Result { () throws(PipelineError) in
    try CLIPPipeline.load(tinyModel, showProgress: false)
}

func rows(_ t: Tensor) -> [[Float]] {
    let width = t.shape.last ?? 0
    return (0..<(t.shape.first ?? 0)).map { Array(t.scalars[($0 * width)..<(($0 + 1) * width)]) }
}

@Test("The seed example: zero-shot probabilities equal the reference", arguments: [
    ("verbatim", ["{}"]), ("default", [PromptTemplates.defaultTemplate]), ("imagenet", PromptTemplates.imageNet),
])
func seedExampleMatchesReference(_ c: (name: String, templates: [String])) throws {
    let ref = try PipelineReference.load()
    let clip = try pipeline.get()
    let images = try clip.imageEmbeddings(files: ref.imagePaths)
    let classifier = try clip.zeroShotClassifier(labels: ref.labels, templates: c.templates)
    #expect(classifier.labels == ref.labels)
    #expect(classifier.weights.shape == [ref.labels.count, clip.model.configuration.embedDim])
    let probs = rows(try classifier.probabilities(images))
    let expected = try #require(ref.probs[c.name])
    #expect(probs.count == expected.count && !probs.isEmpty)
    for (i, (p, q)) in zip(probs, expected).enumerated() {
        #expect(abs(p.reduce(0, +) - 1) <= 1e-5)
        for (a, b) in zip(p, q) { #expect(abs(a - b) <= 1e-5, "\(c.name) image \(i): \(p) vs \(q)") }
        if c.name == "verbatim" {
            // softmax(model(image, text)[0]) of the seed example is the same numbers.
            for (a, b) in zip(p, ref.seed_probs[i]) { #expect(abs(a - b) <= 1e-5) }
        }
    }
}

@Test("Embeddings equal encode_image / encode_text, raw and normalised")
func embeddingsMatchReference() throws {
    let ref = try PipelineReference.load()
    let clip = try pipeline.get()
    let cases: [(Tensor, [[Float]])] = [
        (try clip.encodeImages(files: ref.imagePaths), ref.image_embeddings_raw),
        (try clip.imageEmbeddings(files: ref.imagePaths), ref.image_embeddings),
        (try clip.encodeTexts(ref.texts), ref.text_embeddings_raw),
        (try clip.textEmbeddings(ref.texts), ref.text_embeddings),
    ]
    for (ours, theirs) in cases {
        #expect(rows(ours).count == theirs.count && !theirs.isEmpty)
        for (a, b) in zip(rows(ours), theirs) { #expect(relativeError(a, b) <= 1e-5, "error \(relativeError(a, b))") }
    }
    let cosine = rows(try cosineSimilarity(try clip.imageEmbeddings(files: ref.imagePaths), try clip.textEmbeddings(ref.texts)))
    for (a, b) in zip(cosine, ref.cosine) { for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-5) } }
}

@Test("Batching does not change the embeddings, and progress counts up to the total", arguments: [1, 2, 3, 64])
func batchSizeDoesNotChangeResults(_ batchSize: Int) throws {
    let ref = try PipelineReference.load()
    let clip = try pipeline.get()
    let files = ref.imagePaths + ref.imagePaths.reversed()  // 8 files: batches of 3 end with a partial one
    let seen = Mutex<[Int]>([])
    let batched = try clip.encodeImages(files: files, batchSize: batchSize) { done, total in
        #expect(total == files.count)
        seen.withLock { $0.append(done) }
    }
    let oneByOne = try files.map { try clip.encodeImages(files: [$0]).scalars }.flatMap { $0 }
    #expect(relativeError(batched.scalars, oneByOne) <= 1e-6)
    let counts = seen.withLock { $0 }
    #expect(counts == counts.sorted() && counts.last == files.count)
    #expect(counts.count == (files.count + batchSize - 1) / batchSize)
}

@Test("A bad file in a later batch is an error naming it, not a partial result")
func badFileInLaterBatchNamesIt() throws {
    let ref = try PipelineReference.load()
    let clip = try pipeline.get()
    let missing = "\(imageDirectory)/does-not-exist.jpg"
    let error = #expect(throws: PipelineError.self) {
        try clip.encodeImages(files: ref.imagePaths + ref.imagePaths + [missing], batchSize: 2)
    }
    #expect(error.map { "\($0)" }?.contains(missing) == true, "\(String(describing: error))")
}

@Test("Texts longer than the context are refused by index unless truncated")
func longTextsAreRefusedOrTruncated() throws {
    let clip = try pipeline.get()
    let long = Array(repeating: "word", count: 100).joined(separator: " ")
    let error = #expect(throws: PipelineError.self) { try clip.encodeTexts(["short", long]) }
    #expect(error.map { "\($0)" }?.contains("text 1") == true, "\(String(describing: error))")
    let truncated = try clip.encodeTexts(["short", long], truncate: true)
    #expect(truncated.shape == [2, clip.model.configuration.embedDim])
}

@Test("Classifier inputs are checked", arguments: [
    ([], ["{}"], ClassifierError.noLabels), (["a dog"], [], .noTemplates),
    (["a dog"], ["a photo of {} and {}"], .badTemplate("a photo of {} and {}")),
    (["a dog"], ["no placeholder"], .badTemplate("no placeholder")),
])
func classifierInputsAreChecked(labels: [String], templates: [String], expected: ClassifierError) throws {
    let clip = try pipeline.get()
    let error = #expect(throws: PipelineError.self) { try clip.zeroShotClassifier(labels: labels, templates: templates) }
    guard case .classifier(let e) = error else { Issue.record("expected a classifier error, got \(String(describing: error))"); return }
    #expect(e == expected)
}

@Test("A classifier refuses embeddings of another width")
func classifierRefusesOtherWidths() throws {
    let clip = try pipeline.get()
    let classifier = try clip.zeroShotClassifier(labels: ["a", "b"], templates: ["{}"])
    let wrong = Tensor(uncheckedZeros: [1, clip.model.configuration.embedDim + 1])
    #expect(throws: TensorError.self) { try classifier.probabilities(wrong) }
}

@Test("A pipeline over an in-memory model classifies with OpenAI's tokenizer")
func inMemoryModelPipeline() throws {
    let config = CLIPConfiguration(
        embedDim: 16,
        vision: .transformer(.init(width: 32, layers: 1, heads: 2, patchSize: 8, grid: 4)),
        text: .init(contextLength: 77, vocabSize: 49_408, width: 32, heads: 2, layers: 1))
    let model = try CLIPModel(randomWeightsFor: config, seed: 3)
    let clip = try CLIPPipeline(model: model, preprocessing: Preprocessing(resolution: 32))
    #expect(clip.preprocessor.resolution == 32)
    let images = try clip.imageEmbeddings(files: Array(try PipelineReference.load().imagePaths.prefix(2)))
    let probs = try clip.zeroShotClassifier(labels: ["x", "y", "z"]).probabilities(images)
    #expect(probs.shape == [2, 3])
    for row in rows(probs) { #expect(abs(row.reduce(0, +) - 1) <= 1e-5) }
}

@Test func templatesAndTopK() throws {
    #expect(PromptTemplates.imageNet.count == 80)
    #expect(PromptTemplates.named("imagenet") == PromptTemplates.imageNet)
    #expect(PromptTemplates.named("Shapes") == ["a {} shape", "a small {} shape", "a large {} shape", "two {} shapes", "two small {} shapes",
                                                "two large {} shapes", "three {} shapes", "three small {} shapes", "three large {} shapes"])
    #expect(PromptTemplates.expand(["shapes", "a {}"]).count == 10)
    #expect(try PromptTemplates.apply("a photo of a {}.", to: "dog") == "a photo of a dog.")
    #expect(throws: ClassifierError.badTemplate("{} and {}")) { try PromptTemplates.apply("{} and {}", to: "x") }
    #expect(topK([0.1, 0.7, 0.2, 0.7], k: 3).map(\.index) == [1, 3, 2])
    #expect(topK([0.1, 0.7], k: 5).map(\.index) == [1, 0])
    #expect(topK([0.1, 0.7], k: 0).isEmpty && topK([], k: 3).isEmpty && topK([1], k: -1).isEmpty)
}

@Test("texts of many lengths, in batches shorter than the list, come back in input order, as each alone gives them",
      arguments: [1, 2, 5, 256])
func textsComeBackInInputOrder(batchSize: Int) throws {
    let clip = try CLIPPipeline.load(tinyModel, showProgress: false)
    let texts = ["a very long caption about a small red heart drawn on a sheet of paper", "a cat", "",
                 "two dogs and a cat", "a", "a photo of a number 123 thing", "a blue star"]
    let together = try clip.encodeTexts(texts, batchSize: batchSize)
    let e = clip.model.configuration.embedDim
    for (i, text) in texts.enumerated() {
        let alone = try clip.encodeTexts([text]).scalars
        let row = Array(together.scalars[(i * e)..<((i + 1) * e)])
        let scale = alone.map(abs).max() ?? 1
        #expect(zip(row, alone).allSatisfy { abs($0 - $1) <= 1e-5 * scale }, "text \(i) '\(text)' at batch size \(batchSize)")
    }
}

@Test("an error from a batch of sorted texts names the text by its input position")
func batchErrorsNameInputPositions() {
    let rows = [4, 0, 2]
    #expect(CLIPError.tokenOutOfRange(text: 1, position: 3, id: 9, vocabularySize: 5).inInputOrder(rows)
            == .tokenOutOfRange(text: 0, position: 3, id: 9, vocabularySize: 5))
    #expect(CLIPError.tokenLength(text: 0, count: 3, expected: 4, contextLength: 77).inInputOrder(rows)
            == .tokenLength(text: 4, count: 3, expected: 4, contextLength: 77))
    #expect(CLIPError.nonFiniteOutput(what: "text", row: 2).inInputOrder(rows) == .nonFiniteOutput(what: "text", row: 2))
    #expect(CLIPError.nonFiniteOutput(what: "text", row: 0).inInputOrder(rows) == .nonFiniteOutput(what: "text", row: 4))
    #expect(CLIPError.nonFinitePixels.inInputOrder(rows) == .nonFinitePixels)
}
