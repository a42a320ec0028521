import CLIP
import CLIPLayers
import CLIPTensor
import CLIPTestSupport
import CLIPWeights
import Foundation
import Testing
@testable import CLIPTraining

/// Fixtures from Scripts/fixtures/make_training_fixtures.py: open_clip in float64 on a small CLIP with odd sizes.
let trainingFixtures = Bundle.module.resourcePath! + "/Fixtures"

func smallCLIP() throws -> (CLIPConfiguration, NamedTensors) {
    let file = try SafeTensorsFile(path: "\(trainingFixtures)/small_clip.safetensors")
    var c = try CLIPConfiguration.infer(from: file)
    if case .transformer(var v) = c.vision { v.heads = 4; c.vision = .transformer(v) }
    c.text.heads = 3
    return (c, try NamedTensors(file))
}

/// Token ids stored as floats, one row per text.
func tokenRows(_ t: Tensor) -> [[Int]] {
    (0..<t.shape[0]).map { i in t.row(i).map { Int($0) } }
}

@Test("every parameter's gradient equals open_clip's (relative error ≤ 1e-4), and so does the loss")
func gradientsMatchOpenCLIP() throws {
    let (c, parameters) = try smallCLIP()
    let ref = try SafeTensorsFile(path: "\(trainingFixtures)/small_clip_gradients.safetensors")
    let trainer = Trainer(configuration: c, parameters: parameters,
                          schedule: LearningRateSchedule(base: 0, warmup: 1, totalSteps: 1))
    let (loss, gradients) = try trainer.lossAndGradients(images: try ref.floatTensor("pixels"),
                                                         texts: tokenRows(try ref.floatTensor("tokens")))
    let expectedLoss = try ref.floatTensor("loss").scalars[0]
    #expect(abs(loss.value - expectedLoss) <= 1e-5 * abs(expectedLoss))
    var worst = (name: "", error: 0.0)
    for name in parameters.names {
        let expected = try ref.floatTensor("grad.\(name)")
        let got = try #require(gradients[name], "no gradient for \(name)")
        #expect(got.shape == expected.shape, "\(name)")
        let e = relativeError(got.scalars, expected.scalars)
        #expect(e <= 1e-4, "\(name): relative error \(e)")
        if e > worst.error { worst = (name, e) }
    }
    print("worst gradient relative error \(worst.error) (\(worst.name))")
}

@Test("bf16 products (mixed precision): the loss and every gradient stay near open_clip's float64 ones, and differ from fp32's",
      .enabled(if: Precision.bf16.isAvailable, "needs AVX512-BF16"))
func bf16GradientsStayNearOpenCLIP() throws {
    let (c, parameters) = try smallCLIP()
    let ref = try SafeTensorsFile(path: "\(trainingFixtures)/small_clip_gradients.safetensors")
    let (images, texts) = (try ref.floatTensor("pixels"), tokenRows(try ref.floatTensor("tokens")))
    let schedule = LearningRateSchedule(base: 0, warmup: 1, totalSteps: 1)
    let mixed = Trainer(configuration: c, parameters: parameters, schedule: schedule, precision: .bf16)
    let (loss, gradients) = try mixed.lossAndGradients(images: images, texts: texts)
    let (_, fp32) = try Trainer(configuration: c, parameters: parameters, schedule: schedule).lossAndGradients(images: images, texts: texts)
    let expectedLoss = try ref.floatTensor("loss").scalars[0]
    // bf16 keeps 8 significant bits (relative rounding ≤ 2⁻⁹ ≈ 0.2 %) of each product's operands. Measured on a Zen 4:
    // all gradients together 1.1 %, the worst one 1.5 %.
    #expect(abs(loss.value - expectedLoss) <= 1e-2 * abs(expectedLoss), "loss \(loss.value), open_clip \(expectedLoss)")
    var all: [Float] = [], allExpected: [Float] = [], worst = (name: "", error: 0.0), fromFP32 = 0.0
    for name in parameters.names {
        let expected = try ref.floatTensor("grad.\(name)").scalars
        let got = try #require(gradients[name], "no gradient for \(name)").scalars
        let e = relativeError(got, expected)
        #expect(e <= 0.05, "\(name): relative error \(e)")
        if e > worst.error { worst = (name, e) }
        all += got
        allExpected += expected
        fromFP32 = max(fromFP32, relativeError(got, try #require(fp32[name]).scalars))
    }
    let overall = relativeError(all, allExpected)
    #expect(overall <= 0.03, "all gradients together: relative error \(overall)")
    // fp32 products give ≤ 1e-4 (gradientsMatchOpenCLIP); bf16 ones must actually have been used.
    #expect(fromFP32 > 1e-4, "bf16 gradients equal fp32's (largest difference \(fromFP32)): the products were not rounded")
    print("bf16 gradients: all together \(overall), worst \(worst.error) (\(worst.name)), largest difference from fp32 \(fromFP32)")
}

/// `v` rounded to bfloat16 (nearest even), as the bf16 products round their operands; finite values only.
private func bf16(_ v: Float) -> Double {
    let u = v.bitPattern
    return Double(Float(bitPattern: (u &+ 0x7FFF &+ ((u >> 16) & 1)) & 0xFFFF_0000))
}

@Test("a bf16 Linear layer's backward products are bf16 products: dW and dx equal float64 sums of the bf16-rounded operands, and differ from fp32's",
      .enabled(if: Precision.bf16.isAvailable, "needs AVX512-BF16"))
func bf16LinearBackwardRoundsItsOperands() throws {
    var rng = SplitMix64(state: 5)
    let (rows, inputs, outputs) = (37, 45, 70)
    let x = rng.signedArray(rows * inputs), dy = rng.signedArray(rows * outputs), w = rng.signedArray(outputs * inputs)
    var results: [(dW: [Float], dx: [Float])] = []
    for precision in [Precision.fp32, .bf16] {
        let layer = try Linear(weight: Tensor(uncheckedShape: [outputs, inputs], scalars: w), bias: nil, precision: precision)
        var gradients = Gradients()
        let dx = try #require(try layer.backward(input: Tensor(uncheckedShape: [rows, inputs], scalars: x),
                                                 outputGradient: Tensor(uncheckedShape: [rows, outputs], scalars: dy),
                                                 weight: Tensor(uncheckedShape: [outputs, inputs], scalars: w),
                                                 names: ("w", nil), into: &gradients))
        results.append((try #require(gradients["w"]).scalars, dx.scalars))
    }
    let (fp32, mixed) = (results[0], results[1])
    var worst = 0.0, apart = 0.0
    /// Entry (i, j) of P [m, n] = Σ_p lhs(i, p) · rhs(p, j) over `inner` terms, checked in both results.
    func compare(_ m: Int, _ n: Int, inner: Int, _ lhs: (Int, Int) -> Float, _ rhs: (Int, Int) -> Float,
                 _ got: (fp32: [Float], mixed: [Float])) {
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0, magnitude = 0.0
                for p in 0..<inner { let t = bf16(lhs(i, p)) * bf16(rhs(p, j)); s += t; magnitude += abs(t) }
                worst = max(worst, abs(s - Double(got.mixed[i * n + j])) / magnitude)
                apart = max(apart, abs(Double(got.fp32[i * n + j] - got.mixed[i * n + j])) / magnitude)
            }
        }
    }
    compare(outputs, inputs, inner: rows, { o, r in dy[r * outputs + o] }, { r, i in x[r * inputs + i] }, (fp32.dW, mixed.dW))
    compare(rows, inputs, inner: outputs, { r, o in dy[r * outputs + o] }, { o, i in w[o * inputs + i] }, (fp32.dx, mixed.dx))
    // fp32 sums of bf16 products: a few fp32 roundings of Σ|x·y|; unrounded operands are off by up to 2⁻⁸ of it.
    #expect(worst < 2e-6, "bf16 layer against the rounded operands: \(worst)")
    #expect(apart > 1e-4, "the bf16 layer's backward products equal fp32's (\(apart))")
}

@Test("micro-batches give the gradient of the whole batch", arguments: [2, 3, 6])
func microBatchesGiveTheWholeBatchGradient(parts: Int) throws {
    let (c, parameters) = try smallCLIP()
    let ref = try SafeTensorsFile(path: "\(trainingFixtures)/small_clip_gradients.safetensors")
    let trainer = Trainer(configuration: c, parameters: parameters,
                          schedule: LearningRateSchedule(base: 0, warmup: 1, totalSteps: 1))
    let (images, texts) = (try ref.floatTensor("pixels"), tokenRows(try ref.floatTensor("tokens")))
    let (whole, g1) = try trainer.lossAndGradients(images: images, texts: texts)
    let (split, g2) = try trainer.lossAndGradients(images: images, texts: texts, microBatches: parts)
    #expect(abs(whole.value - split.value) <= 1e-5)
    for name in parameters.names {
        let e = relativeError(try #require(g2[name]).scalars, try #require(g1[name]).scalars)
        #expect(e <= 1e-5, "\(name): \(e)")
    }
}

@Test("50 steps of AdamW with warm-up, cosine decay and clipping follow open_clip's losses within 1e-3")
func fiftyStepsFollowOpenCLIP() throws {
    let (c, parameters) = try smallCLIP()
    let ref = try SafeTensorsFile(path: "\(trainingFixtures)/small_clip_run.safetensors")
    let expected = try ref.floatTensor("losses").scalars
    var trainer = Trainer(configuration: c, parameters: parameters,
                          schedule: LearningRateSchedule(base: 2e-3, warmup: 5, totalSteps: 50))
    var worst: Float = 0
    for step in 0..<50 {
        let report = try trainer.step(images: try ref.floatTensor("pixels.\(step % 5)"),
                                      texts: tokenRows(try ref.floatTensor("tokens.\(step % 5)")))
        let d = abs(report.loss - expected[step])
        worst = max(worst, d)
        #expect(d <= 1e-3, "step \(step): loss \(report.loss), open_clip \(expected[step])")
    }
    print("50-step run: largest loss difference \(worst)")
}

@Test("LiT: with the image tower locked, a step leaves every visual parameter bitwise as it was and trains the rest")
func lockedImageTowerIsNotUpdated() throws {
    let (c, parameters) = try smallCLIP()
    let ref = try SafeTensorsFile(path: "\(trainingFixtures)/small_clip_gradients.safetensors")
    var trainer = Trainer(configuration: c, parameters: parameters,
                          schedule: LearningRateSchedule(base: 1e-3, warmup: 1, totalSteps: 2), lockedImageTower: true)
    let (_, gradients) = try trainer.lossAndGradients(images: try ref.floatTensor("pixels"),
                                                      texts: tokenRows(try ref.floatTensor("tokens")))
    #expect(!gradients.tensors.keys.contains { $0.hasPrefix("visual.") })
    _ = try trainer.step(images: try ref.floatTensor("pixels"), texts: tokenRows(try ref.floatTensor("tokens")))
    for name in parameters.names {
        let before = parameters.values[name]!.scalars, after = trainer.parameters.values[name]!.scalars
        if name.hasPrefix("visual.") {
            #expect(before == after, "\(name) changed")
        } else if name != "logit_scale" && !name.hasPrefix("token_embedding") {
            #expect(before != after, "\(name) did not change")
        }
    }
}

@Test("a ResNet image tower cannot be trained unlocked, and says so")
func resnetTowerIsRefused() throws {
    let config = CLIPConfiguration(embedDim: 16, vision: .resnet(.init(layers: [1, 1, 1, 1], width: 8, heads: 2, outputGrid: 1)),
                                   text: .init(contextLength: 8, vocabSize: 50, width: 16, heads: 2, layers: 1))
    let parameters = try CLIPModel.initialParameters(for: config, seed: 1)
    let trainer = Trainer(configuration: config, parameters: parameters,
                          schedule: LearningRateSchedule(base: 1e-3, warmup: 1, totalSteps: 1))
    let images = try Tensor(zeros: [2, 3, 32, 32])
    let texts = [[48, 1, 49, 0, 0, 0, 0, 0], [48, 2, 49, 0, 0, 0, 0, 0]]
    #expect { try trainer.lossAndGradients(images: images, texts: texts) } throws: { "\($0)".contains("ResNet") }
    var locked = trainer
    locked.lockedImageTower = true
    _ = try locked.lossAndGradients(images: images, texts: texts)
}
