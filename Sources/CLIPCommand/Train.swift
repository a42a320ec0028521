import ArgumentParser
import CLIPCommandSupport
import CLIPTraining
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a CLIP contrastively, from scratch or from a checkpoint (fine-tuning, or LiT with --lock-image).",
        discussion: """
            `clip train --data synthetic --steps N --batch-size B --output model.safetensors` trains the default \
            architecture on the project's synthetic shapes; --data also takes a folder of images with same-named .txt \
            captions, an open_clip .csv/.tsv (filepath, title), or webdataset .tar shards (a file or a folder of them). \
            Every setting not given follows the default model's recipe; --config reads settings from a JSON file with \
            the option names as keys (flags override it). Beside the output go OUTPUT.state.safetensors (what --resume \
            needs: weights, optimizer, data position), OUTPUT.loss.csv and OUTPUT.loss.png, all replaced atomically \
            every --checkpoint-every steps and on Ctrl-C. Unusable examples are skipped and counted.
            """)

    @Option(help: "A JSON file of settings (keys as the option names, e.g. {\"learning-rate\": 0.001}).")
    var config: String?
    @Option(help: "'synthetic', a folder of images with .txt captions, a .csv/.tsv table, or .tar shards.")
    var data: String?
    @Option(help: "Optimisation steps.") var steps: Int?
    @Option(help: "Image–caption pairs per step.") var batchSize: Int?
    @Option(help: "The trained weights (.safetensors).") var output: String?
    @Option(help: "A checkpoint to fine-tune (default: the default architecture from scratch).") var model: String?
    @Option(help: "The architecture trained from scratch: default or tiny.") var architecture: String?
    @Option(help: "Peak learning rate (default 5e-4).") var learningRate: Float?
    @Option(help: "Warm-up steps (default a tenth of the run, at most 500).") var warmup: Int?
    @Option(help: "Decoupled weight decay (default 0.2).") var weightDecay: Float?
    @Option(help: "Gradient-norm clipping bound, 0 for none (default 1).") var maxGradientNorm: Float?
    @Option(help: "Process each batch in this many slices (same gradient, less memory).") var microBatches: Int?
    @Flag(help: "Keep the image tower fixed (LiT).") var lockImage = false
    @Option(help: "Augmentation of file data: crop (random resized crop, 90-100 % of the area; default) or none.") var augmentation: String?
    @Option(help: "Seed of initialisation, data order and synthetic images (default 0).") var seed: UInt64?
    @Option(help: "Steps between checkpoints (default 100).") var checkpointEvery: Int?
    @Option(help: "Steps between progress lines (default 10).") var logEvery: Int?
    @Option(help: "CSV/TSV column of image paths (default filepath).") var csvImageKey: String?
    @Option(help: "CSV/TSV column of captions (default title).") var csvCaptionKey: String?
    @Flag(help: "Continue the run from OUTPUT.state.safetensors.") var resume = false

    func run() throws {
        try reportingErrors {
            let settings = try resolvedSettings()
            let run = TrainingRun(settings: settings) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            do {
                try run.run(resume: resume)
            } catch TrainingError.interrupted {
                throw ExitCode(130)
            }
        }
    }

    /// The config file's settings, then the flags over them.
    func resolvedSettings() throws -> TrainingSettings {
        var file: [String: Any] = [:]
        if let config {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: config))
            guard let object = try? JSONSerialization.jsonObject(with: bytes) as? [String: Any] else {
                throw CLIError("\(config): not a JSON object of settings")
            }
            file = object
        }
        func value<T>(_ key: String, _ flag: T?, _ type: T.Type) throws -> T? {
            if let flag { return flag }
            guard let v = file[key] else { return nil }
            if T.self == Float.self, let n = v as? NSNumber { return (n.floatValue as! T) }
            if T.self == Int.self, let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded() { return (n.intValue as! T) }
            if T.self == UInt64.self, let n = v as? NSNumber, n.int64Value >= 0 { return (n.uint64Value as! T) }
            if T.self == Bool.self, let b = v as? Bool { return (b as! T) }
            if let t = v as? T { return t }
            throw CLIError("\(config ?? ""): setting '\(key)' has the wrong type (\(v))")
        }
        let known: Set<String> = ["data", "steps", "batch-size", "output", "model", "architecture", "learning-rate", "warmup", "weight-decay",
                                  "max-gradient-norm", "micro-batches", "augmentation", "lock-image", "seed", "checkpoint-every", "log-every",
                                  "csv-image-key", "csv-caption-key"]
        if let unknown = file.keys.sorted().first(where: { !known.contains($0) }) {
            throw CLIError("\(config ?? ""): unknown setting '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        guard let data = try value("data", data, String.self), let steps = try value("steps", steps, Int.self),
              let batchSize = try value("batch-size", batchSize, Int.self), let output = try value("output", output, String.self) else {
            throw CLIError("train needs --data, --steps, --batch-size and --output (as flags or in --config)")
        }
        var s = TrainingSettings(data: data, steps: steps, batchSize: batchSize, output: output)
        s.model = try value("model", model, String.self)
        if let v = try value("architecture", architecture, String.self) { s.architecture = v }
        if let v = try value("learning-rate", learningRate, Float.self) { s.learningRate = v }
        s.warmup = try value("warmup", warmup, Int.self)
        if let v = try value("weight-decay", weightDecay, Float.self) { s.weightDecay = v }
        if let v = try value("max-gradient-norm", maxGradientNorm, Float.self) { s.maxGradientNorm = v }
        if let v = try value("micro-batches", microBatches, Int.self) { s.microBatches = v }
        s.lockImageTower = try value("lock-image", lockImage ? true : nil, Bool.self) ?? false
        if let v = try value("augmentation", augmentation, String.self) {
            guard let a = Augmentation(rawValue: v) else { throw CLIError("augmentation must be crop or none (got '\(v)')") }
            s.augmentation = a
        }
        if let v = try value("seed", seed, UInt64.self) { s.seed = v }
        if let v = try value("checkpoint-every", checkpointEvery, Int.self) { s.checkpointEvery = v }
        if let v = try value("log-every", logEvery, Int.self) { s.logEvery = v }
        if let v = try value("csv-image-key", csvImageKey, String.self) { s.csvImageKey = v }
        if let v = try value("csv-caption-key", csvCaptionKey, String.self) { s.csvCaptionKey = v }
        return s
    }
}
