#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIP
import CLIPFiles
import CLIPHub
import CLIPLoading
import CLIPImage
import CLIPLayers
import CLIPTensor
import CLIPTokenizer
import CLIPWeights
import Foundation

/// A whole training run as `clip train` performs it: data, initial weights, the step loop with prefetching,
/// progress, checkpoints every N steps and on Ctrl-C, resumption, and the final weights, loss CSV and plot.
///
/// Files, for output `model.safetensors`: the weights (OpenAI key names, loadable by the reference `clip` package
/// and open_clip), `model.state.safetensors` (weights, AdamW moments, loss history, data position, settings: what
/// `--resume` needs), `model.loss.csv` and `model.loss.png`. Each is replaced atomically, so a run killed at any
/// moment (kill -9, full disk) leaves the last complete checkpoint, and resuming from it gives bitwise the weights
/// of an uninterrupted run.
package struct TrainingRun {
    package let settings: TrainingSettings
    /// Where progress lines go.
    package var log: (String) -> Void

    package init(settings: TrainingSettings, log: @escaping (String) -> Void) {
        (self.settings, self.log) = (settings, log)
    }

    /// The state file beside `output`.
    package var statePath: String { Self.sibling(settings.output, "state.safetensors") }
    package var csvPath: String { Self.sibling(settings.output, "loss.csv") }
    package var plotPath: String { Self.sibling(settings.output, "loss.png") }

    static func sibling(_ output: String, _ suffix: String) -> String {
        (output.hasSuffix(".safetensors") ? String(output.dropLast(".safetensors".count)) : output) + "." + suffix
    }

    /// Runs (or, with `resume`, continues) the run; returns the final trainer.
    @discardableResult
    package func run(resume: Bool) throws(TrainingError) -> Trainer {
        try settings.validate()
        var (trainer, preprocessing) = try start()
        var state = RunState()
        if resume && FileManager.default.fileExists(atPath: statePath) {
            state = try RunState.load(statePath, settings: settings, into: &trainer)
            log("resuming at step \(trainer.step) of \(settings.steps) (data position \(state.position))")
        } else if resume {
            log("no checkpoint at \(statePath) yet: starting at step 0")
        }
        let data = try openData(resolution: preprocessing.resolution)
        let tokenizer: CLIPTokenizer
        do { tokenizer = try CLIPTokenizer.shared() } catch { throw .data("tokenizer: \(error)") }
        let loader = BatchLoader(data: data, batchSize: settings.batchSize,
                                 preprocessor: ImagePreprocessor(preprocessing),
                                 tokenizer: tokenizer, contextLength: trainer.configuration.text.contextLength, seed: settings.seed,
                                 augmentation: data is SyntheticData ? .none : settings.augmentation)
        log("training \(Self.describe(trainer)) on \(data.description): \(settings.steps) steps of \(settings.batchSize)")
        StopSignal.install()  // SIGINT/SIGTERM: checkpoint and stop after the current step
        let started = Date()
        let firstStep = trainer.step
        while trainer.step < settings.steps {
            let batch: Batch
            do { batch = try loader.next(at: state.position) } catch { throw .data(error.description) }
            if trainer.step + 1 < settings.steps { loader.prefetch(at: batch.nextPosition) }
            let report = try trainer.step(images: batch.images, texts: batch.tokens, microBatches: settings.microBatches)
            state.record(report, batch: batch)
            if batch.skipped > 0, state.skipped == batch.skipped || trainer.step % settings.logEvery == 0 {
                log("skipped \(batch.skipped) unusable example(s), \(state.skipped) so far: \(batch.skipReasons.first ?? "")")
            }
            if trainer.step % settings.logEvery == 0 || trainer.step == settings.steps {
                log(Self.progressLine(report, done: trainer.step - firstStep, total: settings.steps - firstStep,
                                      batch: settings.batchSize, elapsed: Date().timeIntervalSince(started)))
            }
            let interrupted = StopSignal.requested
            if trainer.step % settings.checkpointEvery == 0 || trainer.step == settings.steps || interrupted {
                try save(trainer, state)
            }
            if interrupted && trainer.step < settings.steps {
                log("interrupted: checkpoint at step \(trainer.step) written; run again with --resume to continue")
                throw .interrupted(step: trainer.step)
            }
        }
        log("wrote \(settings.output) (\(state.skipped) examples skipped in total)")
        return trainer
    }

    /// The trainer at step 0 and the preprocessing its images need.
    func start() throws(TrainingError) -> (Trainer, Preprocessing) {
        let parameters: NamedTensors, configuration: CLIPConfiguration, preprocessing: Preprocessing
        if let spec = settings.model {
            let location: ModelHub.Location
            do { location = try ModelHub().locate(spec) } catch { throw .data(error.description) }
            do {
                (parameters, configuration, preprocessing) = try CLIPModel.loadParameters(
                    path: location.path, openCLIP: location.openCLIPConfig)
            } catch { throw .model(error) }
            if case .transformer(let v) = configuration.vision, v.variableGrid {
                throw .configuration("\(spec) is a SigLIP 2 NaFlex model (each image its own patch grid); training it, even with its image tower locked, is not supported")
            }
        } else {
            guard let named = DefaultArchitecture.named(settings.architecture) else {
                throw .configuration("unknown architecture '\(settings.architecture)'")
            }
            configuration = named
            do { parameters = try CLIPModel.initialParameters(for: configuration, seed: settings.seed) } catch { throw .model(error) }
            preprocessing = Preprocessing(resolution: configuration.imageResolution)
        }
        let schedule = LearningRateSchedule(base: settings.learningRate, warmup: settings.warmupSteps, totalSteps: settings.steps)
        let trainer = Trainer(configuration: configuration, parameters: parameters,
                              optimizer: AdamW(weightDecay: settings.weightDecay), schedule: schedule,
                              maxGradientNorm: settings.maxGradientNorm > 0 ? settings.maxGradientNorm : nil,
                              lockedImageTower: settings.lockImageTower, precision: settings.precision?.products ?? .fp32)
        _ = try trainer.model()  // a checkpoint that cannot be built fails here, before any data is read
        return (trainer, preprocessing)
    }

    /// The data `settings.data` names.
    func openData(resolution: Int) throws(TrainingError) -> any TrainingData {
        let path = settings.data
        do throws(DataError) {
            if let style = SyntheticShapes.Style.allCases.first(where: { $0.dataName == path }) {
                return SyntheticData(SyntheticShapes(size: resolution, seed: settings.seed, style: style))
            }
            let lower = path.lowercased()
            if lower.hasSuffix(".csv") || lower.hasSuffix(".tsv") {
                return try FileData(table: path, imageKey: settings.csvImageKey, captionKey: settings.csvCaptionKey)
            }
            if lower.hasSuffix(".tar") { return try WebDataset(shards: [path]) }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw DataError.dataset(subject: path, reason: "no such file or folder (give a folder of images with .txt captions, a .csv/.tsv, .tar shards, or one of \(SyntheticShapes.Style.dataNames))")
            }
            let listing = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            if isDirectory.boolValue, listing.contains(where: { $0.hasSuffix(".tar") }) { return try WebDataset(shards: [path]) }
            let folder = try FileData(folder: path)
            if folder.skippedWithoutCaption > 0 { log("\(folder.skippedWithoutCaption) images without a .txt caption are left out") }
            return folder
        } catch {
            throw .data(error.description)
        }
    }

    static func describe(_ t: Trainer) -> String {
        let count = t.parameters.values.values.reduce(0) { $0 + $1.count }
        return "a CLIP of \(count) parameters\(t.lockedImageTower ? " (image tower locked)" : "")"
            + (t.precision == .bf16 ? ", products in bf16" : "")
    }

    static func progressLine(_ r: Trainer.StepReport, done: Int, total: Int, batch: Int, elapsed: Double) -> String {
        let rate = Double(done * batch) / max(elapsed, 1e-9)
        let eta = Double(total - done) * elapsed / Double(max(done, 1))
        return String(format: "step %d  loss %.4f  acc %.2f  temperature %.4f (scale %.2f)  lr %.2e  %.1f images/s  ETA %@",
                      r.step + 1, r.loss, r.accuracy, 1 / r.logitScale, r.logitScale, r.learningRate, rate, formatDuration(eta))
    }

    /// "1h05m" or "4m07s", for progress lines.
    package static func formatDuration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, t % 3600 / 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }

    /// Writes the weights, the state, the CSV and the plot, each atomically; the state last, so that a state file
    /// never refers to weights that were not written.
    func save(_ trainer: Trainer, _ state: RunState) throws(TrainingError) {
        do throws(FileError) {
            try OutputFile.write(SafeTensorsWriter.encode(trainer.parameters.ordered, metadata: ["format": "pt", "producer": "swift-clip train", "step": "\(trainer.step)"]), to: settings.output)
            try OutputFile.write(Array(state.csv.utf8), to: csvPath)
            if let png = try? LossPlot.png(state.losses) { try OutputFile.write(png, to: plotPath) }
            try OutputFile.write(state.encode(trainer, settings: settings), to: statePath)
        } catch {
            throw .checkpoint("cannot write the checkpoint: \(error) (the previous checkpoint is intact)")
        }
    }
}
