import CLIP
import CLIPImage
import CLIPLoading
import CLIPTensor
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Checkpoints covering every way a layer's packed weight is made: plain Linear layers, fused q/k/v (BERT), LayerScale
/// folded into a projection, BatchNorm folded into convolutions (ResNet), a TorchScript fp16-free archive, and the
/// pooling heads whose key/value projection is left out of the cache (SigLIP's MAP head, CoCa's attentional pooler).
private let cacheFixtures: [(checkpoint: String, config: String?)] = [
    ("vit_small.safetensors", nil),
    ("rn_small.safetensors", nil),
    ("formats/vit_small_torchscript.pt", nil),
    ("open_clip/ViT-B-32-layer-scale.safetensors", "open_clip/ViT-B-32-layer-scale.json"),
    ("open_clip/xlm-roberta-base-ViT-B-32.safetensors", "open_clip/xlm-roberta-base-ViT-B-32.json"),
    ("siglip/openclip_ViT-B-16-SigLIP.safetensors", "siglip/openclip_ViT-B-16-SigLIP.json"),
    ("open_clip/coca_ViT-B-32.safetensors", "open_clip/coca_ViT-B-32.json"),
    ("open_clip/MobileCLIP-S2.safetensors", "open_clip/MobileCLIP-S2.json"),  // folded branches packed, depthwise read
    // Hugging Face folders (CLIPModel, towers of different widths, SiglipModel): keyed by model.safetensors.
    ("formats/hf_vit_hd32", nil),
    ("formats/hf_mixed_towers", nil),
    ("siglip/hf_siglip_tiny", nil),
]

private func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "packed-cache-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Image and text embeddings of a loaded model on fixed inputs, as raw values (compared bit for bit).
private func outputs(_ loaded: LoadedModel) throws -> [Float] {
    let model = loaded.model
    let r = loaded.preprocessing.resolution
    let pixels = try Tensor(shape: [2, 3, r, r], scalars: (0..<(2 * 3 * r * r)).map { Float(($0 * 7919) % 255) / 127.5 - 1 })
    let context = model.configuration.text.contextLength
    let tokens = [[1, 5, 9, 2] + [Int](repeating: 0, count: context - 4), [3, 4, 2] + [Int](repeating: 0, count: context - 3)]
    var values: [Float] = []
    if case .notLoaded = model.text {} else { values += try model.encodeText(tokens).scalars }
    if case .notLoaded = model.visual {} else { values += try model.encodeImage(pixels).scalars }
    return values
}

private func inode(_ path: String) -> UInt64? {
    (try? FileManager.default.attributesOfItem(atPath: path))?[.systemFileNumber] as? UInt64
}

@Suite("packed-weight cache")
struct PackedWeightCacheTests {
    static let precisions = Precision.allCases.filter(\.isAvailable)

    @Test("a cached load equals an uncached one bit for bit, and the second load reuses the file",
          arguments: cacheFixtures.indices)
    func cachedLoadsAreExact(fixture: Int) throws {
        let (checkpoint, config) = cacheFixtures[fixture]
        let path = "\(fixtureDirectory)/\(checkpoint)", configPath = config.map { "\(fixtureDirectory)/\($0)" }
        for precision in Self.precisions {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let cache = PackedWeightCache(directory: dir)
            let expected = try outputs(CLIPModel.load(path: path, openCLIPConfig: configPath, precision: precision))
            let first = try outputs(CLIPModel.load(path: path, openCLIPConfig: configPath, precision: precision, cache: cache))
            let entries = cache.entries()
            try #require(entries.count == 1, "\(checkpoint) \(precision): \(entries.map(\.path))")
            #expect(entries[0].source == path && entries[0].precision == precision.rawValue)
            let written = inode(entries[0].path)
            let second = try outputs(CLIPModel.load(path: path, openCLIPConfig: configPath, precision: precision, cache: cache))
            #expect(first == expected, "\(checkpoint) \(precision): first (writing) load differs")
            #expect(second == expected, "\(checkpoint) \(precision): load from the cache differs")
            #expect(inode(entries[0].path) == written, "\(checkpoint) \(precision): a complete cache file was rewritten")
        }
    }

    /// The packed layout depends on the weights and the shapes alone, so the file is shared; what the
    /// configuration changes at run time (here the text tower's activation) must still follow config.json.
    @Test("a Hugging Face folder whose config.json changes loads as the new config says, through the cache")
    func huggingFaceConfigIsInTheKey() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let folder = dir + "/model"
        try FileManager.default.copyItem(atPath: "\(fixtureDirectory)/formats/hf_vit_hd32", toPath: folder)
        let cache = PackedWeightCache(directory: dir + "/cache")
        let before = try outputs(CLIPModel.load(path: folder, cache: cache))
        #expect(cache.entries().count == 1)
        let configPath = folder + "/config.json"
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        var text = try #require(config["text_config"] as? [String: Any])
        text["hidden_act"] = "gelu"
        config["text_config"] = text
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        let expected = try outputs(CLIPModel.load(path: folder))
        #expect(expected != before, "the edit changes the outputs")
        #expect(try outputs(CLIPModel.load(path: folder, cache: cache)) == expected)
        #expect(try outputs(CLIPModel.load(path: folder, cache: cache)) == expected)
    }

    enum Damage: String, CaseIterable {
        case truncated, emptied, trailerPointsOutside, headerGarbage, packOffsetOutside, foreignKey
        case flippedWeightBit, zeroedPage, headerKernelRenamed, fifo, directory
    }

    @Test("a damaged or foreign cache file is refused, the load is still exact, and the file is rebuilt",
          arguments: Damage.allCases)
    func damagedFilesAreRebuilt(damage: Damage) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let path = "\(fixtureDirectory)/vit_small.safetensors"
        let expected = try outputs(CLIPModel.load(path: path))
        _ = try CLIPModel.load(path: path, cache: cache)
        let file = try #require(cache.entries().first).path
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let n = bytes.count
        switch damage {
        case .truncated: bytes = Array(bytes[..<(n / 2)])
        case .emptied: bytes = []
        case .trailerPointsOutside:
            for i in 0..<8 { bytes[n - 32 + i] = 0xFF }
        case .headerGarbage:
            let offset = Int(bytes[(n - 32)...].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            for i in offset..<min(offset + 40, n - 32) { bytes[i] = UInt8(ascii: "{") }
        case .packOffsetOutside:
            let text = String(decoding: bytes, as: UTF8.self)
            // Every stored offset made huge: the JSON stays valid, the offsets point past the end.
            let edited = text.replacingOccurrences(of: "\"offsets\":[", with: "\"offsets\":[99999999999,")
            bytes = Array(edited.utf8)
        case .foreignKey:
            let other = "\(fixtureDirectory)/vit_small_f16.safetensors"
            let otherDir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: otherDir) }
            let otherCache = PackedWeightCache(directory: otherDir)
            _ = try CLIPModel.load(path: other, cache: otherCache)
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try #require(otherCache.entries().first).path)))
        case .flippedWeightBit:
            bytes[64] ^= 0x10  // the first array starts at 64
        case .zeroedPage:
            for i in 64..<(64 + 4096) { bytes[i] = 0 }
        case .headerKernelRenamed:
            let text = String(decoding: bytes, as: UTF8.self)
            bytes = Array(text.replacingOccurrences(of: "\"kernel\":\"\(Precision.fp32.kernels[0].rawValue)\"",
                                                    with: "\"kernel\":\"portable\"").utf8)
        case .fifo, .directory:
            bytes = []
        }
        try FileManager.default.removeItem(atPath: file)
        switch damage {
        case .fifo: #expect(mkfifo(file, 0o644) == 0)
        case .directory: try FileManager.default.createDirectory(atPath: file, withIntermediateDirectories: false)
        default: try Data(bytes).write(to: URL(fileURLWithPath: file))
        }
        let damagedInode = inode(file)
        let loaded = try outputs(CLIPModel.load(path: path, cache: cache))
        if damage == .flippedWeightBit || damage == .zeroedPage {
            #expect(inode(file) != damagedInode, "the damaged file was not rewritten")
        }
        if damage == .fifo || damage == .directory {
            // Not ours to remove: the load goes on without the cache, and does not hang on the FIFO.
            #expect(loaded == expected)
            #expect(cache.entries().isEmpty)
            return
        }
        #expect(loaded == expected)
        let rebuilt = try #require(cache.entries().first)
        #expect(cache.entries().count == 1)
        #expect(rebuilt.source == path, "the rebuilt file names \(rebuilt.source)")
        #expect(try outputs(CLIPModel.load(path: path, cache: cache)) == expected)
    }

    @Test("a checkpoint rewritten in place gets its own cache file, not the old one's weights")
    func rewrittenCheckpointIsNotConfused() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir + "/cache")
        let path = dir + "/model.safetensors"
        try FileManager.default.copyItem(atPath: "\(fixtureDirectory)/vit_small.safetensors", toPath: path)
        _ = try CLIPModel.load(path: path, cache: cache)
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: "\(fixtureDirectory)/vit_small_f16.safetensors", toPath: path)
        let expected = try outputs(CLIPModel.load(path: path))
        #expect(try outputs(CLIPModel.load(path: path, cache: cache)) == expected)
        #expect(try outputs(CLIPModel.load(path: path, cache: cache)) == expected)
        #expect(cache.entries().count == 2)
    }

    @Test("a one-tower load uses the file written for both towers; loading both writes that file and drops the one-tower file",
          arguments: [CLIPModel.Towers.textOnly, .imageOnly])
    func oneTowerLoadsShareTheFullFile(towers: CLIPModel.Towers) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let path = "\(fixtureDirectory)/vit_small.safetensors"
        let expected = try outputs(CLIPModel.load(path: path, towers: towers))
        #expect(try outputs(CLIPModel.load(path: path, towers: towers, cache: cache)) == expected)
        let single = try #require(cache.entries().first).path
        #expect(cache.entries().count == 1)
        let whole = try outputs(CLIPModel.load(path: path, cache: cache))
        #expect(cache.entries().count == 1 && !FileManager.default.fileExists(atPath: single), "the one-tower file was kept")
        let both = try #require(cache.entries().first)
        #expect(try outputs(CLIPModel.load(path: path, towers: towers, cache: cache)) == expected)
        #expect(cache.entries().map(\.path) == [both.path], "the one-tower load did not use the file for both towers")
        // What one tower computes is what that tower computes in the whole model.
        let n = expected.count
        #expect(towers == .textOnly ? Array(whole.prefix(n)) == expected : Array(whole.suffix(n)) == expected)
    }

    @Test("an image-only model refuses text, a text-only one images, naming the tower")
    func missingTowersAreNamed() throws {
        let path = "\(fixtureDirectory)/vit_small.safetensors"
        let images = try CLIPModel.load(path: path, towers: .imageOnly).model
        #expect(throws: CLIPError.textTowerNotLoaded) { try images.encodeText([[1, 2]]) }
        #expect(CLIPError.textTowerNotLoaded.description.contains("image-only"))
        let texts = try CLIPModel.load(path: path, towers: .textOnly).model
        let r = texts.configuration.imageResolution
        #expect(throws: CLIPError.imageTowerNotLoaded) { try texts.encodeImage(Tensor(uncheckedZeros: [1, 3, r, r])) }
    }

    @Test("a damaged file for both towers is dropped by the text-only load that met the damage, not met again")
    func textOnlyLoadDropsDamagedFullFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let path = "\(fixtureDirectory)/vit_small.safetensors"
        let expected = try outputs(CLIPModel.load(path: path, towers: .textOnly))
        _ = try CLIPModel.load(path: path, cache: cache)
        let both = try #require(cache.entries().first).path
        // Damage every array: whatever the text tower takes first fails its checksum.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: both)))
        let headerAt = Int(bytes[(bytes.count - 32)...].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        for i in stride(from: 64, to: headerAt, by: 4) { bytes[i] ^= 0x01 }
        try Data(bytes).write(to: URL(fileURLWithPath: both))
        #expect(try outputs(CLIPModel.load(path: path, towers: .textOnly, cache: cache)) == expected)
        #expect(!FileManager.default.fileExists(atPath: both), "the damaged file for both towers was kept")
        let text = try #require(cache.entries().first).path
        let written = inode(text)
        #expect(try outputs(CLIPModel.load(path: path, towers: .textOnly, cache: cache)) == expected)
        #expect(inode(text) == written, "the text-only file was rewritten again")
    }

    @Test("the directory is kept under its size limit, least recently used first; clear empties it")
    func sizeLimitAndClear() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir, sizeLimit: 1)
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/vit_small.safetensors", cache: cache)
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/rn_small.safetensors", cache: cache)
        let left = cache.entries()
        #expect(left.count == 1 && left.first?.source.hasSuffix("rn_small.safetensors") == true, "\(left.map(\.source))")
        let freed = try cache.clear()
        #expect(freed == left.first?.bytes)
        #expect(cache.entries().isEmpty)
    }

    @Test("clear removes the cache's own files only, temporaries included; trim removes abandoned temporaries")
    func clearTouchesOnlyItsOwnFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = PackedWeightCache(directory: dir)
        let checkpoint = dir + "/checkpoints/mine.safetensors"
        try FileManager.default.createDirectory(atPath: dir + "/checkpoints", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(fixtureDirectory)/vit_small.safetensors", toPath: checkpoint)
        let notes = dir + "/notes.txt"
        try Data("mine".utf8).write(to: URL(fileURLWithPath: notes))
        // Old enough that the digest is remembered.
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: checkpoint)
        _ = try CLIPModel.load(path: checkpoint, cache: cache)
        let abandoned = try #require(cache.entries().first).path + ".partial-0123abcd"
        try Data(count: 1000).write(to: URL(fileURLWithPath: abandoned))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)], ofItemAtPath: abandoned)
        _ = try CLIPModel.load(path: "\(fixtureDirectory)/rn_small.safetensors", cache: cache)
        #expect(!FileManager.default.fileExists(atPath: abandoned), "an abandoned temporary survived a store")
        try Data(count: 1000).write(to: URL(fileURLWithPath: abandoned))
        try cache.clear()
        #expect(cache.entries().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: abandoned))
        #expect(FileManager.default.fileExists(atPath: checkpoint) && FileManager.default.fileExists(atPath: notes))
        #expect(try outputs(CLIPModel.load(path: checkpoint, cache: cache)) == outputs(CLIPModel.load(path: checkpoint)))
    }

    @Test("an unwritable cache directory is passed over: the load still succeeds")
    func unwritableCacheIsPassedOver() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let blocker = dir + "/file"
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: blocker))
        let cache = PackedWeightCache(directory: blocker + "/cache")
        let path = "\(fixtureDirectory)/vit_small.safetensors"
        #expect(try outputs(CLIPModel.load(path: path, cache: cache)) == outputs(CLIPModel.load(path: path)))
    }
}
