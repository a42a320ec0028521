import CLIP
import CLIPLoading
import CLIPTensor
import Foundation
import Testing

/// The scaled-down convnext_base fixture with its config edited by `edit`, over the weights of fixture `weights`.
private func convNeXtLoad(_ name: String, weights: String = "convnext_base",
                          edit: (inout [String: Any]) -> Void) throws -> LoadedModel {
    try loadOpenCLIPFixture("convnext_base", as: name, weights: weights, edit: edit)
}

@Test("ConvNeXt settings that change the numbers are refused by name", arguments: [
    ("pool-max", "timm_pool", "\"max\"", "vision_cfg.timm_pool"),
    ("proj-none", "timm_proj", "\"none\"", "vision_cfg.timm_proj"),
    ("proj-mlp", "timm_proj", "\"mlp\"", "timm_proj is mlp"),              // the weights have a Linear head
    ("proj-bias", "timm_proj_bias", "true", "timm_proj_bias true"),        // …without bias
    ("convnextv2", "timm_model_name", "\"convnextv2_base\"", "vision_cfg.timm_model_name"),
    ("too-small", "image_size", "31", "outside the 32...1024 pixels"),
    ("too-large", "image_size", "2048", "outside the 32...1024 pixels"),
    ("proj-null", "timm_proj", "null", "vision_cfg.timm_proj"),            // falsy to open_clip: timm's own head
    ("proj-empty", "timm_proj", "\"\"", "vision_cfg.timm_proj"),
])
func convNeXtSettingsAreRefused(name: String, key: String, json: String, message: String) throws {
    let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
    do {
        _ = try convNeXtLoad(name, edit: settingVision(key, value))
        Issue.record("\(key) = \(json) was accepted")
    } catch {
        #expect("\(error)".contains(message), "\(error)")
    }
}

@Test("a ConvNeXt config with other weights, or ConvNeXt weights with another config, is refused")
func convNeXtConfigAndWeightsMustAgree() throws {
    do {
        _ = try convNeXtLoad("vit-weights", weights: "ViT-B-32") { _ in }
        Issue.record("ViT weights with a ConvNeXt config were accepted")
    } catch {
        #expect("\(error)".contains("describes a ConvNeXt image tower"), "\(error)")
    }
    for (name, value) in [("no-timm", nil), ("null-timm", NSNull() as Any?), ("empty-timm", "" as Any?)] {
        do {
            _ = try convNeXtLoad(name, edit: settingVision("timm_model_name", value))
            Issue.record("ConvNeXt weights with a config naming no timm model (\(name)) were accepted")
        } catch {
            #expect("\(error)".contains("names no timm_model_name"), "\(error)")
        }
    }
}

@Test("ConvNeXt: the config's image size is the input side; xxlarge's ε is 1e-5, the others' 1e-6")
func convNeXtSettingsApply() throws {
    let loaded = try convNeXtLoad("size", edit: settingVision("image_size", 100))
    #expect(loaded.preprocessing.resolution == 100)
    guard case .convNeXt(let v) = loaded.model.configuration.vision else { Issue.record("not a ConvNeXt"); return }
    #expect(v.resolution == 100 && v.layerNormEps == 1e-6 && v.depths == [1, 2, 1, 1] && v.widths == [12, 16, 40, 24])
    let xxl = try CLIPModel.load(path: "\(fixtureDirectory)/open_clip/convnext_xxlarge.safetensors",
                                 openCLIPConfig: "\(fixtureDirectory)/open_clip/convnext_xxlarge.json")
    guard case .convNeXt(let x) = xxl.model.configuration.vision else { Issue.record("not a ConvNeXt"); return }
    #expect(x.layerNormEps == 1e-5)
    // The tower is convolutional: other sides run (down to the stem and three halvings), smaller ones are refused.
    let pixels = Tensor(uncheckedZeros: [1, 3, 40, 33])
    #expect(try loaded.model.encodeImage(pixels).shape == [1, 32])
    #expect(throws: CLIPError.self) { try loaded.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 31, 64])) }
    // Nor larger than the config may ask for: the first stage would be gigabytes per image.
    #expect(throws: CLIPError.self) { try loaded.model.encodeImage(Tensor(uncheckedZeros: [1, 3, 64, 1_025])) }
}

@Test("timm towers (ConvNeXt, EVA02, FastViT, ViTamin) in int8 and bf16 stay close to fp32",
      arguments: ["convnext_large_d", "EVA02-L-14", "MobileCLIP-S2", "MobileCLIP2-S4", "ViTamin-S"], [Precision.int8, .bf16])
func timmTowersInReducedPrecision(_ arch: String, _ precision: Precision) throws {
    guard precision.isAvailable else {
        print("skipped: \(precision.rawValue) needs \(precision.requirement), which this CPU lacks")
        return
    }
    let base = "\(fixtureDirectory)/open_clip/\(arch)"
    let fp32 = try CLIPModel.load(path: base + ".safetensors", openCLIPConfig: base + ".json").model
    let reduced = try fp32.converted(to: precision)
    let ref = try Reference(path: base + ".reference.safetensors")
    let e = relativeError(try reduced.encodeImage(ref.pixels).scalars, try fp32.encodeImage(ref.pixels).scalars)
    #expect(e < 0.05, "\(arch) \(precision.rawValue) relative error \(e)")
}

@Test("ConvNeXt sizes beyond the bounds are refused; random weights build and run")
func convNeXtBounds() throws {
    let text = CLIPConfiguration.Text(contextLength: 8, vocabSize: 50, width: 16, heads: 1, layers: 1)
    func config(_ edit: (inout CLIPConfiguration.ConvNeXtConfiguration) -> Void) -> CLIPConfiguration {
        var v = CLIPConfiguration.ConvNeXtConfiguration(depths: [1, 1, 1, 1], widths: [8, 16, 16, 24], resolution: 64)
        edit(&v)
        return CLIPConfiguration(embedDim: 16, vision: .convNeXt(v), text: text)
    }
    for (edit, named) in [({ (v: inout CLIPConfiguration.ConvNeXtConfiguration) in v.kernel = 33 }, "kernel"),
                          ({ $0.kernel = 6 }, "odd windows"), ({ $0.widths[2] = 20_000 }, "widths[2]"),
                          ({ $0.depths = [1, 1, 1] }, "4 stages"), ({ $0.resolution = 16 }, "below 32"),
                          ({ $0.resolution = 1_040 }, "above 1024")] {
        #expect { _ = try CLIPModel(randomWeightsFor: config(edit)) } throws: { "\($0)".contains(named) }
    }
    let model = try CLIPModel(randomWeightsFor: config { _ in }, seed: 7)
    let out = try model.encodeImage(Tensor(uncheckedZeros: [2, 3, 64, 64]))
    #expect(out.shape == [2, 16] && out.scalars.allSatisfy(\.isFinite))
}
