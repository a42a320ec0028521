import CLIPKit
import CLIPTestSupport
import CLIPTokenizer
import CLIPWeights
import Foundation
import Testing

// A SigLIP 2 NaFlex folder through the whole pipeline (Scripts/fixtures/make_naflex_fixtures.py): its Gemma-style
// tokenizer, the patch budget's preprocessing, and sigmoid probabilities against transformers' Siglip2Model on
// Siglip2ImageProcessorPil's patches of Examples/blue-star.png and open_clip's SigLIP 2 token rows.

@Test("SigLIP 2 NaFlex zero-shot: the folder's tokenizer, the patch budget, sigmoid probabilities equal the reference")
func naflexPipelineMatchesReference() throws {
    let clip = try CLIPPipeline.load(sigLIP2NaFlexFolder, showProgress: false)
    #expect(clip.tokenizer is SentencePieceTokenizer)
    let ref = try SafeTensorsFile(path: sigLIP2NaFlexFolder + ".reference.safetensors")
    let labels = ["a red heart", "a blue star", "A green circle!"]
    let (shape, ids) = try ref.integerTensor("classify_tokens")
    let expectedRows = (0..<shape[0]).map { Array(ids[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
    #expect(try clip.tokenizer.tokenize(labels, contextLength: 64, truncate: false) == expectedRows)
    let star = testsDirectory.deletingLastPathComponent().appendingPathComponent("Examples/blue-star.png").path
    let classifier = try clip.zeroShotClassifier(labels: labels, templates: ["{}"])
    #expect(classifier.objective == .sigmoid)
    let probabilities = try classifier.probabilities(try clip.imageEmbeddings(files: [star]))
    let expected = try ref.floatTensor("classify_probabilities")
    #expect(probabilities.shape == expected.shape)
    for (p, q) in zip(probabilities.scalars, expected.scalars) { #expect(abs(p - q) <= 1e-5, "\(probabilities.scalars) vs \(expected.scalars)") }
}

@Test("Images of different shapes embed in one batch as each does alone")
func naflexPipelineMixedBatch() throws {
    let clip = try CLIPPipeline.load(sigLIP2NaFlexFolder, showProgress: false)
    let folder = testsDirectory.appendingPathComponent("CLIPTests/Fixtures/naflex/images").path
    let files = ["wide_37x53", "strip_200x9", "tiny_5x5", "tall_13x90"].map { "\(folder)/\($0).png" }
    let batch = try clip.imageEmbeddings(files: files)
    for (i, file) in files.enumerated() {
        let alone = try clip.imageEmbeddings(files: [file])
        let d = alone.shape[1]
        let row = Array(batch.scalars[(i * d)..<((i + 1) * d)])
        let worst = zip(alone.scalars, row).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-6, "\(file): \(worst)")
    }
}
