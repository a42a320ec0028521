import CLIP
import CLIPTensor
import CLIPWeights
import Testing

/// fp32 parity with OpenAI's reference implementation, per output.
let parityTolerance = 1e-5

/// Each fixture: weights file stem, and the config stem (dtype variants share the fp32 model's config).
let parityFixtures: [(weights: String, config: String)] = [
    ("vit_small", "vit_small"), ("vit_small_f16", "vit_small"), ("vit_small_bf16", "vit_small"),
    ("vit_hd32_r80", "vit_hd32_r80"), ("rn_small", "rn_small"), ("rn_odd", "rn_odd"),
]

/// The configuration inferred from the weights, checked against what the generator built, with heads set
/// from the generator's record (the reference rule width/64 cannot express head dimension 32).
func configuration(for weights: any WeightSource, expected: FixtureConfig) throws -> CLIPConfiguration {
    var c = try CLIPConfiguration.infer(from: weights)
    #expect(c.embedDim == expected.embed_dim)
    #expect(c.text.contextLength == expected.text.context_length)
    #expect(c.text.vocabSize == expected.text.vocab_size)
    #expect(c.text.width == expected.text.width)
    #expect(c.text.layers == expected.text.layers)
    #expect(c.text.heads == max(expected.text.width / 64, 1), "reference rule: heads = width / 64")
    c.text.heads = expected.text.heads
    switch c.vision {
    case .transformer(var v):
        #expect(expected.vision.type == "vit")
        #expect(v.width == expected.vision.width)
        #expect(FixtureConfig.Layers.count(v.layers) == expected.vision.layers)
        #expect(v.patchSize == expected.vision.patch_size)
        #expect(v.grid == expected.vision.grid)
        #expect(v.heads == max(expected.vision.width / 64, 1))
        v.heads = expected.vision.heads
        c.vision = .transformer(v)
    case .resnet(let r):
        #expect(expected.vision.type == "resnet")
        #expect(r.width == expected.vision.width)
        #expect(FixtureConfig.Layers.stages(r.layers) == expected.vision.layers)
        #expect(r.outputGrid == expected.vision.output_grid)
        #expect(r.heads == expected.vision.heads, "reference rule: heads = width · 32 / 64")
    case .convNeXt, .eva, .fastViT, .viTamin:
        Issue.record("the OpenAI-format fixtures have no timm tower")
    }
    return c
}

@Test("Model outputs equal the reference within 1e-5", arguments: parityFixtures)
func modelMatchesReference(_ fixture: (weights: String, config: String)) throws {
    let weights = try SafeTensorsFile(path: "\(fixtureDirectory)/\(fixture.weights).safetensors")
    let expected = try FixtureConfig.load(fixture.config)
    let model = try CLIPModel(weights: weights, configuration: configuration(for: weights, expected: expected))
    let ref = try Reference(path: "\(fixtureDirectory)/\(fixture.weights).reference.safetensors")

    let image = try model.encodeImage(ref.pixels)
    #expect(image.shape == ref.imageFeatures.shape)
    let imageError = relativeError(image.scalars, ref.imageFeatures.scalars)
    #expect(imageError <= parityTolerance, "encode_image relative error \(imageError)")

    let text = try model.encodeText(ref.tokens)
    #expect(text.shape == ref.textFeatures.shape)
    let textError = relativeError(text.scalars, ref.textFeatures.scalars)
    #expect(textError <= parityTolerance, "encode_text relative error \(textError)")
    // The batch runs as a prefix tree (its rows share their start token and need no padding); a row alone runs
    // whole, through the attention kernels: both paths meet the reference.
    let e = ref.textFeatures.shape[1]
    for (t, row) in ref.tokens.enumerated() {
        let alone = try model.encodeText([row]).scalars
        let rowError = relativeError(alone, Array(ref.textFeatures.scalars[(t * e)..<((t + 1) * e)]))
        #expect(rowError <= parityTolerance, "encode_text of text \(t) alone: relative error \(rowError)")
    }
    try sharedStartsMatchRowsAlone(model, ref.tokens)

    let (perImage, perText) = try model.logits(images: ref.pixels, texts: ref.tokens)
    #expect(perImage.shape == ref.logitsPerImage.shape)
    #expect(perText.shape == ref.logitsPerText.shape)
    let li = relativeError(perImage.scalars, ref.logitsPerImage.scalars)
    let lt = relativeError(perText.scalars, ref.logitsPerText.scalars)
    #expect(li <= parityTolerance, "logits_per_image relative error \(li)")
    #expect(lt <= parityTolerance, "logits_per_text relative error \(lt)")
}

/// Cosine similarity of two rows.
func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var ab = 0.0, aa = 0.0, bb = 0.0
    for (x, y) in zip(a, b) { ab += Double(x) * Double(y); aa += Double(x) * Double(x); bb += Double(y) * Double(y) }
    return ab / (aa.squareRoot() * bb.squareRoot())
}

/// Reduced precisions and the cosine to the fp32 reference each must keep.
let reducedPrecisionCases: [(precision: Precision, minimumCosine: Double, fixture: String)] =
    [(Precision.bf16, 0.999), (.int8, 0.99)].flatMap { p in
        ["vit_small", "rn_small", "vit_hd32_r80"].map { (p.0, p.1, $0) }
    }

@Test("Reduced-precision embeddings stay close to the reference", arguments: reducedPrecisionCases)
func reducedPrecisionMatchesReferenceClosely(_ c: (precision: Precision, minimumCosine: Double, fixture: String)) throws {
    let weights = try SafeTensorsFile(path: "\(fixtureDirectory)/\(c.fixture).safetensors")
    let config = try configuration(for: weights, expected: FixtureConfig.load(c.fixture))
    guard c.precision.isAvailable else {
        // Without the instruction set the request is refused, never silently served in fp32.
        #expect(throws: ModelLoadError.self) { try CLIPModel(weights: weights, configuration: config).converted(to: c.precision) }
        return
    }
    let model = try CLIPModel(weights: weights, configuration: config).converted(to: c.precision)
    #expect(model.precision == c.precision)
    let ref = try Reference(path: "\(fixtureDirectory)/\(c.fixture).reference.safetensors")
    let image = try model.encodeImage(ref.pixels), text = try model.encodeText(ref.tokens)
    for (ours, theirs) in [(image, ref.imageFeatures), (text, ref.textFeatures)] {
        let e = ours.shape[1]
        for r in 0..<ours.shape[0] {
            let cos = cosine(ours.row(r), Array(theirs.scalars[(r * e)..<((r + 1) * e)]))
            #expect(cos >= c.minimumCosine, "\(c.precision.rawValue) \(c.fixture) row \(r): cosine \(cos)")
        }
    }
}

/// Loading with a precision converts each tower as it is built; that must be the same model as loading in fp32 and
/// converting afterwards (bitwise: the same weights are quantised by the same code).
@Test("Loading in a precision equals converting after loading",
      .enabled(if: Precision.int8.isAvailable || Precision.bf16.isAvailable, "this CPU has neither int8 nor bf16 kernels"),
      arguments: [Precision.int8, .bf16], ["vit_small", "rn_small"])
func loadingInPrecisionEqualsConverting(_ precision: Precision, _ fixture: String) throws {
    guard precision.isAvailable else { return }
    let weights = try SafeTensorsFile(path: "\(fixtureDirectory)/\(fixture).safetensors")
    let config = try configuration(for: weights, expected: FixtureConfig.load(fixture))
    let atLoad = try CLIPModel(weights: weights, configuration: config, precision: precision)
    let after = try CLIPModel(weights: weights, configuration: config).converted(to: precision)
    #expect(atLoad.precision == precision && after.precision == precision)
    let ref = try Reference(path: "\(fixtureDirectory)/\(fixture).reference.safetensors")
    #expect(try atLoad.encodeImage(ref.pixels).scalars == after.encodeImage(ref.pixels).scalars)
    #expect(try atLoad.encodeText(ref.tokens).scalars == after.encodeText(ref.tokens).scalars)
}

/// Texts sharing a longer start than the fixtures' own (variants of the longest row that part at positions 2 to 5,
/// the same row twice, one cut short): the batch runs as a prefix tree and equals each text run alone, whole.
func sharedStartsMatchRowsAlone(_ model: CLIPModel, _ tokens: [[Int]]) throws {
    guard case .transformer(let tower) = model.text else { return }
    func end(_ row: [Int]) -> Int { row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? 0 }
    let row = tokens.max { end($0) < end($1) }!
    let e = end(row), top = row[e]
    var rows = [row, row]
    for k in 0..<4 {
        var variant = row
        for p in (2 + k)..<e { variant[p] = (row[p] + 7 * k + p) % (top - 2) + 1 }
        rows.append(variant)
    }
    var short = row
    short[3] = top
    for p in 4..<short.count { short[p] = 0 }
    rows.append(short)
    let ends = rows.map(end)
    #expect(tower.sharedPrefixes(rows, endOfText: ends, used: ends.max()! + 1) != nil, "the batch runs as a tree")
    #expect(tower.sharedPrefixes([row], endOfText: [e], used: e + 1) == nil, "a row alone runs whole")
    let batch = try model.encodeText(rows).scalars, width = batch.count / rows.count
    for (i, r) in rows.enumerated() {
        let alone = try model.encodeText([r]).scalars
        let error = relativeError(Array(batch[(i * width)..<((i + 1) * width)]), alone)
        #expect(error <= parityTolerance, "text \(i) in a shared-start batch against alone: relative error \(error)")
    }
}
