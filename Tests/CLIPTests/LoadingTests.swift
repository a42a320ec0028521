import CLIP
import CLIPImage
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

/// The fp32 tensors of a fixture, in stored order, for tests that damage a checkpoint.
func fixtureTensors(_ name: String) throws -> [(name: String, tensor: Tensor)] {
    let f = try SafeTensorsFile(path: "\(fixtureDirectory)/\(name).safetensors")
    return try f.tensorInfos.filter { $0.dtype.isFloatingPoint }.map { ($0.name, try f.floatTensor($0.name)) }
}

func writeScratch(_ tensors: [(name: String, tensor: Tensor)], _ file: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-model-tests-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(file).path
    try SafeTensorsWriter.write(tensors, to: path)
    return path
}

func loadError(_ path: String) -> ModelLoadError? {
    do {
        _ = try CLIPModel(contentsOf: path)
        return nil
    } catch {
        return error
    }
}

@Test func missingTensorIsNamed() throws {
    let path = try writeScratch(try fixtureTensors("vit_small").filter { $0.name != "visual.ln_post.bias" }, "missing.safetensors")
    let e = loadError(path)
    #expect(e == .missingTensor("visual.ln_post.bias", origin: path))
    #expect(e?.description.contains("'visual.ln_post.bias'") == true)
}

@Test func unexpectedTensorIsNamed() throws {
    var t = try fixtureTensors("vit_small")
    t.append(("visual.transformer.resblocks.0.attn.extra", try Tensor(shape: [1], scalars: [0])))
    let path = try writeScratch(t, "unexpected.safetensors")
    #expect(loadError(path) == .unexpectedTensors(["visual.transformer.resblocks.0.attn.extra"], origin: path))
}

@Test func misShapedTensorIsNamed() throws {
    let t = try fixtureTensors("vit_small").map { entry -> (name: String, tensor: Tensor) in
        guard entry.name == "transformer.resblocks.1.mlp.c_proj.weight" else { return entry }
        let s = entry.tensor.shape
        return (entry.name, try entry.tensor.reshaped([s[1], s[0]]))
    }
    let path = try writeScratch(t, "misshaped.safetensors")
    let e = loadError(path)
    #expect(e == .shapeMismatch("transformer.resblocks.1.mlp.c_proj.weight", expected: [64, 256], found: [256, 64], origin: path))
}

@Test func missingBatchNormStatisticIsNamed() throws {
    let path = try writeScratch(try fixtureTensors("rn_odd").filter { $0.name != "visual.layer2.1.bn2.running_var" }, "rn_missing.safetensors")
    #expect(loadError(path) == .missingTensor("visual.layer2.1.bn2.running_var", origin: path))
}

@Test func resnetStageNumberingGapIsReported() throws {
    // Dropping block 0 of layer2 leaves only block 1: an architecture that cannot be built.
    let path = try writeScratch(try fixtureTensors("rn_odd").filter { !$0.name.hasPrefix("visual.layer2.0.") }, "rn_gap.safetensors")
    guard case .architecture(let m, _) = loadError(path) else { Issue.record("expected an architecture error"); return }
    #expect(m.contains("visual.layer2"))
}

@Test func nonCLIPFileIsReported() throws {
    let path = try writeScratch([("weight", try Tensor(shape: [2], scalars: [1, 2]))], "notclip.safetensors")
    guard case .architecture(let m, _) = loadError(path) else { Issue.record("expected an architecture error"); return }
    #expect(m.contains("visual.proj"))
}

@Test func batchNormCountersAreIgnored() throws {
    let f = try SafeTensorsFile(path: "\(fixtureDirectory)/rn_small.safetensors")
    #expect(f.tensorInfos.contains { $0.name.hasSuffix("num_batches_tracked") && $0.dtype == .int64 })
    _ = try CLIPModel(weights: f)
}

// MARK: - Bad input to a loaded model

/// Loaded once and shared; a load failure fails each test that uses it rather than crashing the runner.
let smallModelResult = Result { () throws(ModelLoadError) -> CLIPModel in
    try CLIPModel(contentsOf: "\(fixtureDirectory)/vit_small.safetensors")
}
var smallModel: CLIPModel {
    get throws { try smallModelResult.get() }
}

@Test func wrongImageShapeIsReported() throws {
    let bad = try Tensor(zeros: [1, 3, 32, 64])
    #expect(throws: CLIPError.imageShape([1, 3, 32, 64], expected: "[N, 3, 64, 64] (a 4×4 grid of 16-pixel patches)")) {
        try smallModel.encodeImage(bad)
    }
    #expect(throws: CLIPError.self) { try smallModel.encodeImage(try Tensor(zeros: [1, 1, 64, 64])) }
    #expect(throws: CLIPError.self) { try smallModel.encodeImage(try Tensor(zeros: [3, 64, 64])) }
}

@Test func nonFinitePixelsAreReported() throws {
    var x = try Tensor(zeros: [1, 3, 64, 64])
    x.scalars[100] = .nan
    #expect(throws: CLIPError.nonFinitePixels) { try smallModel.encodeImage(x) }
}

@Test func tokenOutOfVocabularyNamesTextAndPosition() {
    let row = [398, 5, 399] + [Int](repeating: 0, count: 13)
    var bad = row
    bad[4] = 400
    #expect(throws: CLIPError.tokenOutOfRange(text: 1, position: 4, id: 400, vocabularySize: 400)) {
        try smallModel.encodeText([row, bad])
    }
    bad[4] = -1
    #expect(throws: CLIPError.tokenOutOfRange(text: 1, position: 4, id: -1, vocabularySize: 400)) {
        try smallModel.encodeText([row, bad])
    }
}

@Test func raggedOrTooLongTokensAreReported() {
    #expect(throws: CLIPError.tokenLength(text: 1, count: 3, expected: 4, contextLength: 16)) {
        try smallModel.encodeText([[1, 2, 3, 4], [1, 2, 3]])
    }
    #expect(throws: CLIPError.self) { try smallModel.encodeText([[Int](repeating: 1, count: 17)]) }
    #expect(throws: CLIPError.self) { try smallModel.encodeText([[]]) }
}

@Test func emptyBatchesGiveEmptyEmbeddings() throws {
    #expect(try smallModel.encodeImage(try Tensor(zeros: [0, 3, 64, 64])).shape == [0, 48])
    #expect(try smallModel.encodeText([]).shape == [0, 48])
}

@Test func paddingAfterEndOfTextDoesNotChangeTextFeatures() throws {
    // Computing only up to the last end-of-text token must be exact: compare a short row with and without
    // the padding tail, and a batch mixing lengths against each row alone.
    let ref = try Reference(path: "\(fixtureDirectory)/vit_small.reference.safetensors")
    let batch = try smallModel.encodeText(ref.tokens)
    for (i, row) in ref.tokens.enumerated() {
        let alone = try smallModel.encodeText([row])
        let eot = row.firstIndex(of: row.max()!)!
        let trimmed = try smallModel.encodeText([Array(row[...eot])])
        #expect(relativeError(alone.scalars, batch.row(i)) <= 1e-6)
        #expect(alone.scalars == trimmed.scalars)
    }
}

@Test func concurrentEncodingGivesIdenticalResults() async throws {
    let ref = try Reference(path: "\(fixtureDirectory)/vit_small.reference.safetensors")
    let model = try smallModel
    let expected = try model.encodeImage(ref.pixels)
    let results = try await withThrowingTaskGroup(of: Tensor.self) { group in
        for _ in 0..<4 { group.addTask { try model.encodeImage(ref.pixels) } }
        return try await group.reduce(into: [Tensor]()) { $0.append($1) }
    }
    for r in results { #expect(r == expected) }
}
