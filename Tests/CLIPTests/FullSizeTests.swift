import CLIP
import CLIPImage
import CLIPLoading
import Foundation
import Testing

/// Directory holding full-size fixtures made by `python Scripts/fixtures/make_fixtures.py --full DIR`; the tests
/// below run only when `CLIP_FULL_FIXTURES` names it (they need ≈1 GB of generated files).
let fullFixtureDirectory = ProcessInfo.processInfo.environment["CLIP_FULL_FIXTURES"]

@Test("Full-size ViT-B/32 and RN50 equal the reference within 1e-5",
      .enabled(if: fullFixtureDirectory != nil, "set CLIP_FULL_FIXTURES to a directory made by make_fixtures.py --full"),
      arguments: ["vit_b32", "rn50"])
func fullSizeModelMatchesReference(_ name: String) throws {
    let dir = try #require(fullFixtureDirectory)
    let model = try CLIPModel(contentsOf: "\(dir)/\(name).safetensors")
    let expected = try FixtureConfig.load(name, directory: dir)
    #expect(model.configuration.embedDim == expected.embed_dim)
    #expect(model.configuration.imageResolution == 224)
    #expect(model.configuration == CLIPConfiguration.openAI(name == "vit_b32" ? "ViT-B/32" : "RN50"))
    let ref = try Reference(path: "\(dir)/\(name).reference.safetensors")
    let image = try model.encodeImage(ref.pixels)
    let text = try model.encodeText(ref.tokens)
    let (perImage, perText) = try model.logits(imageEmbeddings: image, textEmbeddings: text)
    let errors = [
        ("encode_image", relativeError(image.scalars, ref.imageFeatures.scalars)),
        ("encode_text", relativeError(text.scalars, ref.textFeatures.scalars)),
        ("logits_per_image", relativeError(perImage.scalars, ref.logitsPerImage.scalars)),
        ("logits_per_text", relativeError(perText.scalars, ref.logitsPerText.scalars)),
    ]
    for (what, e) in errors {
        print("\(name) \(what) relative error \(e)")
        #expect(e <= parityTolerance, "\(name) \(what) relative error \(e)")
    }
}

/// Reduced precision on the full-size ViT-B/32 with this CPU's kernel for it (every int8 kernel gives the same
/// numbers, tested bitwise in CLIPTensorTests): the cosine of each embedding to the fp32 reference, the figure
/// docs/performance.md reports.
@Test("Full-size ViT-B/32 in bf16 and int8 stays within cosine 0.99 of fp32",
      .enabled(if: fullFixtureDirectory != nil, "set CLIP_FULL_FIXTURES to a directory made by make_fixtures.py --full"),
      arguments: [Precision.bf16, .int8].filter(\.isAvailable))
func fullSizeReducedPrecision(_ precision: Precision) throws {
    let dir = try #require(fullFixtureDirectory)
    let model = try CLIPModel.load(path: "\(dir)/vit_b32.safetensors", precision: precision).model
    let kernel = precision.kernels[0]
    let ref = try Reference(path: "\(dir)/vit_b32.reference.safetensors")
    for (what, ours, theirs) in [("image", try model.encodeImage(ref.pixels), ref.imageFeatures),
                                 ("text", try model.encodeText(ref.tokens), ref.textFeatures)] {
        let e = ours.shape[1]
        let cosines = (0..<ours.shape[0]).map { r in cosine(ours.row(r), Array(theirs.scalars[(r * e)..<((r + 1) * e)])) }
        let worst = cosines.min() ?? 0
        print("vit_b32 \(precision.rawValue) (\(kernel.rawValue)) \(what) embeddings: cosine to fp32 min \(worst)")
        #expect(worst >= 0.99)
    }
}
