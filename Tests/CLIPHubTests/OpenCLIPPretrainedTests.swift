@testable import CLIPHub
import CLIP
import CLIPLoading
import Foundation
import Testing

@Suite("open_clip's pretrained names")
struct OpenCLIPPretrainedTests {
    let table = try! OpenCLIPPretrained.shared.get()

    @Test("the table holds open_clip's tags, and every one of them loads")
    func tableCoversOpenCLIP() throws {
        #expect(table.entries.count >= 190)
        #expect(Set(table.entries.map(\.name)).count == table.entries.count)
        for entry in table.entries { #expect(table.config(for: entry) != nil, "\(entry.name) has no config") }
        let loadable = ["ViT-B-32/laion2b_s34b_b79k", "ViT-B-32/openai", "ViT-B-16/datacomp_xl_s13b_b90k", "ViT-L-14/laion2b_s32b_b82k",
                        "ViT-H-14/laion2b_s32b_b79k", "ViT-H-14/dfn5b", "ViT-H-14-378/dfn5b", "ViT-bigG-14/laion2b_s39b_b160k",
                        "ViT-B-16-plus-240/laion400m_e32", "RN50/openai", "RN50-quickgelu/yfcc15m", "RN50x64/openai",
                        "ViT-L-14-quickgelu/metaclip_fullcc", "ViT-B-32-256/datacomp_s34b_b86k", "ViT-B-16-SigLIP/webli",
                        "ViT-SO400M-14-SigLIP-384/webli", "ViT-L-16-SigLIP-256/webli", "ViT-B-16-SigLIP2/webli",
                        "ViT-gopt-16-SigLIP2-384/webli", "ViT-B-16-SigLIP-i18n-256/webli", "coca_ViT-B-32/laion2b_s13b_b90k",
                        "coca_ViT-L-14/mscoco_finetuned_laion2b_s13b_b90k", "ViT-H-14-worldwide/metaclip2_worldwide",
                        "ViT-bigG-14-worldwide-378/metaclip2_worldwide", "ViT-L-14-CLIPA/datacomp1b", "ViT-bigG-14-CLIPA-336/datacomp1b",
                        "xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", "xlm-roberta-large-ViT-H-14/frozen_laion5b_s13b_b90k",
                        "roberta-ViT-B-32/laion2b_s12b_b32k", "convnext_base/laion400m_s13b_b51k", "convnext_base_w/laion2b_s13b_b82k",
                        "convnext_large_d_320/laion2b_s29b_b131k_ft_soup", "convnext_xxlarge/laion2b_s34b_b82k_augreg",
                        "EVA01-g-14/laion400m_s11b_b41k", "EVA02-B-16/merged2b_s8b_b131k", "EVA02-L-14-336/merged2b_s6b_b61k",
                        "EVA02-E-14-plus/laion2b_s9b_b144k", "PE-Core-T-16-384/meta", "PE-Core-bigG-14-448/meta",
                        "MobileCLIP-S1/datacompdr", "MobileCLIP-S2/datacompdr", "MobileCLIP2-S0/dfndr2b", "MobileCLIP2-S4/dfndr2b", "MobileCLIP2-L-14/dfndr2b",
                        "MobileCLIP-B/datacompdr", "MobileCLIP-B/datacompdr_lt", "MobileCLIP2-B/dfndr2b", "ViTamin-S/datacomp1b",
                        "ViTamin-B-LTT/datacomp1b", "ViTamin-L2-384/datacomp1b", "ViTamin-XL-256/datacomp1b", "ViTamin-XL-384/datacomp1b",
                        "nllb-clip-base/v1", "nllb-clip-large/v1", "nllb-clip-base-siglip/v1", "nllb-clip-base-siglip/mrl",
                        "nllb-clip-large-siglip/v1", "nllb-clip-large-siglip/mrl"]
        for name in loadable {
            let entry = try #require(table.entry(named: name), "\(name) is not in the table")
            #expect(table.unsupported(entry) == nil, "\(name): \(table.unsupported(entry) ?? "")")
        }
        // Every tag of open_clip's table loads (196 of 196 with open_clip 3.3.0).
        let refused = table.entries.filter { table.unsupported($0) != nil }.map { "\($0.name): \(table.unsupported($0)!)" }
        #expect(refused.isEmpty, "\(refused.count) of \(table.entries.count) tags refused: \(refused.prefix(5))")
    }

    @Test("names: ARCH/TAG, immich's ARCH__TAG, --model ARCH --pretrained TAG, OpenAI's ViT-B/32 spelling")
    func names() throws {
        #expect(table.entry(named: "ViT-B-32/laion2b_s34b_b79k")?.repository == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
        #expect(table.entry(named: "ViT-B-32__laion2b_s34b_b79k") == table.entry(named: "ViT-B-32/laion2b_s34b_b79k"))
        #expect(table.entry(model: "ViT-B/32", tag: "OpenAI")?.repository == "timm/vit_base_patch32_clip_224.openai")
        #expect(table.entry(named: "ViT-B/32") == nil)  // OpenAI's name, not a tag
        let entry = try #require(table.entry(named: "RN50/openai"))
        #expect(entry.weightFiles == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
    }

    @Test("catalog names: OpenAI's names are their openai tags; immich's capitalised names are found; files have none")
    func catalogNames() {
        #expect(table.catalogName("ViT-B/32") == "ViT-B-32/openai")
        #expect(table.catalogName("ViT-L/14@336px") == "ViT-L-14-336/openai")
        #expect(table.catalogName("RN50x64") == "RN50x64/openai")
        #expect(table.catalogName("ViT-B-32__openai") == "ViT-B-32/openai")
        #expect(table.catalogName("XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k") == "xlm-roberta-large-ViT-H-14/frozen_laion5b_s13b_b90k")
        #expect(table.catalogName("ViT-B-32", pretrained: "laion2b_s34b_b79k") == "ViT-B-32/laion2b_s34b_b79k")
        #expect(table.catalogName("/models/mine.safetensors") == nil)
        #expect(table.catalogName("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K") == nil)
        #expect(table.catalogName("swift-clip-shapes") == nil)
    }

    @Test("a tag's config is the architecture's with the tag's preprocessing and the activation its weights were trained with")
    func tagConfig() throws {
        for (name, quick, resize) in [("ViT-B-32/openai", true, "shortest"), ("ViT-B-32/laion2b_s34b_b79k", false, "shortest"),
                                      ("ViT-H-14/dfn5b", true, "squash")] {
            let entry = try #require(table.entry(named: name))
            let config = try #require(table.config(for: entry))
            #expect(config.origin == "open_clip's \(name)")
            let cfg = try config.document()
            #expect((cfg["model_cfg"]?["quick_gelu"]?.bool ?? false) == quick, "\(name)")
            #expect(cfg["preprocess_cfg"]?["resize_mode"]?.string == resize, "\(name)")
        }
    }

    @Test("a tag resolves to its Hub repository's weights, .safetensors first")
    func locatesTagsOnTheHub() throws {
        let weights = try fixtureBytes("vit_small.safetensors")
        let hub = try FakeHub(repositories: [
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": .init(commit: commitA, files: ["open_clip_pytorch_model.bin": weights],
                                                           large: ["open_clip_pytorch_model.bin"]),
        ])
        var models = hubModel(hub.client())
        for spec in ["ViT-B-32/laion2b_s34b_b79k", "ViT-B-32__laion2b_s34b_b79k"] {
            let location = try models.locate(spec)
            #expect(location.path.hasSuffix("/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/snapshots/\(commitA)/open_clip_pytorch_model.bin"))
            #expect(location.openCLIPConfig?.origin == "open_clip's ViT-B-32/laion2b_s34b_b79k", "\(spec)")
        }
        let asked = hub.server.received.filter { $0.method == "HEAD" }.map(\.path)
        #expect(asked.first == "/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors")
        models.pretrained = "laion2b_s34b_b79k"
        #expect(try models.locate("ViT-B/32").path.hasSuffix("open_clip_pytorch_model.bin"))
        // The architecture's config against those (small) weights: the shapes disagree, and the error says so.
        #expect(throws: HubError.self) { try models.load("ViT-B-32") }

        // A tag whose config asks for what is not implemented (every shipped tag loads; a newer open_clip's table
        // may not) is refused by its key before any request.
        let before = hub.server.received.count
        let unsupported = try OpenCLIPPretrained(json: Data("""
            {"open_clip_version": "test", "pretrained": [{"model": "Fake-B-32", "tag": "t", "repository": "org/fake",
             "file": "open_clip_pytorch_model.bin"}], "models": {"Fake-B-32": {"embed_dim": 512,
             "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
             "text_cfg": {"hf_model_name": "google/mt5-base", "hf_tokenizer_name": "google/mt5-base"}}}}
            """.utf8))
        let entry = try #require(unsupported.entries.first)
        #expect { _ = try models.locate(entry, in: unsupported) } throws: {
            "\($0)".contains("cannot be loaded yet") && "\($0)".contains("text_cfg.hf_model_name")
        }
        #expect(hub.server.received.count == before)
        models.pretrained = "nope"
        #expect(throws: HubError.self) { try models.locate("ViT-B-32") }
        #expect(hub.server.received.count == before)
    }
}
