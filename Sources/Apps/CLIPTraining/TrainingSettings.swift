import CLIP
import CLIPFiles
import CLIPLayers
import Foundation

/// Everything a training run is set by. `clip train` reads these from a JSON config file (the same names) and from
/// flags; every setting not given is the default model's recipe.
package struct TrainingSettings: Codable, Sendable, Equatable {
    /// "synthetic" (the project's shapes, plain), "synthetic-varied" (the same classes drawn in every way),
    /// "synthetic-varied2" (those images, groups also captioned shape by shape), "synthetic-varied3" (more textures and
    /// outlines), "synthetic-varied4" (varied3's images, groups also captioned "a red square"), a folder of images
    /// with `.txt` captions, a `.csv`/`.tsv` table, or webdataset `.tar` shards (a file or a folder of them).
    package var data: String
    /// Optimisation steps.
    package var steps: Int
    /// Image–caption pairs per step (the contrastive batch).
    package var batchSize: Int
    /// The trained weights (`.safetensors`, OpenAI names); the resumable state goes beside it.
    package var output: String
    /// A checkpoint to fine-tune from; nil trains `architecture` from scratch.
    package var model: String? = nil
    /// The architecture trained from scratch: "default" (the default model's) or "tiny" (for trials and tests).
    package var architecture: String = "default"
    /// Peak learning rate.
    package var learningRate: Float = 5e-4
    /// Linear warm-up steps (at most a tenth of the run when not given).
    package var warmup: Int? = nil
    /// Decoupled weight decay (not on gains, biases, embeddings or the temperature).
    package var weightDecay: Float = 0.2
    /// Gradient-norm clipping bound; 0 disables it.
    package var maxGradientNorm: Float = 1
    /// The batch is processed in this many slices (gradient accumulation with the whole batch's loss).
    package var microBatches: Int = 1
    /// Augmentation of file data (`crop`: random resized crop, 90–100 % of the area); the synthetic generator is
    /// random already and is never augmented.
    package var augmentation: Augmentation = .crop
    /// LiT: keep the image tower fixed.
    package var lockImageTower: Bool = false
    /// The arithmetic of the layers' products (nil: fp32, which is how fp32 is recorded, so that checkpoints written
    /// before this setting existed still resume).
    package var precision: TrainingPrecision? = nil
    /// Seed of initialisation, data order and synthetic images.
    package var seed: UInt64 = 0
    /// Steps between checkpoints.
    package var checkpointEvery: Int = 100
    /// Steps between progress lines.
    package var logEvery: Int = 10
    /// open_clip CSV/TSV column names.
    package var csvImageKey: String = "filepath"
    package var csvCaptionKey: String = "title"

    package init(data: String, steps: Int, batchSize: Int, output: String) {
        (self.data, self.steps, self.batchSize, self.output) = (data, steps, batchSize, output)
    }

    /// The warm-up actually used.
    package var warmupSteps: Int { warmup ?? max(1, min(500, steps / 10)) }

    /// Settings that must not change when a run resumes (changing them would not continue the same run).
    package var fingerprint: String {
        var copy = self
        copy.steps = 0
        copy.checkpointEvery = 0
        copy.logEvery = 0
        copy.output = ""
        if copy.precision == .fp32 { copy.precision = nil }
        return (try? JSONOutput.text(copy)) ?? ""
    }

    /// Whether a checkpoint's recorded settings are these: this build's fingerprint, or that of builds before the
    /// one JSON encoder, which escaped every slash (the text is the same with "/" written "\/").
    package func isFingerprint(_ recorded: String?) -> Bool {
        recorded == fingerprint || recorded == fingerprint.replacingOccurrences(of: "/", with: "\\/")
    }

    /// Refuses values no run can use, naming the setting.
    package func validate() throws(TrainingError) {
        func check(_ ok: Bool, _ message: String) throws(TrainingError) { if !ok { throw .configuration(message) } }
        try check(steps >= 1 && steps <= 100_000_000, "steps must be between 1 and 100,000,000 (got \(steps))")
        try check(batchSize >= 2 && batchSize <= 65_536, "batch size must be between 2 and 65,536: the loss contrasts each pair with the others (got \(batchSize))")
        try check(learningRate.isFinite && learningRate > 0 && learningRate < 1, "learning rate must be in (0, 1) (got \(learningRate))")
        try check(weightDecay.isFinite && weightDecay >= 0 && weightDecay < 10, "weight decay must be in [0, 10) (got \(weightDecay))")
        try check(maxGradientNorm.isFinite && maxGradientNorm >= 0, "max gradient norm must be ≥ 0 (got \(maxGradientNorm))")
        try check(microBatches >= 1 && microBatches <= batchSize, "micro-batches must be between 1 and the batch size (got \(microBatches))")
        try check(checkpointEvery >= 1 && logEvery >= 1, "checkpoint and log intervals must be at least 1 step")
        try check((0...100_000_000).contains(warmup ?? 0), "warm-up must be within 0...100,000,000 steps (got \(warmup ?? 0))")
        try check(output.hasSuffix(".safetensors"), "the output must be a .safetensors file (got '\(output)')")
        try check(DefaultArchitecture.named(architecture) != nil, "unknown architecture '\(architecture)' (known: default, tiny)")
        try check(precision != .bf16 || Precision.bf16.isAvailable,
                  "bf16 training needs a CPU with AVX512-BF16 (this one has: \(CPU.features.isEmpty ? "none of them" : CPU.features.joined(separator: ", "))); use fp32")
    }
}

/// The arithmetic of a training run's layer products. bf16 is mixed precision like open_clip's `amp_bf16` for the
/// Linear layers: each one's products (forward, and both of its backward products) round their two operands to
/// bfloat16 and sum in fp32. Unlike autocast, the layers' outputs stay fp32, as do attention within a head, the
/// projections, the weights, the optimizer's moments, normalisation, softmax and the loss. On AVX512-BF16 the
/// products run about twice as fast.
package enum TrainingPrecision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16

    /// The precision the trainer's model is built in each step.
    package var products: Precision { self == .bf16 ? .bf16 : .fp32 }
}

/// The default model's architecture: a small ViT CLIP (64-pixel images in 8-pixel patches, 4 layers of width 128;
/// a 4-layer text tower of width 64 over CLIP's full BPE vocabulary), with 64-wide attention heads as the
/// reference's `build_model` assumes.
package enum DefaultArchitecture {
    /// An architecture by name: "default", or "tiny" (16-pixel images in 8-pixel patches, one layer of width 64 per
    /// tower: seconds per step even in a debug build).
    package static func named(_ name: String) -> CLIPConfiguration? {
        switch name {
        case "default": return configuration
        case "tiny":
            return CLIPConfiguration(embedDim: 32, vision: .transformer(.init(width: 64, layers: 1, heads: 1, patchSize: 8, grid: 2)),
                                     text: .init(contextLength: 77, vocabSize: 49408, width: 64, heads: 1, layers: 1))
        default: return nil
        }
    }

    package static var configuration: CLIPConfiguration {
        CLIPConfiguration(
            embedDim: 64,
            vision: .transformer(.init(width: 128, layers: 4, heads: 2, patchSize: 8, grid: 8)),
            text: .init(contextLength: 77, vocabSize: 49408, width: 64, heads: 1, layers: 4))
    }
}
