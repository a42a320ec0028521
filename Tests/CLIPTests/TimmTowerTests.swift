import CLIP
import CLIPLoading
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

/// (A global offset cannot show without a class token: rotary attention depends on position differences only, so
/// gigantic's offset is not among the changes.)
@Test("EVA, PE-Core, timm's CLIP ViT: each setting the timm name decides changes the image features (the fixtures test it)", arguments: [
    ("EVA02-B-16", "no rotary"), ("EVA02-B-16", "reference grid 14"), ("EVA02-B-16", "6 heads"),
    ("EVA02-L-14-336", "reference grid 24"), ("EVA02-E-14", "pre-norm"), ("EVA01-g-14-plus", "post-norm"),
    ("EVA01-g-14-plus", "8 heads"), ("PE-Core-T-16-384", "no rotary"), ("PE-Core-T-16-384", "rows first"),
    ("PE-Core-B-16", "offset 0"), ("PE-Core-B-16", "reference grid 16"), ("PE-Core-B-16", "6 heads"),
    ("PE-Core-bigG-14-448", "reference grid 16"), ("PE-Core-L-14-336", "pooling 4 heads"), ("MobileCLIP2-L-14", "8 heads"),
    ("MobileCLIP2-L-14", "QuickGELU"), ("MobileCLIP-B", "8 heads"), ("MobileCLIP-B", "QuickGELU"),
])
func timmSettingsMatter(arch: String, change: String) throws {
    let base = "\(fixtureDirectory)/open_clip/\(arch)"
    let loaded = try CLIPModel.load(path: base + ".safetensors", openCLIPConfig: base + ".json")
    let ref = try Reference(path: base + ".reference.safetensors")
    #expect(relativeError(try loaded.model.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars) <= parityTolerance)
    var c = loaded.model.configuration
    switch c.vision {
    case .eva(var v):
        switch change {
        case "no rotary": v.rotaryReferenceGrid = nil
        case "reference grid 14": v.rotaryReferenceGrid = 14
        case "reference grid 24": v.rotaryReferenceGrid = 24
        case "6 heads": v.heads = 6
        case "8 heads": v.heads = 8
        case "pre-norm": v.postNorm = false
        case "post-norm": v.postNorm = true
        default: Issue.record("unknown change \(change)")
        }
        c.vision = .eva(v)
    case .transformer(var v):
        switch change {
        case "no rotary": v.rotary = nil
        case "rows first": v.rotary?.columnsFirst = false
        case "offset 0": v.rotary?.offset = 0
        case "offset 1": v.rotary?.offset = 1
        case "reference grid 16": v.rotary?.referenceGrid = 16
        case "6 heads": v.heads = 6
        case "8 heads": v.heads = 8
        case "QuickGELU": v.activation = .quickGELU
        case "pooling 4 heads": v.pooling = .attention(heads: 4)
        default: Issue.record("unknown change \(change)")
        }
        c.vision = .transformer(v)
    default:
        Issue.record("\(arch) is neither EVA nor a ViT")
    }
    let stored = try SafeTensorsFile(path: base + ".safetensors")
    let file: any WeightSource = arch.hasPrefix("PE") || arch.hasPrefix("MobileCLIP") ? try OpenCLIPTimmViTWeights(stored) : try OpenCLIPCustomTextWeights(stored)
    let changed = try CLIPModel(weights: file, configuration: c)
    let e = relativeError(try changed.encodeImage(ref.pixels).scalars, ref.imageFeatures.scalars)
    // Ten times the parity tolerance: the fixture's check would fail.
    #expect(e > 10 * parityTolerance, "\(arch) with \(change): relative error only \(e)")
}

@Test("EVA, PE-Core and timm CLIP ViT settings that change the numbers are refused by name", arguments: [
    ("EVA02-B-16", "timm_pool", "\"avg\"", "vision_cfg.timm_pool"),
    ("EVA02-B-16", "timm_proj", "\"linear\"", "vision_cfg.timm_proj"),
    ("EVA02-B-16", "timm_proj", nil, "vision_cfg.timm_proj is absent"),   // open_clip's default is "linear"
    ("EVA02-B-16", "timm_proj", "\"none\"", "timm_proj is none, but the weights have timm's head"),
    ("EVA01-g-14-plus", "timm_model_name", "\"eva02_base_patch16_clip_224\"", "whose blocks have a SwiGLU MLP"),
    ("EVA02-B-16", "image_size", "80", "takes 64×64 inputs"),
    ("PE-Core-B-16", "timm_pool", "\"token\"", "vision_cfg.timm_pool"),
    ("PE-Core-B-16", "timm_proj", "\"linear\"", "vision_cfg.timm_proj"),
    ("PE-Core-B-16", "timm_proj", "\"none\"", "timm_proj is none, but the weights have timm's head"),
    ("PE-Core-B-16", "timm_model_name", "\"vit_pe_core_gigantic_patch14_448\"", "has no class token"),
    ("PE-Core-B-16", "timm_model_name", "\"vit_pe_core_small_patch16_384\"", "width 384"),      // small's width
    ("PE-Core-T-16-384", "timm_model_name", "\"vit_pe_core_small_patch16_384\"", "width 384"),  // tiny's weights
    ("PE-Core-L-14-336", "timm_model_name", "\"vit_pe_core_base_patch16_224\"", "patch 16"),
    ("EVA02-E-14", "timm_model_name", "\"eva_giant_patch14_224\"", "MLP 279 wide"),          // EVA01-g's ratio
    ("EVA01-g-14-plus", "timm_model_name", "\"eva02_enormous_patch14_clip_224\"", "MLP 548 wide"),
    ("EVA02-L-14", "timm_model_name", "\"eva02_base_patch16_clip_224\"", "patch 16"),
    ("PE-Core-B-16", "image_size", "50", "takes 48×48 inputs"),                                  // timm's one size
    ("MobileCLIP2-L-14", "timm_pool", "\"avg\"", "vision_cfg.timm_pool"),
    ("MobileCLIP2-L-14", "timm_proj", "\"none\"", "timm_proj is none, but the weights have timm's head"),
    ("MobileCLIP2-L-14", "image_size", "56", "takes 42×42 inputs"),
    ("MobileCLIP2-L-14", "timm_model_name", "\"vit_pe_core_large_patch14_336\"", "vision_cfg.timm_pool is \"token\""),  // PE pools with map
    ("PE-Core-L-14-336", "timm_model_name", "\"vit_large_patch14_clip_224\"", "vision_cfg.timm_pool is \"map\""),
    ("MobileCLIP-B", "timm_model_name", "\"vit_large_patch14_clip_224\"", "a patch convolution without bias"),
    ("MobileCLIP2-L-14", "timm_model_name", "\"vit_base_mci_224\"", "a convolutional stem [4, 2, 2]"),
    ("MobileCLIP-B", "image_size", "80", "takes 64×64 inputs"),
] as [(String, String, String?, String)])
func timmSettingsAreRefused(arch: String, key: String, json: String?, message: String) throws {
    let value = try json.map { try JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) }
    do {
        _ = try loadOpenCLIPFixture(arch, as: "\(key)-\((json ?? "absent").filter { $0.isLetter || $0.isNumber })", edit: settingVision(key, value))
        Issue.record("\(arch) with \(key) = \(json ?? "absent") was accepted")
    } catch {
        #expect("\(error)".contains(message), "\(error)")
    }
}

@Test("timm CLIP ViT weights (MobileCLIP2-L-14, MobileCLIP-B) without their open_clip config are refused")
func timmCLIPViTNeedsItsConfig() throws {
    for arch in ["MobileCLIP2-L-14", "MobileCLIP-B"] {
        let base = "\(fixtureDirectory)/open_clip/\(arch)"
        #expect { _ = try CLIPModel.load(path: base + ".safetensors") } throws: {
            "\($0)".contains("load it with its open_clip config")
        }
    }
}

@Test("EVA weights without their open_clip config, or with another tower's config, are refused")
func evaNeedsItsConfig() throws {
    let base = "\(fixtureDirectory)/open_clip/EVA02-B-16"
    #expect { _ = try CLIPModel.load(path: base + ".safetensors") } throws: {
        "\($0)".contains("load it with its open_clip config")
    }
    do {
        _ = try loadOpenCLIPFixture("EVA02-B-16", as: "vit-weights", weights: "ViT-B-32") { _ in }
        Issue.record("ViT weights with an EVA config were accepted")
    } catch {
        #expect("\(error)".contains("describes an EVA image tower"), "\(error)")
    }
    do {
        _ = try loadOpenCLIPFixture("EVA02-B-16", as: "no-timm") { cfg in
            settingVision("timm_model_name", nil)(&cfg)
            cfg["custom_text"] = nil
        }
        Issue.record("EVA weights with a config naming no timm model were accepted")
    } catch {
        #expect("\(error)".contains("names no timm_model_name"), "\(error)")
    }
}

@Test("PE-Core weights without their config, with SigLIP's, or with a head timm_proj none does not build, are refused",
      arguments: ["PE-Core-B-16", "PE-Core-bigG-14-448"])
func peCoreNeedsItsConfig(_ arch: String) throws {
    let base = "\(fixtureDirectory)/open_clip/\(arch)"
    #expect { _ = try CLIPModel.load(path: base + ".safetensors") } throws: {
        "\($0)".contains("load it with its open_clip config")
    }
    do {
        _ = try loadOpenCLIPFixture(arch, as: "siglip") { cfg in
            settingVision("timm_model_name", "vit_base_patch16_siglip_224")(&cfg)
            settingVision("timm_proj", "none")(&cfg)
            var text = cfg["text_cfg"] as! [String: Any]
            text["no_causal_mask"] = true
            text["pool_type"] = "last"
            text["tokenizer_kwargs"] = ["clean": "canonicalize"]
            text["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP"
            cfg["text_cfg"] = text
        }
        Issue.record("PE-Core weights with a SigLIP config were accepted")
    } catch {
        // SigLIP's own check of the tower, past its text settings.
        #expect("\(error)".contains("describes a SigLIP model") && "\(error)".contains("but the weights are not one"), "\(error)")
    }
    // timm_proj none builds no head: weights with one (even without a bias) are another model's.
    let file = try SafeTensorsFile(path: base + ".safetensors")
    let names = file.tensorInfos.map(\.name).filter { $0 != "visual.trunk.head.bias" }
    let cut = FileManager.default.temporaryDirectory.appendingPathComponent("pe-no-head-bias-\(arch)-\(getpid()).safetensors").path
    try SafeTensorsWriter.write(try names.map { ($0, try file.floatTensor($0)) }, to: cut)
    defer { try? FileManager.default.removeItem(atPath: cut) }
    let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + ".json"))) as! [String: Any]
    var edited = cfg
    settingVision("timm_proj", "none")(&edited)
    let cfgPath = try writeScratchBytes([UInt8](try JSONSerialization.data(withJSONObject: edited)), "\(arch)-proj-none.json")
    #expect { _ = try CLIPModel.load(path: cut, openCLIPConfig: cfgPath) } throws: {
        "\($0)".contains("timm_proj is none, but the weights have timm's head")
    }
}

@Test("EVA sizes beyond the bounds are refused; random weights build and run")
func evaBounds() throws {
    let text = CLIPConfiguration.Text(contextLength: 8, vocabSize: 50, width: 16, heads: 1, layers: 1)
    func config(_ edit: (inout CLIPConfiguration.EVAConfiguration) -> Void) -> CLIPConfiguration {
        var v = CLIPConfiguration.EVAConfiguration(width: 32, layers: 2, heads: 4, patchSize: 8, grid: 3,
                                                   mlp: .swiGLU(hidden: 40, normed: true), attentionNorm: true,
                                                   rotaryReferenceGrid: 16, timmModel: "eva02_base_patch16_clip_224")
        edit(&v)
        return CLIPConfiguration(embedDim: 16, vision: .eva(v), text: text)
    }
    for (edit, named) in [({ (v: inout CLIPConfiguration.EVAConfiguration) in v.timmModel = nil }, "open_clip config"),
                          ({ $0.heads = 5 }, "do not divide"), ({ $0.heads = 0 }, "heads is 0"),
                          ({ $0.heads = 16 }, "multiple of 4"), ({ $0.grid = 200 }, "grid is 200"),
                          ({ $0.width = 20_000 }, "width is 20000"), ({ $0.mlp = .gelu(hidden: 100_000) }, "MLP hidden width")] {
        #expect { _ = try CLIPModel(randomWeightsFor: config(edit)) } throws: { "\($0)".contains(named) }
    }
    for edit in [{ (v: inout CLIPConfiguration.EVAConfiguration) in }, { $0.postNorm = true; $0.rotaryReferenceGrid = nil },
                 { $0.mlp = .gelu(hidden: 24); $0.attentionNorm = false; $0.head = false; $0.width = 16; $0.heads = 2 }] {
        let model = try CLIPModel(randomWeightsFor: config(edit), seed: 7)
        let out = try model.encodeImage(Tensor(uncheckedZeros: [2, 3, 24, 24]))
        #expect(out.shape == [2, 16] && out.scalars.allSatisfy(\.isFinite))
        #expect(throws: CLIPError.self) { try model.encodeImage(Tensor(uncheckedZeros: [1, 3, 32, 32])) }
    }
}
