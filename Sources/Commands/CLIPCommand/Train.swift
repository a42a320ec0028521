import ArgumentParser
import CLIPCommandSupport
import CLIPLoading
import CLIPFiles
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
    @Option(help: "One of \(SyntheticShapes.Style.dataNames) (the project's shapes), a folder of images with .txt captions, a .csv/.tsv table, or .tar shards.")
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
    @Option(help: "The Linear layers' products: fp32 (default) or bf16, mixed precision like open_clip's amp_bf16 for those layers (operands rounded to bfloat16, fp32 sums; outputs, attention, weights, optimizer and loss in fp32; needs AVX512-BF16).")
    var precision: String?
    @Option(help: "Seed of initialisation, data order and synthetic images (default 0).") var seed: UInt64?
    @Option(help: "Steps between checkpoints (default 100).") var checkpointEvery: Int?
    @Option(help: "Steps between progress lines (default 10).") var logEvery: Int?
    @Option(help: "CSV/TSV column of image paths (default filepath).") var csvImageKey: String?
    @Option(help: "CSV/TSV column of captions (default title).") var csvCaptionKey: String?
    @Flag(help: "Continue the run from OUTPUT.state.safetensors.") var resume = false

    func run() throws {
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

    /// The config file's settings, then the flags over them.
    func resolvedSettings() throws -> TrainingSettings {
        let file = try config.map(ConfigFile.read) ?? ConfigFile()
        guard let data = data ?? file.data, let steps = steps ?? file.steps, let batchSize = batchSize ?? file.batchSize,
              let output = output ?? file.output else {
            throw ValidationError("train needs --data, --steps, --batch-size and --output (as flags or in --config)")
        }
        var s = TrainingSettings(data: data, steps: steps, batchSize: batchSize, output: output)
        s.model = model ?? file.model
        if let v = architecture ?? file.architecture { s.architecture = v }
        if let v = learningRate ?? file.learningRate { s.learningRate = v }
        s.warmup = warmup ?? file.warmup
        if let v = weightDecay ?? file.weightDecay { s.weightDecay = v }
        if let v = maxGradientNorm ?? file.maxGradientNorm { s.maxGradientNorm = v }
        if let v = microBatches ?? file.microBatches { s.microBatches = v }
        s.lockImageTower = lockImage || file.lockImage == true
        if let v = augmentation ?? file.augmentation {
            guard let a = Augmentation(rawValue: v) else { throw ValidationError("augmentation must be crop or none (got '\(v)')") }
            s.augmentation = a
        }
        if let v = precision ?? file.precision {
            guard let p = TrainingPrecision(rawValue: v) else { throw ValidationError("precision must be fp32 or bf16 (got '\(v)')") }
            s.precision = p
        }
        if let v = seed ?? file.seed { s.seed = v }
        if let v = checkpointEvery ?? file.checkpointEvery { s.checkpointEvery = v }
        if let v = logEvery ?? file.logEvery { s.logEvery = v }
        if let v = csvImageKey ?? file.csvImageKey { s.csvImageKey = v }
        if let v = csvCaptionKey ?? file.csvCaptionKey { s.csvCaptionKey = v }
        return s
    }

    /// `--config`: the settings a JSON object may hold, by their option names, each of its own type exactly (a seed
    /// of 1.5, a batch size of `true` or a flag of `1` is an error naming the key, not rounded or cast).
    struct ConfigFile: Decodable {
        var data, output, model, architecture, augmentation, precision, csvImageKey, csvCaptionKey: String?
        var steps, batchSize, warmup, microBatches, checkpointEvery, logEvery: Int?
        var learningRate, weightDecay, maxGradientNorm: Float?
        var lockImage: Bool?
        var seed: UInt64?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case data, output, model, architecture, augmentation, precision, steps, warmup, seed
            case csvImageKey = "csv-image-key", csvCaptionKey = "csv-caption-key", batchSize = "batch-size"
            case microBatches = "micro-batches", checkpointEvery = "checkpoint-every", logEvery = "log-every"
            case learningRate = "learning-rate", weightDecay = "weight-decay", maxGradientNorm = "max-gradient-norm"
            case lockImage = "lock-image"
        }

        init() {}

        /// Each key decoded on its own, so an error names it (JSONDecoder's path is empty for a number that does not
        /// fit, as a seed of 1.5).
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func get<T: Decodable>(_ key: CodingKeys, _ type: T.Type) throws -> T? {
                do { return try c.decodeIfPresent(T.self, forKey: key) } catch { throw BadSetting(key: key.rawValue) }
            }
            (data, output, model) = (try get(.data, String.self), try get(.output, String.self), try get(.model, String.self))
            (architecture, augmentation) = (try get(.architecture, String.self), try get(.augmentation, String.self))
            precision = try get(.precision, String.self)
            (csvImageKey, csvCaptionKey) = (try get(.csvImageKey, String.self), try get(.csvCaptionKey, String.self))
            (steps, batchSize, warmup) = (try get(.steps, Int.self), try get(.batchSize, Int.self), try get(.warmup, Int.self))
            (microBatches, checkpointEvery, logEvery) = (try get(.microBatches, Int.self), try get(.checkpointEvery, Int.self),
                                                         try get(.logEvery, Int.self))
            (learningRate, weightDecay) = (try get(.learningRate, Float.self), try get(.weightDecay, Float.self))
            maxGradientNorm = try get(.maxGradientNorm, Float.self)
            lockImage = try get(.lockImage, Bool.self)
            seed = try get(.seed, UInt64.self)
        }

        struct BadSetting: Error { let key: String }

        /// A regular file of at most 1 MiB holding such an object; unknown keys are errors.
        static func read(_ path: String) throws -> ConfigFile {
            let bytes = try readSmallFile(path, limit: 1 << 20, what: "the settings file")
            guard let object = JSONValue.parse(bytes)?.object else { throw CLIError.settings(path: path, reason: "not a JSON object of settings") }
            let known = Set(CodingKeys.allCases.map(\.rawValue))
            if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
                throw CLIError.settings(path: path, reason: "unknown setting '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
            }
            do { return try JSONDecoder().decode(ConfigFile.self, from: Data(bytes)) } catch let error as BadSetting {
                throw CLIError.settings(path: path, reason: "setting '\(error.key)' has the wrong type or value (a whole number, a number, true/false or a string, as the option takes)")
            }
        }
    }
}
