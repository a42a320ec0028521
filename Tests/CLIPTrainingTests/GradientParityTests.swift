import CLIP
import CLIPLayers
import CLIPTensor
import CLIPWeights
import Foundation
import Testing
@testable import CLIPTraining

/// Fixtures from Scripts/make_training_fixtures.py: open_clip in float64 on a small CLIP with odd sizes.
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

/// relative ‖a − b‖ / ‖b‖.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
    return a.count == b.count ? (den == 0 ? num.squareRoot() : (num / den).squareRoot()) : .infinity
}
