import CLIPFiles
@testable import CLIPIndex
import CLIPKit
import CLIPTestSupport
import Foundation
import Testing

@Suite("model fingerprints")
struct ModelFingerprintTests {
    /// A checkpoint stand-in: the fingerprint hashes its bytes, whatever they are.
    static func checkpoint() throws -> (dir: String, path: String) {
        let dir = try scratchDirectory("fingerprint")
        let path = dir + "/weights.safetensors"
        try Data((0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }).write(to: URL(fileURLWithPath: path))
        return (dir, path)
    }

    @Test("changing any preprocessing field, or the precision, changes the fingerprint",
          arguments: ["resolution", "mean", "std", "resize squash", "resize longest", "interpolation", "patch budget", "precision"])
    func everyFieldCounts(change: String) throws {
        let (dir, path) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = Preprocessing(resolution: 224)
        var other = base
        var precision = Precision.fp32
        switch change {
        case "resolution": other.resolution = 225
        case "mean": other.mean[2] += 1e-6
        case "std": other.std[0] = 0.5
        case "resize squash": other.resizeMode = .squash
        case "resize longest": other.resizeMode = .longest
        case "interpolation": other.interpolation = .bilinear
        case "patch budget": other.patchBudget = .init(patchSize: 16, maxPatches: 256)
        default: precision = .int8
        }
        let a = try ModelFingerprint.of(checkpoint: path, preprocessing: base, precision: .fp32, cache: nil)
        let b = try ModelFingerprint.of(checkpoint: path, preprocessing: other, precision: precision, cache: nil)
        #expect(a != b, "\(change) left the fingerprint as it was")
    }

    @Test("every preprocessing field is in the fingerprint's text (a new field must be added there and here)")
    func fieldsAreCounted() {
        let fields = Mirror(reflecting: Preprocessing(resolution: 224)).children.compactMap(\.label)
        #expect(fields.sorted() == ["interpolation", "mean", "patchBudget", "resizeMode", "resolution", "std"])
    }

    @Test("OpenAI's preprocessing keeps the fingerprint indexes were made with before resize and interpolation counted")
    func openAIsIsUnchanged() throws {
        let (dir, path) = try Self.checkpoint()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Preprocessing(resolution: 224)
        let before = ["swift-clip index v1", try SHA256.file(path), "resolution 224 mean \(p.mean) std \(p.std)", "precision fp32"]
        #expect(try ModelFingerprint.of(checkpoint: path, preprocessing: p, precision: .fp32, cache: nil)
                == SHA256.hex(Array(before.joined(separator: "\n").utf8)))
    }
}
