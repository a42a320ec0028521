@testable import CLIPHub
import CLIP
import CLIPLoading
import CLIPFiles
import CLIPTestSupport
import Foundation
import Testing

let clipFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../CLIPTests/Fixtures").standardized.path

func fixtureBytes(_ relative: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(clipFixtures)/\(relative)")))
}

let commitA = "0123456789abcdef0123456789abcdef01234567"
let commitB = "89abcdef0123456789abcdef0123456789abcdef"

/// An open_clip repository as the Hub holds them: the model config wrapped with its preprocessing, the weights in
/// LFS. A Hugging Face CLIPModel repository: config.json, preprocessor_config.json, model.safetensors in LFS.
func standardHub(renamed: [String: String] = [:]) throws -> FakeHub {
    let modelCfg = try JSONSerialization.jsonObject(with: Data(try fixtureBytes("formats/vit_small_openclip.json"))) as! [String: Any]
    var inner = modelCfg
    inner["preprocess_cfg"] = nil
    let wrapped = try JSONSerialization.data(withJSONObject: ["model_cfg": inner, "preprocess_cfg": modelCfg["preprocess_cfg"]!])
    let hf = "formats/hf_vit_hd32"
    return try FakeHub(repositories: [
        "test-org/tiny-openclip": .init(commit: commitA, files: [
            "open_clip_config.json": [UInt8](wrapped),
            "open_clip_model.safetensors": try fixtureBytes("vit_small.safetensors"),
        ], large: ["open_clip_model.safetensors"]),
        "test-org/tiny-hf": .init(commit: commitB, files: [
            "config.json": try fixtureBytes("\(hf)/config.json"),
            "preprocessor_config.json": try fixtureBytes("\(hf)/preprocessor_config.json"),
            "model.safetensors": try fixtureBytes("\(hf)/model.safetensors"),
        ], large: ["model.safetensors"]),
    ], renamed: renamed)
}

func hubModel(_ hub: HuggingFaceHub, revision: String? = nil) -> ModelHub {
    var m = ModelHub(cacheDirectory: temporaryCache(), showProgress: false)
    m.huggingFace = hub
    m.revision = revision
    return m
}

/// The same numbers from two loads of one model: both towers on fixed inputs.
func expectSameModel(_ a: LoadedModel, _ b: LoadedModel) throws {
    #expect(a.model.configuration == b.model.configuration)
    #expect(a.preprocessing == b.preprocessing)
    let r = a.model.configuration.imageResolution
    let pixels = try Tensor(shape: [1, 3, r, r], scalars: (0..<(3 * r * r)).map { Float($0 % 17) / 17 - 0.5 })
    #expect(try a.model.encodeImage(pixels).scalars == b.model.encodeImage(pixels).scalars)
    let text = a.model.configuration.text
    let tokens = [[1, 5, 7, text.vocabSize - 1] + Array(repeating: 0, count: text.contextLength - 4)]
    #expect(try a.model.encodeText(tokens).scalars == b.model.encodeText(tokens).scalars)
}

@Suite("hf-hub: models from a loopback Hugging Face Hub")
struct HuggingFaceHubTests {
    @Test("an open_clip repository: config and LFS weights fetched into huggingface_hub's layout, loaded as the files load")
    func openCLIPRepository() throws {
        let hub = try standardHub()
        let client = hub.client()
        let models = hubModel(client)
        let location = try models.locate("hf-hub:test-org/tiny-openclip")
        let storage = client.storageFolder("test-org/tiny-openclip")
        #expect(storage.hasSuffix("/models--test-org--tiny-openclip"))
        #expect(location.path == "\(storage)/snapshots/\(commitA)/open_clip_model.safetensors")
        #expect(location.openCLIPConfig == .file("\(storage)/snapshots/\(commitA)/open_clip_config.json"))
        // Pointers are relative links to blobs named by SHA-256 (large) and git blob id (small); refs/main names
        // the commit.
        let weights = try fixtureBytes("vit_small.safetensors")
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: location.path)
        #expect(link == "../../blobs/\(SHA256.hex(weights))")
        let configLink = try FileManager.default.destinationOfSymbolicLink(atPath: "\(storage)/snapshots/\(commitA)/open_clip_config.json")
        #expect(configLink.hasPrefix("../../blobs/") && configLink.count == "../../blobs/".count + 40)
        #expect(try String(contentsOfFile: "\(storage)/refs/main", encoding: .utf8) == commitA)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(storage)/blobs").count == 2)
        // The loaded model is the one the weight file and config give.
        let viaHub = try models.load("hf-hub:test-org/tiny-openclip")
        let direct = try CLIPModel.load(path: "\(clipFixtures)/vit_small.safetensors",
                                        openCLIPConfig: "\(clipFixtures)/formats/vit_small_openclip.json")
        try expectSameModel(viaHub, direct)
        #expect(viaHub.model.configuration.activation == .gelu)
        // The token goes to the Hub, never to the CDN's other host.
        let requests = hub.server.received
        #expect(requests.filter { !$0.path.hasPrefix("/cdn/") }.allSatisfy { $0.headers["authorization"] == "Bearer hf_secret" })
        let cdn = requests.filter { $0.path.hasPrefix("/cdn/") }
        #expect(cdn.count == 1 && cdn.allSatisfy { $0.headers["authorization"] == nil })
        // A second load asks the Hub (HEAD) but downloads nothing; offline it asks nothing at all.
        let before = requests.count
        _ = try models.locate("hf-hub:test-org/tiny-openclip")
        #expect(hub.server.received.dropFirst(before).allSatisfy { $0.method == "HEAD" })
        let count = hub.server.received.count
        let offline = hubModel(hub.client(cache: client.cacheDirectory, ["HF_HUB_OFFLINE": "1"]))
        #expect(try offline.locate("hf-hub:test-org/tiny-openclip") == location)
        #expect(hub.server.received.count == count)
        // A pinned commit that is cached needs no request either.
        let pinned = hubModel(hub.client(cache: client.cacheDirectory), revision: commitA)
        #expect(try pinned.locate("hf-hub:test-org/tiny-openclip") == location)
        #expect(hub.server.received.count == count)
    }

    @Test("an open_clip SigLIP repository: its spiece.model fetched from the repository the config names")
    func openCLIPSigLIPRepository() throws {
        let cfg = try fixtureBytes("siglip/openclip_ViT-B-16-SigLIP.json")
        let weights = try fixtureBytes("siglip/openclip_ViT-B-16-SigLIP.safetensors")
        let spm = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(clipFixtures)/../../CLIPTokenizerTests/Fixtures/sentencepiece/unigram_nfkc.model").standardized))
        let hub = try FakeHub(repositories: [
            // The tokenizer's own repository, as open_clip's configs name it for every SigLIP size.
            "timm/ViT-B-16-SigLIP": .init(commit: commitA, files: [
                "open_clip_config.json": cfg, "open_clip_model.safetensors": weights, "spiece.model": spm,
            ], large: ["open_clip_model.safetensors", "spiece.model"]),
            "timm/ViT-L-16-SigLIP-256": .init(commit: commitB, files: [
                "open_clip_config.json": cfg, "open_clip_model.safetensors": weights,
            ], large: ["open_clip_model.safetensors"]),
        ])
        let client = hub.client()
        let models = hubModel(client)
        let own = try models.load("hf-hub:timm/ViT-B-16-SigLIP")
        let tokenizerSnapshot = "\(client.storageFolder("timm/ViT-B-16-SigLIP"))/snapshots/\(commitA)"
        #expect(own.tokenizerFolder == tokenizerSnapshot)
        #expect(own.model.configuration.objective == .sigmoid)
        let other = try models.load("hf-hub:timm/ViT-L-16-SigLIP-256")
        #expect(other.tokenizerFolder == tokenizerSnapshot, "the tokenizer comes from the repository text_cfg.hf_tokenizer_name names")
        #expect(FileManager.default.fileExists(atPath: tokenizerSnapshot + "/spiece.model"))
    }

    @Test("an open_clip MetaCLIP 2 repository: XLM-V's sentencepiece.bpe.model fetched from facebook/xlm-v-base, the kind the config names whatever else it holds")
    func openCLIPMetaCLIP2Repository() throws {
        let cfg = try fixtureBytes("metaclip2/open_clip_config.json")
        let weights = try fixtureBytes("metaclip2/open_clip_model.safetensors")
        let spm = try fixtureBytes("metaclip2/sentencepiece.bpe.model")
        // A SigLIP-style spiece.model beside XLM-V's file: looked for first in a fixed order, it was fetched instead.
        let hub = try FakeHub(repositories: [
            "timm/vit_huge_patch14_clip_224.metaclip2_worldwide": .init(commit: commitA, files: [
                "open_clip_config.json": cfg, "open_clip_model.safetensors": weights,
            ], large: ["open_clip_model.safetensors"]),
            "facebook/xlm-v-base": .init(commit: commitB, files: ["spiece.model": Array("not this one".utf8),
                                                                   "sentencepiece.bpe.model": spm], large: ["sentencepiece.bpe.model"]),
        ])
        let client = hub.client()
        let loaded = try hubModel(client).load("hf-hub:timm/vit_huge_patch14_clip_224.metaclip2_worldwide")
        #expect(loaded.tokenizerFolder == "\(client.storageFolder("facebook/xlm-v-base"))/snapshots/\(commitB)")
        #expect(loaded.model.configuration.text.vocabulary == .xlmRoberta)
        let folder = try #require(loaded.tokenizerFolder)
        #expect(FileManager.default.fileExists(atPath: "\(folder)/\(LoadedModel.xlmRobertaFile)"))
        #expect(!FileManager.default.fileExists(atPath: "\(folder)/spiece.model"))
        #expect("\(type(of: try loaded.tokenizer()))" == "XLMRobertaTokenizer")
    }

    @Test("an open_clip CLIPA repository: BERT's vocab.txt fetched from bert-base-uncased, which the Hub redirects to google-bert/bert-base-uncased")
    func openCLIPCLIPARepository() throws {
        let hub = try FakeHub(repositories: [
            "UCSC-VLAA/ViT-L-14-CLIPA-datacomp1B": .init(commit: commitA, files: [
                "open_clip_config.json": try fixtureBytes("clipa/open_clip_config.json"),
                "open_clip_model.safetensors": try fixtureBytes("clipa/open_clip_model.safetensors"),
            ], large: ["open_clip_model.safetensors"]),
            "google-bert/bert-base-uncased": .init(commit: commitB, files: ["vocab.txt": try fixtureBytes("clipa/vocab.txt")], large: []),
        ], renamed: ["bert-base-uncased": "google-bert/bert-base-uncased"])
        let client = hub.client()
        let loaded = try hubModel(client).load("hf-hub:UCSC-VLAA/ViT-L-14-CLIPA-datacomp1B")
        #expect(loaded.tokenizerFolder == "\(client.storageFolder("bert-base-uncased"))/snapshots/\(commitB)")
        #expect(loaded.model.configuration.text.vocabulary == .wordPiece)
        #expect(FileManager.default.fileExists(atPath: "\(loaded.tokenizerFolder ?? "")/\(LoadedModel.wordPieceFile)"))
    }

    @Test("an open_clip repository with an XLM-RoBERTa text tower: sentencepiece.bpe.model fetched from xlm-roberta-base, redirected to FacebookAI/xlm-roberta-base")
    func openCLIPXLMRobertaRepository() throws {
        let hub = try FakeHub(repositories: [
            "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k": .init(commit: commitA, files: [
                "open_clip_config.json": try fixtureBytes("xlm-roberta/open_clip_config.json"),
                "open_clip_model.safetensors": try fixtureBytes("xlm-roberta/open_clip_model.safetensors"),
            ], large: ["open_clip_model.safetensors"]),
            "FacebookAI/xlm-roberta-base": .init(commit: commitB, files: ["sentencepiece.bpe.model": try fixtureBytes("xlm-roberta/sentencepiece.bpe.model")],
                                                 large: ["sentencepiece.bpe.model"]),
        ], renamed: ["xlm-roberta-base": "FacebookAI/xlm-roberta-base"])
        let client = hub.client()
        let loaded = try hubModel(client).load("hf-hub:laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k")
        #expect(loaded.tokenizerFolder == "\(client.storageFolder("xlm-roberta-base"))/snapshots/\(commitB)")
        #expect(loaded.model.configuration.text.roberta != nil && loaded.model.configuration.text.vocabulary == .xlmRoberta)
    }

    @Test("an open_clip roberta-ViT-B-32 repository: RoBERTa's vocab.json and merges.txt both fetched from roberta-base")
    func openCLIPRobertaRepository() throws {
        let xlmr = String(decoding: try fixtureBytes("xlm-roberta/open_clip_config.json"), as: UTF8.self)
        let cfg = xlmr.replacingOccurrences(of: "\"xlm-roberta-base\"", with: "\"roberta-base\"")
        #expect(cfg != xlmr)
        let gpt2 = "../../CLIPTokenizerTests/Fixtures/gpt2_bpe"
        let hub = try FakeHub(repositories: [
            "laion/CLIP-ViT-B-32-roberta-base-laion2B-s12B-b32k": .init(commit: commitA, files: [
                "open_clip_config.json": Array(cfg.utf8),
                "open_clip_model.safetensors": try fixtureBytes("xlm-roberta/open_clip_model.safetensors"),
            ], large: ["open_clip_model.safetensors"]),
            "FacebookAI/roberta-base": .init(commit: commitB, files: [
                "vocab.json": try fixtureBytes("\(gpt2)/vocab.json"), "merges.txt": try fixtureBytes("\(gpt2)/merges.txt"),
            ], large: []),
        ], renamed: ["roberta-base": "FacebookAI/roberta-base"])
        let client = hub.client()
        let loaded = try hubModel(client).load("hf-hub:laion/CLIP-ViT-B-32-roberta-base-laion2B-s12B-b32k")
        #expect(loaded.model.configuration.text.vocabulary == .gpt2BPE)
        let folder = try #require(loaded.tokenizerFolder)
        for file in ["vocab.json", "merges.txt"] { #expect(FileManager.default.fileExists(atPath: "\(folder)/\(file)"), "\(file)") }
        #expect(try loaded.tokenizer().vocabularySize == 3000)
    }

    @Test("a Hugging Face CLIPModel repository: open_clip's config remembered as absent, the snapshot folder loaded")
    func huggingFaceRepository() throws {
        let hub = try standardHub()
        let client = hub.client()
        let models = hubModel(client)
        let location = try models.locate("hf-hub:test-org/tiny-hf")
        let storage = client.storageFolder("test-org/tiny-hf")
        #expect(location == .init(path: "\(storage)/snapshots/\(commitB)", openCLIPConfig: nil))
        #expect(FileManager.default.fileExists(atPath: "\(storage)/.no_exist/\(commitB)/open_clip_config.json"))
        #expect(FileManager.default.fileExists(atPath: "\(storage)/.no_exist/\(commitB)/pytorch_model.bin") == false)
        let viaHub = try models.load("hf-hub:test-org/tiny-hf")
        #expect(viaHub.format == .huggingFace)
        try expectSameModel(viaHub, try CLIPModel.load(path: "\(clipFixtures)/formats/hf_vit_hd32"))
        // Offline, the absent markers let the same choice be made from the cache alone.
        let offline = hubModel(hub.client(cache: client.cacheDirectory, ["HF_HUB_OFFLINE": "1"]))
        #expect(try offline.locate("hf-hub:test-org/tiny-hf") == location)
    }

    @Test("a download cut short resumes with a Range request, in the same call and after the process died")
    func interruptedDownloadsResume() throws {
        let hub = try standardHub()
        let weights = try fixtureBytes("vit_small.safetensors")
        // Cut twice: the client retries while each attempt makes progress.
        hub.cutNext(2, after: 700_000)
        let client = hub.client()
        let path = try #require(try client.file("open_clip_model.safetensors", of: "test-org/tiny-openclip"))
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) == weights)
        let ranges = hub.server.received.filter { $0.path.hasPrefix("/cdn/") }.map { $0.headers["range"] }
        #expect(ranges == [nil, "bytes=700000-", "bytes=1400000-"])

        // A process killed mid-download leaves blobs/<sha>.incomplete; the next one continues from its end.
        let cache = temporaryCache()
        let second = hub.client(cache: cache)
        let storage = second.storageFolder("test-org/tiny-openclip")
        try FileManager.default.createDirectory(atPath: "\(storage)/blobs", withIntermediateDirectories: true)
        let blob = "\(storage)/blobs/\(SHA256.hex(weights))"
        try Data(weights.prefix(1_000_000)).write(to: URL(fileURLWithPath: blob + ".incomplete"))
        let start = hub.server.received.count
        let resumed = try #require(try second.file("open_clip_model.safetensors", of: "test-org/tiny-openclip"))
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: resumed))) == weights)
        #expect(hub.server.received.dropFirst(start).filter { $0.path.hasPrefix("/cdn/") }.map { $0.headers["range"] } == ["bytes=1000000-"])
        #expect(!FileManager.default.fileExists(atPath: blob + ".incomplete"))

        // Cut with no progress at all: an error that says the bytes are kept for the next attempt.
        let third = hub.client()
        hub.cutNext(1, after: 0)
        hub.cutNext(10, after: 0)
        do {
            _ = try third.file("open_clip_model.safetensors", of: "test-org/tiny-openclip")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("next attempt resumes"), "\(error)")
        }
        hub.cutNext(0, after: 0)
    }

    @Test("a download whose bytes do not match the Hub's SHA-256 is discarded, nothing linked")
    func corruptDownloadsAreRefused() throws {
        let hub = try standardHub()
        hub.corruptDownloads(true)
        defer { hub.corruptDownloads(false) }
        let client = hub.client()
        do {
            _ = try client.file("open_clip_model.safetensors", of: "test-org/tiny-openclip")
            Issue.record("expected a checksum error")
        } catch {
            guard case .checksum = error else { Issue.record("\(error)"); return }
        }
        let storage = client.storageFolder("test-org/tiny-openclip")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(storage)/blobs").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "\(storage)/snapshots/\(commitA)/open_clip_model.safetensors"))
    }

    @Test("the Hub's refusals name the repository and what to do", arguments: [
        ("hf-hub:test-org/missing", nil, "no repository test-org/missing"),
        ("hf-hub:test-org/tiny-hf", "nope", "has no revision nope"),
        ("hf-hub:../etc", nil, "not a Hugging Face repository id"),
        ("hf-hub:a--b/c", nil, "not a Hugging Face repository id"),
        ("hf-hub:a/b/c", nil, "not a Hugging Face repository id"),
        ("hf-hub:test-org/tiny-hf", "../../x", "not a revision"),
        ("hf-hub:test-org/tiny-hf", "a b", "not a revision"),
    ] as [(String, String?, String)])
    func refusals(spec: String, revision: String?, message: String) throws {
        let hub = try standardHub()
        let models = hubModel(hub.client(), revision: revision)
        do {
            _ = try models.locate(spec)
            Issue.record("expected an error for \(spec)")
        } catch {
            #expect(error.description.contains(message), "\(error)")
        }
    }

    @Test("a renamed repository's relative redirect is followed; a revision that is a branch gets its ref")
    func renamedRepositoriesAndBranches() throws {
        let hub = try standardHub(renamed: ["old-org/tiny-openclip": "test-org/tiny-openclip"])
        let client = hub.client()
        let path = try #require(try client.file("open_clip_config.json", of: "old-org/tiny-openclip", revision: "v1"))
        #expect(path.contains("/models--old-org--tiny-openclip/snapshots/\(commitA)/"))
        #expect(try String(contentsOfFile: "\(client.storageFolder("old-org/tiny-openclip"))/refs/v1", encoding: .utf8) == commitA)
    }

    @Test("no Hub: the cache answers for a revision it knows; otherwise the error says how to work offline")
    func unreachableHub() throws {
        let hub = try standardHub()
        let client = hub.client()
        let location = try hubModel(client).locate("hf-hub:test-org/tiny-openclip")
        let down = HuggingFaceHub(environment: ["HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": client.cacheDirectory],
                                  showProgress: false)
        #expect(try hubModel(down).locate("hf-hub:test-org/tiny-openclip") == location)
        do {
            _ = try hubModel(down).locate("hf-hub:test-org/tiny-hf")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("HF_HUB_OFFLINE"), "\(error)")
        }
        let offline = HuggingFaceHub(environment: ["HF_HUB_OFFLINE": "yes", "HF_HUB_CACHE": temporaryCache()], showProgress: false)
        do {
            _ = try hubModel(offline).locate("hf-hub:test-org/tiny-hf")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("HF_HUB_OFFLINE is set"), "\(error)")
        }
    }

    @Test("a hostile Hub: a commit or ETag that would escape the cache folder is refused")
    func hostileHeaders() throws {
        for (commit, etag) in [("../../../tmp/x", "\"abc\""), (commitA, "\"../../escape\"")] {
            let server = try LoopbackServer { _ in
                .init(status: 200, headers: ["X-Repo-Commit": commit, "ETag": etag], body: Array("{}".utf8))
            }
            let client = HuggingFaceHub(environment: ["HF_ENDPOINT": server.baseURL, "HF_HUB_CACHE": temporaryCache()],
                                        showProgress: false)
            #expect(throws: HubError.self) { try client.file("config.json", of: "a/b") }
        }
    }

    @Test("environment: HF_HOME, HF_HUB_CACHE, XDG_CACHE_HOME, HF_TOKEN and its file, HF_HUB_OFFLINE, HF_ENDPOINT")
    func environment() throws {
        let home = FileManager.default.homeDirectoryForCurrentUser.path
        #expect(HuggingFaceHub(environment: [:]).cacheDirectory == "\(home)/.cache/huggingface/hub")
        #expect(HuggingFaceHub(environment: ["XDG_CACHE_HOME": "/x"]).cacheDirectory == "/x/huggingface/hub")
        #expect(HuggingFaceHub(environment: ["HF_HOME": "/h"]).cacheDirectory == "/h/hub")
        #expect(HuggingFaceHub(environment: ["HF_HOME": "/h", "HF_HUB_CACHE": "/c"]).cacheDirectory == "/c")
        #expect(HuggingFaceHub(environment: [:]).endpoint == "https://huggingface.co")
        #expect(HuggingFaceHub(environment: ["HF_ENDPOINT": "https://hf-mirror.com/"]).endpoint == "https://hf-mirror.com")
        #expect(HuggingFaceHub(environment: ["HF_HUB_OFFLINE": "1"]).offline)
        #expect(HuggingFaceHub(environment: ["HF_HUB_OFFLINE": "True"]).offline)
        #expect(!HuggingFaceHub(environment: ["HF_HUB_OFFLINE": "0"]).offline)
        let dir = temporaryCache()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("hf_fromfile\n".utf8).write(to: URL(fileURLWithPath: "\(dir)/token"))
        #expect(HuggingFaceHub(environment: ["HF_HOME": dir]).token == "hf_fromfile")
        #expect(HuggingFaceHub(environment: ["HF_HOME": dir, "HF_TOKEN": "hf_env"]).token == "hf_env")
        #expect(HuggingFaceHub(environment: ["HF_HOME": "/nonexistent"]).token == nil)
    }
}

/// A cache as huggingface_hub wrote it when open_clip loaded `hf-hub:test-org/tiny-openclip` in Python
/// (Scripts/fixtures/make_hub_fixtures.py), with open_clip's outputs for that model.
@Test("a cache written by huggingface_hub is read, offline or with the Hub unreachable, to open_clip's numbers",
      arguments: [["HF_HUB_OFFLINE": "1"], ["HF_ENDPOINT": "http://127.0.0.1:9"]])
func cacheWrittenByPython(environment: [String: String]) throws {
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/hf_cache").path
    struct Reference: Decodable {
        let commit: String
        let tokens: [[Int]]
        let image_features: [Float]
        let text_features: [[Float]]
        let mean: [Float]
        let std: [Float]
    }
    let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: "\(fixture)/reference.json")))
    var env = environment
    env["HF_HUB_CACHE"] = fixture
    let models = hubModel(HuggingFaceHub(environment: env, showProgress: false))
    let location = try models.locate("hf-hub:test-org/tiny-openclip")
    #expect(location.path == "\(fixture)/models--test-org--tiny-openclip/snapshots/\(ref.commit)/open_clip_model.safetensors")
    let loaded = try models.load("hf-hub:test-org/tiny-openclip")
    #expect(loaded.preprocessing.mean == ref.mean && loaded.preprocessing.std == ref.std)
    #expect(loaded.model.configuration.activation == .gelu)
    let r = loaded.model.configuration.imageResolution
    let pixels = try Tensor(shape: [1, 3, r, r], scalars: (0..<(3 * r * r)).map { Float($0 % 17) / 17 - 0.5 })
    let image = try loaded.model.encodeImage(pixels).scalars
    let text = try loaded.model.encodeText(ref.tokens).scalars
    for (what, ours, theirs) in [("encode_image", image, ref.image_features), ("encode_text", text, ref.text_features.flatMap { $0 })] {
        #expect(ours.count == theirs.count)
        let diff = zip(ours, theirs).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let norm = theirs.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(diff / norm <= 1e-5, "\(what): relative error \(diff / norm)")
    }
    // Nothing was written into the cache.
    #expect(!FileManager.default.fileExists(atPath: "\(fixture)/.locks"))
}

@Test("a sharded Hugging Face repository: the index's shards fetched, the snapshot folder loaded as the whole file")
func shardedRepository() throws {
    let hf = "formats/hf_vit_hd32"
    let whole = try SafeTensorsFile(path: "\(clipFixtures)/\(hf)/model.safetensors")
    let names = whole.tensorInfos.filter(\.dtype.isFloatingPoint).map(\.name)
    var files: [String: [UInt8]] = [:]
    var map: [String: String] = [:]
    for (part, slice) in [names.prefix(names.count / 2), names.dropFirst(names.count / 2)].enumerated() {
        let file = "model-0000\(part + 1)-of-00002.safetensors"
        files[file] = SafeTensorsWriter.encode(try slice.map { ($0, try whole.floatTensor($0)) })
        for n in slice { map[n] = file }
    }
    files["model.safetensors.index.json"] = [UInt8](try JSONSerialization.data(withJSONObject: ["weight_map": map]))
    files["config.json"] = try fixtureBytes("\(hf)/config.json")
    files["preprocessor_config.json"] = try fixtureBytes("\(hf)/preprocessor_config.json")
    let hub = try FakeHub(repositories: ["test-org/sharded": .init(commit: commitB, files: files,
                                                                   large: ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])])
    let models = hubModel(hub.client())
    let location = try models.locate("hf-hub:test-org/sharded")
    #expect(location.path.hasSuffix("/snapshots/\(commitB)"))
    for f in files.keys { #expect(FileManager.default.fileExists(atPath: "\(location.path)/\(f)"), "\(f)") }
    try expectSameModel(try models.load("hf-hub:test-org/sharded"), try CLIPModel.load(path: "\(clipFixtures)/\(hf)"))
}
