import CLIPImage
import CLIPLayers
import CLIPTensor
import CLIPWeights
import Foundation

/// What a run has done besides its weights: the data position, skipped examples, and one history row per step.
struct RunState {
    var position = 0
    var skipped = 0
    /// step, loss, learning rate, logit scale, accuracy, gradient norm.
    var history: [[Float]] = []

    static let columns = ["step", "loss", "learning_rate", "logit_scale", "accuracy", "gradient_norm"]

    var losses: [Float] { history.map { $0[1] } }

    mutating func record(_ r: Trainer.StepReport, batch: Batch) {
        position = batch.nextPosition
        skipped += batch.skipped
        history.append([Float(r.step), r.loss, r.learningRate, r.logitScale, r.accuracy, Float(r.gradientNorm)])
    }

    var csv: String {
        var out = Self.columns.joined(separator: ",") + "\n"
        for row in history {
            out += "\(Int(row[0]))," + row.dropFirst().map { "\($0)" }.joined(separator: ",") + "\n"
        }
        return out
    }

    /// The state file: parameters (`param.`), AdamW moments (`adam.m.`, `adam.v.`), the history, and metadata.
    func encode(_ trainer: Trainer, settings: TrainingSettings) -> [UInt8] {
        var tensors: [(name: String, tensor: Tensor)] = []
        for (name, t) in trainer.parameters.ordered { tensors.append(("param.\(name)", t)) }
        for name in trainer.parameters.names {
            guard let m = trainer.optimizer.moments[name], let shape = trainer.parameters.values[name]?.shape else { continue }
            tensors.append(("adam.m.\(name)", Tensor(uncheckedShape: shape, scalars: m.first)))
            tensors.append(("adam.v.\(name)", Tensor(uncheckedShape: shape, scalars: m.second)))
        }
        tensors.append(("history", Tensor(uncheckedShape: [history.count, Self.columns.count], scalars: history.flatMap { $0 })))
        let metadata = ["step": "\(trainer.step)", "position": "\(position)", "skipped": "\(skipped)",
                        "settings": settings.fingerprint, "producer": "swift-clip train"]
        return SafeTensorsWriter.encode(tensors, metadata: metadata)
    }

    /// Reads `path` into `trainer` (parameters, optimizer) and returns the rest; refuses a state written with
    /// other settings or for another architecture, naming the difference.
    static func load(_ path: String, settings: TrainingSettings, into trainer: inout Trainer) throws(TrainingError) -> RunState {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw .checkpoint("cannot resume: \(error)")
        }
        guard settings.isFingerprint(file.metadata["settings"]) else {
            throw .checkpoint("cannot resume from \(path): it was written with other settings (data, batch size, learning rate, seed, model, precision …) than these; resume with the same ones or start a new output")
        }
        guard let step = Int(file.metadata["step"] ?? ""), let position = Int(file.metadata["position"] ?? ""),
              let skipped = Int(file.metadata["skipped"] ?? ""), step >= 0, position >= 0 else {
            throw .checkpoint("\(path): metadata lacks a valid step or data position")
        }
        guard step <= settings.steps else {
            throw .checkpoint("\(path) is at step \(step), past the \(settings.steps) steps asked for")
        }
        var moments: [String: (first: [Float], second: [Float])] = [:]
        do throws(WeightFileError) {
            for name in trainer.parameters.names {
                guard let current = trainer.parameters.values[name] else { continue }
                let value = try file.floatTensor("param.\(name)")
                guard value.shape == current.shape else {
                    throw WeightFileError(file: path, .invalidEntry(tensor: "param.\(name)", message: "shape \(value.shape), the model has \(current.shape)"))
                }
                trainer.parameters.values[name] = value
                if file.tensorInfos.contains(where: { $0.name == "adam.m.\(name)" }) {
                    moments[name] = (try file.floatTensor("adam.m.\(name)").scalars, try file.floatTensor("adam.v.\(name)").scalars)
                }
            }
            let history = try file.floatTensor("history")
            var state = RunState(position: position, skipped: skipped)
            let width = columns.count
            guard history.count == step * width else {
                throw WeightFileError(file: path, .invalidEntry(tensor: "history", message: "\(history.count / width) rows for step \(step)"))
            }
            state.history = (0..<step).map { Array(history.scalars[($0 * width)..<(($0 + 1) * width)]) }
            trainer.optimizer.restore(step: step, moments: moments)
            return state
        } catch {
            throw .checkpoint("cannot resume: \(error)")
        }
    }
}

/// The loss curve as a PNG: loss (log scale) against step, on a light grid; no text (the CSV has the numbers).
enum LossPlot {
    static func png(_ losses: [Float], width: Int = 640, height: Int = 360) throws -> [UInt8] {
        var rgb = [UInt8](repeating: 255, count: width * height * 3)
        func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
            guard x >= 0, x < width, y >= 0, y < height else { return }
            let i = 3 * (y * width + x)
            (rgb[i], rgb[i + 1], rgb[i + 2]) = c
        }
        let (left, right, top, bottom) = (40, width - 10, 10, height - 30)
        for k in 0...10 {
            let x = left + (right - left) * k / 10, y = top + (bottom - top) * k / 10
            for yy in top...bottom { set(x, yy, (225, 225, 225)) }
            for xx in left...right { set(xx, y, (225, 225, 225)) }
        }
        for xx in left...right { set(xx, bottom, (0, 0, 0)) }
        for yy in top...bottom { set(left, yy, (0, 0, 0)) }
        let finite = losses.filter { $0.isFinite && $0 > 0 }
        guard let lo = finite.min(), let hi = finite.max(), losses.count > 1 else {
            return try PNGEncoder.encode(rgb: rgb, width: width, height: height, name: "loss plot")
        }
        let (a, b) = (log(Double(lo)), log(Double(max(hi, lo * 1.001))))
        var previous: (Int, Int)?
        for (i, l) in losses.enumerated() where l.isFinite && l > 0 {
            let x = left + Int(Double(right - left) * Double(i) / Double(losses.count - 1))
            let y = bottom - Int(Double(bottom - top) * (log(Double(l)) - a) / (b - a))
            if let (px, py) = previous {
                let n = max(abs(x - px), abs(y - py), 1)
                for s in 0...n { set(px + (x - px) * s / n, py + (y - py) * s / n, (200, 40, 40)) }
            }
            previous = (x, y)
        }
        return try PNGEncoder.encode(rgb: rgb, width: width, height: height, name: "loss plot")
    }
}
