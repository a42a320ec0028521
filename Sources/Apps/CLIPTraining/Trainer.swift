#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIP
import CLIPLayers
import CLIPTensor
import CLIPWeights

/// Contrastive training of a CLIP model's fp32 parameters: per step, the towers' forward passes, `ContrastiveLoss`,
/// the backward passes, gradient-norm clipping, AdamW at the scheduled rate, and the temperature clamped to
/// [0, ln 100]. Deterministic: the same parameters, state and batches give bitwise the same result.
package struct Trainer: Sendable {
    /// The architecture being trained.
    package let configuration: CLIPConfiguration
    /// The parameters by checkpoint name (OpenAI's names), updated by every step.
    package var parameters: NamedTensors
    /// The optimizer and its moments.
    package var optimizer: AdamW
    /// The learning rate of each step.
    package var schedule: LearningRateSchedule
    /// Gradients whose global L2 norm exceeds this are scaled down to it (nil: no clipping).
    package var maxGradientNorm: Float?
    /// LiT: the image tower is neither differentiated nor updated.
    package var lockedImageTower: Bool
    /// The layers' products: fp32, or bf16 (`TrainingPrecision.bf16`). The parameters are fp32 either way.
    package var precision: Precision
    /// Steps taken.
    package var step: Int { optimizer.step }

    /// A trainer starting from `parameters` (initial or loaded weights) with a fresh optimizer.
    package init(configuration: CLIPConfiguration, parameters: NamedTensors, optimizer: AdamW = AdamW(),
                schedule: LearningRateSchedule, maxGradientNorm: Float? = 1, lockedImageTower: Bool = false,
                precision: Precision = .fp32) {
        self.configuration = configuration
        self.parameters = parameters
        (self.optimizer, self.schedule) = (optimizer, schedule)
        (self.maxGradientNorm, self.lockedImageTower, self.precision) = (maxGradientNorm, lockedImageTower, precision)
    }

    /// The model the current parameters make (fails with the name of a parameter that became NaN or infinite).
    package func model() throws(TrainingError) -> CLIPModel {
        do { return try CLIPModel(weights: parameters, configuration: configuration, precision: precision) } catch { throw .model(error) }
    }

    /// What one step did.
    package struct StepReport: Sendable {
        /// The step's index (0-based).
        package var step: Int
        /// The batch's loss before the update.
        package var loss: Float
        /// The learning rate applied.
        package var learningRate: Float
        /// The global gradient norm before clipping.
        package var gradientNorm: Double
        /// exp(logit_scale) after the update: the inverse temperature.
        package var logitScale: Float
        /// Share of images whose own caption had the largest logit.
        package var accuracy: Float
    }

    /// The loss of a batch and the gradient of every trained parameter. With `microBatches` > 1 the batch is
    /// processed in that many slices (memory for one slice's activations) and the gradient is still that of the
    /// whole batch's loss: every feature is computed first, the loss over all of them, then each slice's backward
    /// pass runs with its rows of the feature gradients (as open_clip's `accum_freq`).
    package func lossAndGradients(images: Tensor, texts: [[Int]], microBatches: Int = 1)
        throws(TrainingError) -> (ContrastiveLoss, Gradients) {
        let n = texts.count
        guard n >= 2, images.rank == 4, images.shape[0] == n else { throw .batch("a batch needs at least 2 image–text pairs, one image per text (got \(images.shape.first ?? 0) images, \(n) texts)") }
        let model = try model()
        let parts = max(1, min(microBatches, n))
        let bounds = chunkBounds(total: n, parts: parts, granule: 1)
        let values = parameters.values
        var gradients = Gradients()
        do {
            let logitScale = try parameters.floatTensor("logit_scale").scalars[0]
            if parts == 1 {
                let (img, txt, trace) = try model.trainingForward(images: images, texts: texts, lockedImageTower: lockedImageTower)
                let loss = try ContrastiveLoss(image: img, text: txt, logitScale: logitScale)
                try model.backward(trace, imageGradient: loss.imageGradient, textGradient: loss.textGradient,
                                   parameters: values, into: &gradients)
                gradients.add("logit_scale", shape: [], [loss.logitScaleGradient])
                return (loss, gradients)
            }
            var img: [Float] = [], txt: [Float] = []
            for p in 0..<(bounds.count - 1) {
                let slice = try Self.rows(images, bounds[p]..<bounds[p + 1])
                img += try model.encodeImage(slice).scalars
                txt += try model.encodeText(Array(texts[bounds[p]..<bounds[p + 1]])).scalars
            }
            let e = configuration.embedDim
            let loss = try ContrastiveLoss(image: Tensor(shape: [n, e], scalars: img), text: Tensor(shape: [n, e], scalars: txt),
                                           logitScale: logitScale)
            for p in 0..<(bounds.count - 1) {
                let r = bounds[p]..<bounds[p + 1]
                let (_, _, trace) = try model.trainingForward(images: try Self.rows(images, r), texts: Array(texts[r]),
                                                              lockedImageTower: lockedImageTower)
                try model.backward(trace, imageGradient: try Self.rows(loss.imageGradient, r),
                                   textGradient: try Self.rows(loss.textGradient, r), parameters: values, into: &gradients)
            }
            gradients.add("logit_scale", shape: [], [loss.logitScaleGradient])
            return (loss, gradients)
        } catch let e as CLIPError {
            throw .model(.architecture(e.description, origin: parameters.origin))
        } catch let e as TensorError {
            throw .internalShape(e)
        } catch let e as WeightFileError {
            throw .model(.weightFile(e))
        } catch {
            throw .batch("\(error)")
        }
    }

    /// Rows `r` of `t` (the first dimension).
    static func rows(_ t: Tensor, _ r: Range<Int>) throws(TensorError) -> Tensor {
        let per = t.count / max(t.shape[0], 1)
        var shape = t.shape
        shape[0] = r.count
        return try Tensor(shape: shape, scalars: Array(t.scalars[(r.lowerBound * per)..<(r.upperBound * per)]))
    }

    /// One optimisation step on a batch of N images [N, 3, R, R] and their N captions' token ids.
    package mutating func step(images: Tensor, texts: [[Int]], microBatches: Int = 1) throws(TrainingError) -> StepReport {
        let index = step
        var (loss, gradients) = try lossAndGradients(images: images, texts: texts, microBatches: microBatches)
        let norm = gradients.globalNorm
        guard norm.isFinite, loss.value.isFinite else { throw .diverged(step: index, loss: loss.value) }
        if let maxGradientNorm, norm > Double(maxGradientNorm) {
            gradients.scale(by: Float(Double(maxGradientNorm) / (norm + 1e-6)))
        }
        let rate = schedule.rate(at: index)
        optimizer.update(&parameters, gradients: gradients, learningRate: rate)
        let scale = min(max(parameters.values["logit_scale"]?.scalars.first ?? 0, 0), logf(100))
        parameters.values["logit_scale"] = Tensor(uncheckedShape: [], scalars: [scale])
        let n = texts.count
        var correct = 0
        for i in 0..<n {
            let row = loss.logits[(i * n)..<((i + 1) * n)]
            if row.indices.max(by: { row[$0] < row[$1] }) == i * n + i { correct += 1 }
        }
        return StepReport(step: index, loss: loss.value, learningRate: rate, gradientNorm: norm,
                          logitScale: expf(scale), accuracy: Float(correct) / Float(n))
    }
}

/// Why training could not go on. Each case says what to change.
package enum TrainingError: Error, CustomStringConvertible {
    case model(ModelLoadError)
    case batch(String)
    case internalShape(TensorError)
    case diverged(step: Int, loss: Float)
    case checkpoint(String)
    case data(String)
    case configuration(String)
    /// Stopped by a signal after writing a checkpoint.
    case interrupted(step: Int)

    package var description: String {
        switch self {
        case .model(let e): return e.description
        case .batch(let m): return m
        case .internalShape(let e): return "internal shape error: \(e)"
        case .diverged(let s, let l):
            return "training diverged at step \(s) (loss \(l), or a gradient is not finite); lower --lr or raise --warmup"
        case .checkpoint(let m), .data(let m), .configuration(let m): return m
        case .interrupted(let s): return "interrupted at step \(s); the checkpoint is written, --resume continues"

        }
    }
}
