import CLIP
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

// ViTamin's towers. Parity with open_clip + timm is `openCLIPArchitectures` over the ViTamin-S (positions, a stem as
// wide as the first stage) and ViTamin-XL-384 (no positions, an odd side, 1×1 shortcuts in both stages) fixtures.

@Test("ViTamin settings that change the numbers, and configs of another ViTamin, are refused by name", arguments: [
    ("ViTamin-S", "timm_pool", "\"token\"", "vision_cfg.timm_pool"),
    ("ViTamin-S", "timm_proj", "\"none\"", "vision_cfg.timm_proj"),
    ("ViTamin-S", "timm_proj", "\"mlp\"", "vision_cfg.timm_proj"),
    ("ViTamin-S", "timm_proj_bias", "true", "timm_proj_bias is true"),
    ("ViTamin-S", "timm_model_name", "\"vitamin_xlarge_256\"", "they are another model's"),
    ("ViTamin-XL-384", "timm_model_name", "\"vitamin_large_384\"", "they are another model's"),
    ("ViTamin-S", "image_size", "80", "positions are for sides of 49...64 pixels"),
    ("ViTamin-S", "image_size", "48", "positions are for sides of 49...64 pixels"),
    ("ViTamin-XL-384", "image_size", "2048", "outside the 16...1024 pixels"),
    ("ViTamin-XL-384", "image_size", "8", "outside the 16...1024 pixels"),
])
func viTaminSettingsAreRefused(arch: String, key: String, json: String, message: String) throws {
    try expectVisionSettingRefused(arch, key, json, message)
}

@Test("ViTamin weights without their open_clip config, or with another tower's config, are refused")
func viTaminNeedsItsConfig() throws {
    try expectTimmTowerNeedsItsConfig("ViTamin-XL-384", otherWeights: "MobileCLIP-S2", tower: "a ViTamin image tower")
}

@Test("ViTamin: the heads the timm name decides change the features; the fixtures would catch a wrong table")
func viTaminHeadsMatter() throws {
    let base = "\(fixtureDirectory)/open_clip/ViTamin-S"
    let loaded = try CLIPModel.load(path: base + ".safetensors", openCLIPConfig: base + ".json")
    let ref = try Reference(path: base + ".reference.safetensors")
    guard case .viTamin(var v) = loaded.model.configuration.vision else { Issue.record("not a ViTamin"); return }
    #expect(v.heads == 6 && v.timmModel == "vitamin_small_224" && v.positionGrid == 4 && v.stemWidth == 16)
    #expect(v.stageWidths == [16, 24] && v.stageDepths == [2, 2] && v.expandedWidths == [64, 96] && v.mlpHidden == 96)
    v.heads = 12
    var c = loaded.model.configuration
    c.vision = .viTamin(v)
    let changed = try CLIPModel(weights: try OpenCLIPCustomTextWeights(try SafeTensorsFile(path: base + ".safetensors")), configuration: c)
    let e = relativeError(try changed.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars)
    #expect(e > 10 * parityTolerance, "12 heads in place of 6: relative error only \(e)")
}

@Test("ViTamin sides: positions fix the side; without them (XL) the config's side is the input and any side runs")
func viTaminSides() throws {
    let s = try loadOpenCLIPFixture("ViTamin-S", as: "size", edit: settingVision("image_size", 64))
    #expect(s.preprocessing.resolution == 64)
    #expect(throws: CLIPError.self) { try s.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 48, 64])) }
    // Any side whose 16-pixel steps round up to the positions' grid runs, as in timm.
    let odd = try loadOpenCLIPFixture("ViTamin-S", as: "odd-size", edit: settingVision("image_size", 50))
    #expect(odd.preprocessing.resolution == 50 && odd.model.configuration.imageResolution == 50)
    #expect(try odd.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 50, 63])).shape == [1, 32])
    let xl = try loadOpenCLIPFixture("ViTamin-XL-384", as: "size", edit: settingVision("image_size", 100))
    #expect(xl.preprocessing.resolution == 100 && xl.model.configuration.imageResolution == 100)
    #expect(try xl.model.encodeImage(Tensor(uncheckedZeros: [2, 3, 33, 47])).shape == [2, 32])
    #expect(throws: CLIPError.self) { try xl.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 15, 64])) }
    #expect(throws: CLIPError.self) { try xl.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 1_025, 64])) }
}

@Test("ViTamin sizes beyond the bounds are refused; random weights build and run")
func viTaminBounds() throws {
    let text = CLIPConfiguration.Text(contextLength: 8, vocabSize: 50, width: 16, heads: 1, layers: 1)
    func config(_ edit: (inout CLIPConfiguration.ViTaminConfiguration) -> Void) -> CLIPConfiguration {
        var v = CLIPConfiguration.ViTaminConfiguration(
            stemWidth: 8, stageWidths: [8, 16], stageDepths: [1, 2], expandedWidths: [32, 64], width: 32, layers: 2, heads: 4,
            mlpHidden: 64, positionGrid: 2, resolution: 32, timmModel: "vitamin_base_224")
        edit(&v)
        return CLIPConfiguration(embedDim: 16, vision: .viTamin(v), text: text)
    }
    for (edit, named) in [({ (v: inout CLIPConfiguration.ViTaminConfiguration) in v.heads = 5 }, "do not divide"),
                          ({ $0.timmModel = nil }, "load it with its open_clip config"),
                          ({ $0.timmModel = "vitamin_tiny" }, "load it with its open_clip config"),
                          ({ $0.stageWidths = [8] }, "two MbConv stages"), ({ $0.layers = 0 }, "must be positive"),
                          ({ $0.stemWidth = 4_096 }, "at most 1024"), ({ $0.positionGrid = nil }, "another model's"),
                          ({ $0.resolution = 16 }, "not one the tower takes"),
                          ({ $0.timmModel = "vitamin_xlarge_256"; $0.positionGrid = nil; $0.resolution = 1_024; $0.expandedWidths = [8_192, 64] },
                           "in one activation per image"),
                          ({ $0.timmModel = "vitamin_xlarge_256"; $0.positionGrid = nil; $0.resolution = 2_000 }, "at most 1024")] {
        #expect { _ = try CLIPModel(randomWeightsFor: config(edit)) } throws: { "\($0)".contains(named) }
    }
    let model = try CLIPModel(randomWeightsFor: config { _ in }, seed: 7)
    let out = try model.encodeImage(Tensor(uncheckedZeros: [2, 3, 32, 32]))
    #expect(out.shape == [2, 16] && out.scalars.allSatisfy(\.isFinite))
}
