import CLIP
import Testing

let tinyConfiguration = CLIPConfiguration(
    embedDim: 16,
    vision: .transformer(.init(width: 64, layers: 1, heads: 2, patchSize: 8, grid: 3)),
    text: .init(contextLength: 6, vocabSize: 50, width: 32, heads: 1, layers: 1))

@Test func randomInitialisationIsDeterministicAndFinite() throws {
    let a = try CLIPModel(randomWeightsFor: tinyConfiguration, seed: 7)
    let b = try CLIPModel(randomWeightsFor: tinyConfiguration, seed: 7)
    let c = try CLIPModel(randomWeightsFor: tinyConfiguration, seed: 8)
    let pixels = try Tensor(shape: [2, 3, 24, 24], scalars: (0..<(2 * 3 * 24 * 24)).map { Float($0 % 13) / 13 - 0.5 })
    let ea = try a.encodeImage(pixels), eb = try b.encodeImage(pixels), ec = try c.encodeImage(pixels)
    #expect(ea == eb)
    #expect(ea != ec)
    #expect(ea.scalars.allSatisfy { $0.isFinite })
    #expect(try a.encodeText([[48, 3, 49, 0, 0, 0]]).scalars.allSatisfy { $0.isFinite })
}

@Test func inconsistentConfigurationIsAnError() {
    var bad = tinyConfiguration
    bad.text.heads = 3  // 32 is not divisible into 3 heads
    #expect(throws: ModelLoadError.self) { try CLIPModel(randomWeightsFor: bad) }
    var zeroPatch = tinyConfiguration
    zeroPatch.vision = .transformer(.init(width: 64, layers: 1, heads: 2, patchSize: 0, grid: 3))
    #expect(throws: ModelLoadError.architecture("configuration vision.patchSize is 0; it must be positive",
                                                origin: "random initialisation")) {
        try CLIPModel(randomWeightsFor: zeroPatch)
    }
    // A grid or context whose score matrices would need gigabytes per head is refused by name, not allocated.
    var hugeGrid = tinyConfiguration
    hugeGrid.vision = .transformer(.init(width: 64, layers: 1, heads: 2, patchSize: 4, grid: 200))
    #expect(throws: ModelLoadError.architecture(
        "configuration vision tokens (grid² + 1) is 40001; at most 16384 tokens are supported",
        origin: "random initialisation")) { try CLIPModel(randomWeightsFor: hugeGrid) }
    var overflowingGrid = tinyConfiguration
    overflowingGrid.vision = .transformer(.init(width: 64, layers: 1, heads: 2, patchSize: 4, grid: Int.max / 2))
    #expect(throws: ModelLoadError.self) { try CLIPModel(randomWeightsFor: overflowingGrid) }
    var longContext = tinyConfiguration
    longContext.text.contextLength = 100_000
    #expect(throws: ModelLoadError.self) { try CLIPModel(randomWeightsFor: longContext) }
    var threeStages = tinyConfiguration
    threeStages.vision = .resnet(.init(layers: [1, 1, 1], width: 8, heads: 4, outputGrid: 2))
    #expect(throws: ModelLoadError.self) { try CLIPModel(randomWeightsFor: threeStages) }
}

@Test("OpenAI architectures have the published sizes", arguments: CLIPConfiguration.openAIModelNames)
func openAIArchitectures(_ name: String) throws {
    let c = try #require(CLIPConfiguration.openAI(name))
    let expected: [String: (embed: Int, resolution: Int)] = [
        "RN50": (1024, 224), "RN101": (512, 224), "RN50x4": (640, 288), "RN50x16": (768, 384), "RN50x64": (1024, 448),
        "ViT-B/32": (512, 224), "ViT-B/16": (512, 224), "ViT-L/14": (768, 224), "ViT-L/14@336px": (768, 336),
    ]
    #expect(c.embedDim == expected[name]?.embed)
    #expect(c.imageResolution == expected[name]?.resolution)
    #expect(c.text.contextLength == 77 && c.text.vocabSize == 49408)
}

@Test func unknownArchitectureNameIsNil() {
    #expect(CLIPConfiguration.openAI("ViT-H/14") == nil)
}
