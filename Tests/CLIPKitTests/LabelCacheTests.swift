import CLIPKit
import CLIPTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// Label embeddings kept beside the packed weights (`zeroShotClassifier(labels:templates:cache:)`): a hit gives the
// classifier built without the cache bit for bit, and only for the same weights, precision, labels and templates.

private func cacheDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "label-cache-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func labelFiles(_ cache: PackedWeightCache) -> [String] {
    cache.entries().map(\.path).filter { $0.hasSuffix(".cliplabels") }
}

private let labels = ["a red heart", "a blue star", "a cat"]
private let templates = ["a photo of {}.", "a drawing of {}."]

@Suite("label embeddings in the packed-weight cache")
struct LabelCacheTests {
    @Test("a second classifier comes from the file, bit for bit what the text tower gives", arguments: Precision.allCases.filter(\.isAvailable))
    func hitEqualsFresh(precision: Precision) throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let clip = try CLIPPipeline.load(tinyModel, precision: precision, showProgress: false, weightCache: cache)
        let fresh = try clip.zeroShotClassifier(labels: labels, templates: templates)
        let first = try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        #expect(first.weights.scalars == fresh.weights.scalars)
        let files = labelFiles(cache)
        try #require(files.count == 1)
        // Another process: a pipeline of its own.
        let again = try CLIPPipeline.load(tinyModel, precision: precision, showProgress: false, weightCache: cache)
        let second = try again.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        #expect(second.weights.scalars.map(\.bitPattern) == fresh.weights.scalars.map(\.bitPattern))
        #expect(second.labels == labels && second.logitScale == fresh.logitScale && second.objective == fresh.objective)
        #expect(labelFiles(cache) == files, "no second file")
        let entry = try #require(cache.entries().first { $0.path == files[0] })
        #expect(entry.source.contains("tiny_vit.safetensors") && entry.source.contains("3 labels") && entry.precision == precision.rawValue)
    }

    @Test("an image-only pipeline classifies from the cache, as the whole model does; without an entry it has none, and refuses text")
    func imageOnlyPipelineReadsTheCache() throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let images = try CLIPPipeline.load(tinyModel, showProgress: false, towers: .imageOnly, weightCache: cache)
        #expect(images.cachedZeroShotClassifier(labels: labels, templates: templates, cache: cache) == nil)
        do {
            _ = try images.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
            Issue.record("an image-only pipeline encoded text")
        } catch {
            #expect(error.description.contains("image-only"), "\(error.description)")
        }
        let texts = try CLIPPipeline.load(tinyModel, showProgress: false, towers: .textOnly, weightCache: cache)
        let stored = try texts.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        let whole = try CLIPPipeline.load(tinyModel, showProgress: false)
        #expect(stored.weights.scalars == (try whole.zeroShotClassifier(labels: labels, templates: templates).weights.scalars))
        let found = try #require(images.cachedZeroShotClassifier(labels: labels, templates: templates, cache: cache))
        #expect(found.weights.scalars.map(\.bitPattern) == stored.weights.scalars.map(\.bitPattern))
        #expect(found.logitScale == stored.logitScale && found.labels == labels)
        #expect(images.cachedZeroShotClassifier(labels: labels.reversed(), templates: templates, cache: cache) == nil)
    }

    /// The file's values are replaced (checksum made again, as anyone can): the classifier then shows them, which
    /// proves it read the file and did not run the text tower.
    @Test("a hit does not run the text tower")
    func hitReadsTheFile() throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let clip = try CLIPPipeline.load(tinyModel, showProgress: false, weightCache: cache)
        let first = try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        let key = try #require(clip.labelCacheKey(labels: labels, templates: templates))
        let e = clip.model.configuration.embedDim
        let planted = (0..<(labels.count * e)).map { Float($0 % 7) / 7 }
        try cache.storeLabelEmbeddings(planted, key: key, rows: labels.count, dimension: e, source: "planted", precision: .fp32)
        #expect(try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache).weights.scalars == planted)
        #expect(first.weights.scalars != planted)
    }

    @Test("other labels, their order, other templates or another precision are other keys", arguments: [
        "labels", "order", "templates", "split", "activation",
    ])
    func keysDiffer(change: String) throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clip = try CLIPPipeline.load(tinyModel, showProgress: false, weightCache: PackedWeightCache(directory: dir))
        let base = try #require(clip.labelCacheKey(labels: labels, templates: templates))
        let other: String?
        switch change {
        case "labels": other = clip.labelCacheKey(labels: labels + ["a dog"], templates: templates)
        case "order": other = clip.labelCacheKey(labels: labels.reversed(), templates: templates)
        case "templates": other = clip.labelCacheKey(labels: labels, templates: ["{}"])
        // One label "a\n1 b" against two labels "a" and "b": the lengths keep the lists apart.
        case "split": other = clip.labelCacheKey(labels: ["a\n1 b"], templates: templates)
            #expect(clip.labelCacheKey(labels: ["a", "b"], templates: templates) != other)
        case "activation":
            // A setting the shapes do not show (an open_clip config's act_layer) is in the key's configuration.
            var configuration = clip.model.configuration
            configuration.text.activation = configuration.text.activation == .gelu ? .quickGELU : .gelu
            #expect(base.contains(clip.model.configuration.fingerprintText))
            other = base.replacingOccurrences(of: clip.model.configuration.fingerprintText, with: configuration.fingerprintText)
        default:
            other = nil
        }
        #expect(other != nil && other != base)
    }

    @Test("another precision is another key", .enabled(if: Precision.int8.isAvailable, "int8 kernels need AVX2, AVX512-VNNI or NEON DotProd"))
    func precisionKeysDiffer() throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fp32 = try CLIPPipeline.load(tinyModel, showProgress: false, weightCache: PackedWeightCache(directory: dir))
        let int8 = try CLIPPipeline.load(tinyModel, precision: .int8, showProgress: false, weightCache: PackedWeightCache(directory: dir))
        let a = fp32.labelCacheKey(labels: labels, templates: templates), b = int8.labelCacheKey(labels: labels, templates: templates)
        #expect(a != nil && b != nil && a != b)
    }

    @Test("a damaged, truncated or foreign file is refused and written again", arguments: ["flip", "truncate", "foreign", "link"])
    func damagedFiles(damage: String) throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let clip = try CLIPPipeline.load(tinyModel, showProgress: false, weightCache: cache)
        let fresh = try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        let path = try #require(labelFiles(cache).first)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        switch damage {
        case "flip": bytes[bytes.count / 2] ^= 0x40
        case "truncate": bytes.removeLast(100)
        case "foreign":
            // Another key's valid file under this name: its key is checked byte for byte.
            let key = try #require(clip.labelCacheKey(labels: ["x", "y", "z"], templates: templates))
            try cache.storeLabelEmbeddings(fresh.weights.scalars.map { -$0 }, key: key, rows: 3,
                                           dimension: clip.model.configuration.embedDim, source: "other", precision: .fp32)
            let otherPath = try #require(labelFiles(cache).first { $0 != path })
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: otherPath)))
            unlink(otherPath)
        default:
            try Data("not ours".utf8).write(to: URL(fileURLWithPath: dir + "/target"))
            unlink(path)
            symlink(dir + "/target", path)
        }
        if damage != "link" { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
        let again = try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        #expect(again.weights.scalars == fresh.weights.scalars)
        // Written again: the next one is a hit on a sound file.
        let bytesNow = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var isLink = stat()
        #expect(lstat(path, &isLink) == 0 && isLink.st_mode & S_IFMT == S_IFREG)
        #expect(bytesNow != bytes || damage == "link")
        #expect((try? String(contentsOfFile: dir + "/target", encoding: .utf8)) ?? "not ours" == "not ours", "a link's target is never written")
    }

    @Test("without a known checkpoint digest (no cache at load) the classifier is built and nothing is written")
    func unknownWeights() throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let clip = try CLIPPipeline.load(tinyModel, showProgress: false)
        #expect(clip.labelCacheKey(labels: labels, templates: templates) == nil)
        let c = try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        #expect(c.weights.scalars == (try clip.zeroShotClassifier(labels: labels, templates: templates)).weights.scalars)
        #expect(labelFiles(cache).isEmpty)
    }

    @Test("clip cache clear removes label files too")
    func clearRemovesLabels() throws {
        let dir = try cacheDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let clip = try CLIPPipeline.load(tinyModel, showProgress: false, weightCache: cache)
        _ = try clip.zeroShotClassifier(labels: labels, templates: templates, cache: cache)
        #expect(labelFiles(cache).count == 1)
        _ = try cache.clear()
        #expect(cache.entries().isEmpty)
    }
}
