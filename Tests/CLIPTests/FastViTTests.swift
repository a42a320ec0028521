import CLIP
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

// MobileCLIP's FastViT towers. Parity with open_clip + timm (training-form checkpoints folded at load) is
// `openCLIPArchitectures` over the MobileCLIP-S2 (mci0–mci2's structure) and MobileCLIP2-S4 (mci3/mci4's) fixtures.

@Test("MobileCLIP settings that change the numbers, and configs of another MCi structure, are refused by name", arguments: [
    ("MobileCLIP-S2", "timm_pool", "\"token\"", "vision_cfg.timm_pool"),
    ("MobileCLIP-S2", "timm_pool", "null", "vision_cfg.timm_pool"),
    ("MobileCLIP-S2", "timm_proj", "\"none\"", "timm_proj is none"),
    ("MobileCLIP-S2", "timm_proj", "\"linear\"", "vision_cfg.timm_proj"),
    ("MobileCLIP-S2", "timm_model_name", "\"fastvit_mci3\"", "they are another model's"),
    ("MobileCLIP-S2", "timm_model_name", "\"fastvit_sa12\"", "does not implement"),
    ("MobileCLIP2-S4", "timm_model_name", "\"fastvit_mci2\"", "they are another model's"),
    ("MobileCLIP2-S4", "image_size", "31", "outside the 64...1024 pixels"),
    ("MobileCLIP-S2", "image_size", "2048", "outside the 32...1024 pixels"),
])
func fastViTSettingsAreRefused(arch: String, key: String, json: String, message: String) throws {
    try expectVisionSettingRefused(arch, key, json, message)
}

@Test("FastViT weights without their open_clip config, or with another tower's config, are refused")
func fastViTNeedsItsConfig() throws {
    try expectTimmTowerNeedsItsConfig("MobileCLIP-S2", otherWeights: "ViT-B-32", tower: "a FastViT image tower")
}

@Test("MobileCLIP: the config's image size is the input side; any side down to the stem and halvings runs")
func fastViTSides() throws {
    let loaded = try loadOpenCLIPFixture("MobileCLIP-S2", as: "size", edit: settingVision("image_size", 256))
    #expect(loaded.preprocessing.resolution == 256)
    guard case .fastViT(let v) = loaded.model.configuration.vision else { Issue.record("not a FastViT"); return }
    #expect(v.resolution == 256 && v.depths == [1, 2, 1, 2] && v.widths == [12, 24, 24, 96] && v.finalWidth == 192)
    #expect(v.mlpHidden == [36, 72, 72, 288] && v.attention == [false, false, false, true] && v.attentionNorm == .batchNorm)
    #expect(v.timmModel == "fastvit_mci2" && v.minimumResolution == 32)
    #expect(try loaded.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 33, 47])).shape == [1, 32])
    // timm_pool absent is open_clip's default, avg.
    _ = try loadOpenCLIPFixture("MobileCLIP-S2", as: "pool-absent", edit: settingVision("timm_pool", nil))
    #expect(throws: CLIPError.self) { try loaded.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 31, 64])) }
}

@Test("a FastViT checkpoint whose BatchNorm variance is below −ε is refused, naming the tensor")
func fastViTNegativeVariance() throws {
    let base = "\(fixtureDirectory)/open_clip/MobileCLIP-S2"
    let stored = try SafeTensorsFile(path: base + ".safetensors")
    let target = "visual.trunk.stages.1.blocks.0.token_mixer.mixer.identity.running_var"
    var tensors: [(String, Tensor)] = []
    for info in stored.tensorInfos where info.dtype.isFloatingPoint {  // num_batches_tracked (I64) is ignored anyway
        var t = try stored.floatTensor(info.name)
        if info.name == target { t.scalars[3] = -0.5 }
        tensors.append((info.name, t))
    }
    let path = try writeScratchBytes([], "fastvit-negative-variance.safetensors")
    try SafeTensorsWriter.write(tensors, to: path)
    #expect { _ = try CLIPModel.load(path: path, openCLIPConfig: base + ".json") } throws: {
        "\($0)".contains(target) && "\($0)".contains("element 3")
    }
}

@Test("FastViT sizes beyond the bounds are refused; random weights build and run")
func fastViTBounds() throws {
    let text = CLIPConfiguration.Text(contextLength: 8, vocabSize: 50, width: 16, heads: 1, layers: 1)
    func config(_ edit: (inout CLIPConfiguration.FastViTConfiguration) -> Void) -> CLIPConfiguration {
        var v = CLIPConfiguration.FastViTConfiguration(
            depths: [1, 1, 1], widths: [8, 16, 32], mlpHidden: [24, 48, 96], attention: [false, false, true],
            positionalEmbedding: [false, false, true], squeezeExcite: [false, true, true], finalWidth: 64, resolution: 64,
            timmModel: "fastvit_mci0")
        edit(&v)
        return CLIPConfiguration(embedDim: 16, vision: .fastViT(v), text: text)
    }
    for (edit, named) in [({ (v: inout CLIPConfiguration.FastViTConfiguration) in v.repMixerKernel = 4 }, "odd windows"),
                          ({ $0.widths[1] = 12 }, "not a multiple"), ({ $0.widths[2] = 48; $0.finalWidth = 96 }, "32-wide heads"),
                          ({ $0.finalWidth = 40 }, "final convolution"), ({ $0.depths[0] = 0 }, "must be positive"),
                          ({ $0.attention = [true] }, "one setting each"), ({ $0.resolution = 8 }, "below 16"),
                          ({ $0.timmModel = nil }, "load it with its open_clip config"),
                          ({ $0.timmModel = "fastvit_sa12" }, "load it with its open_clip config"),  // no GELU after its large kernels
                          ({ $0.widths = [1_024, 2_048, 4_096]; $0.finalWidth = 8_192 }, "widths[0] is 1024"),
                          ({ $0.widths[2] = 8_192; $0.finalWidth = 16_384 }, "at most")] {
        #expect { _ = try CLIPModel(randomWeightsFor: config(edit)) } throws: { "\($0)".contains(named) }
    }
    let model = try CLIPModel(randomWeightsFor: config { _ in }, seed: 7)
    let out = try model.encodeImage(Tensor(uncheckedZeros: [2, 3, 64, 64]))
    #expect(out.shape == [2, 16] && out.scalars.allSatisfy(\.isFinite))
    // Sides above 1,024 are refused before anything is allocated for them (attention over the pixels is global).
    #expect(throws: CLIPError.self) { try model.encodeImage(Tensor(uncheckedZeros: [1, 3, 1_040, 64])) }
}

/// The MobileCLIP-S2 fixture with `edit` applied to its tensors, written to a scratch file.
private func editedMobileCLIP(_ name: String, _ edit: (String, inout Tensor) -> Void, drop: (String) -> Bool = { _ in false }) throws -> String {
    let stored = try SafeTensorsFile(path: "\(fixtureDirectory)/open_clip/MobileCLIP-S2.safetensors")
    var tensors: [(String, Tensor)] = []
    for info in stored.tensorInfos where info.dtype.isFloatingPoint && !drop(info.name) {
        var t = try stored.floatTensor(info.name)
        edit(info.name, &t)
        tensors.append((info.name, t))
    }
    let path = try writeScratchBytes([], "fastvit-\(name).safetensors")
    try SafeTensorsWriter.write(tensors, to: path)
    return path
}

@Test("a FastViT BatchNorm whose folded scale leaves the float range is refused, naming it")
func fastViTFoldOverflow() throws {
    let target = "visual.trunk.stages.2.blocks.0.mlp.conv.bn"
    let path = try editedMobileCLIP("overflow") { name, t in
        if name == target + ".weight" { t.scalars[1] = 1e37 }
        if name == target + ".running_var" { t.scalars[1] = 1e-30 }
    }
    let config = "\(fixtureDirectory)/open_clip/MobileCLIP-S2.json"
    #expect { _ = try CLIPModel.load(path: path, openCLIPConfig: config) } throws: {
        "\($0)".contains(target) && "\($0)".contains("channel 1")
    }
}

@Test("a MobileCLIP file already reparameterised for inference is refused, saying so")
func fastViTReparameterisedFile() throws {
    let path = try editedMobileCLIP("reparameterised", { _, _ in }, drop: { $0.contains(".stem.0.") })
    // A reparameterised stem block: one convolution with bias in place of the branches.
    let file = try SafeTensorsFile(path: path)
    var tensors: [(String, Tensor)] = []
    for info in file.tensorInfos { tensors.append((info.name, try file.floatTensor(info.name))) }
    tensors.append(("visual.trunk.stem.0.reparam_conv.weight", Tensor(uncheckedZeros: [12, 3, 3, 3])))
    tensors.append(("visual.trunk.stem.0.reparam_conv.bias", Tensor(uncheckedZeros: [12])))
    try SafeTensorsWriter.write(tensors, to: path)
    #expect { _ = try CLIPModel.load(path: path, openCLIPConfig: "\(fixtureDirectory)/open_clip/MobileCLIP-S2.json") } throws: {
        "\($0)".contains("already reparameterised")
    }
}
