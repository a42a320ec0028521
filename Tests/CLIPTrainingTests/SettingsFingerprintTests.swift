import CLIPTraining
import Foundation
import Testing

// A run's settings are fingerprinted into each checkpoint so that a resume with other settings is refused. The
// fingerprint is now written by the one JSON encoder (slashes unescaped); checkpoints written before it escaped them.

@Test("a checkpoint's settings fingerprint from before the one JSON encoder (slashes escaped) still resumes; other settings do not")
func legacySettingsFingerprint() throws {
    let settings = TrainingSettings(data: "/data/shapes/train", steps: 100, batchSize: 8, output: "/runs/a.safetensors")
    #expect(settings.fingerprint.contains("/data/shapes/train"))
    let legacy = JSONEncoder()
    legacy.outputFormatting = [.sortedKeys]
    var copy = settings
    (copy.steps, copy.checkpointEvery, copy.logEvery, copy.output) = (0, 0, 0, "")
    let old = String(decoding: try legacy.encode(copy), as: UTF8.self)
    #expect(old.contains("\\/data\\/shapes"))
    #expect(settings.isFingerprint(old))
    #expect(settings.isFingerprint(settings.fingerprint))
    let other = TrainingSettings(data: "/data/other", steps: 100, batchSize: 8, output: "/runs/a.safetensors")
    #expect(!settings.isFingerprint(other.fingerprint))
    #expect(!settings.isFingerprint(nil))
}

@Test("the settings a checkpoint recorded before the precision setting existed still resume (fp32 omitted or given), not in bf16")
func fingerprintFromBeforePrecision() {
    // Recorded by `clip train --data synthetic-varied4 --steps 17000 --batch-size 128` on 2026-12-07, the run that
    // trained the shipped default model.
    let recorded = #"{"architecture":"default","augmentation":"crop","batchSize":128,"checkpointEvery":0,"csvCaptionKey":"title","csvImageKey":"filepath","data":"synthetic-varied4","learningRate":0.0005,"lockImageTower":false,"logEvery":0,"maxGradientNorm":1,"microBatches":1,"output":"","seed":0,"steps":0,"weightDecay":0.2}"#
    var settings = TrainingSettings(data: "synthetic-varied4", steps: 17000, batchSize: 128, output: "/runs/shapes.safetensors")
    #expect(settings.isFingerprint(recorded))
    settings.precision = .fp32
    #expect(settings.isFingerprint(recorded))
    settings.precision = .bf16
    #expect(!settings.isFingerprint(recorded))
    #expect(settings.fingerprint.contains(#""precision":"bf16""#))
}
