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
