import CLIP
import CLIPLoading
import CLIPFiles
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Names, download and cache of OpenAI's released models, as `clip.load(name)` does: files live in
/// `~/.cache/clip` under the names the reference uses (existing downloads are reused), every file is verified
/// against the SHA-256 embedded in its URL, downloads land atomically (temporary file, verified, renamed).
public struct ModelHub: Sendable {
    /// The nine models `clip.available_models()` lists, with their official URLs.
    public static let openAIModels: [(name: String, url: String)] = [
        ("RN50", "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"),
        ("RN101", "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt"),
        ("RN50x4", "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt"),
        ("RN50x16", "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt"),
        ("RN50x64", "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt"),
        ("ViT-B/32", "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"),
        ("ViT-B/16", "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"),
        ("ViT-L/14", "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
        ("ViT-L/14@336px", "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt"),
    ]

    static let officialBase = "https://openaipublic.azureedge.net/clip/models/"

    /// Where downloads are kept: `--cache-dir`, else `$CLIP_CACHE_DIR`, else the reference's `~/.cache/clip`.
    public var cacheDirectory: String
    /// A mirror to fetch from instead of OpenAI's host (same layout: `<base>/<sha256>/<file>`);
    /// `$CLIP_MODEL_BASE_URL` sets it too.
    public var baseURL: String?
    /// Draw a progress bar on standard error (only when it is a terminal).
    public var showProgress: Bool
    /// Where `hf-hub:` models come from and are cached (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE`).
    public var huggingFace: HuggingFaceHub
    /// The branch, tag or commit of an `hf-hub:` model (default `main`).
    public var revision: String?
    /// An open_clip pretrained tag: the model name is then an open_clip architecture (`--model ViT-B-32
    /// --pretrained laion2b_s34b_b79k`).
    public var pretrained: String?
    /// Where loads keep checkpoint files' weights packed for the kernels (nil: every load decodes and packs).
    public var weightCache: PackedWeightCache?

    /// A hub caching in `cacheDirectory` (else `$CLIP_CACHE_DIR`, else `~/.cache/clip`), fetching from `baseURL`
    /// (else `$CLIP_MODEL_BASE_URL`, else OpenAI's host).
    public init(cacheDirectory: String? = nil, baseURL: String? = nil, showProgress: Bool = true) {
        let env = ProcessInfo.processInfo.environment
        self.cacheDirectory = cacheDirectory ?? env["CLIP_CACHE_DIR"]
            ?? (FileManager.default.homeDirectoryForCurrentUser.path + "/.cache/clip")
        self.baseURL = baseURL ?? env["CLIP_MODEL_BASE_URL"]
        self.showProgress = showProgress
        huggingFace = HuggingFaceHub(environment: env, showProgress: showProgress)
    }

    /// Names of the model shipped in the package (`docs/default-model.md`), used when no model is given.
    public static let defaultModelNames = ["default", "swift-clip-shapes"]

    /// The shipped model's file: no download, works offline.
    public static func defaultModelPath() throws(HubError) -> String {
        guard let path = Bundle.module.path(forResource: "swift-clip-shapes", ofType: "safetensors") else {
            throw .unknownModel("default (the shipped swift-clip-shapes.safetensors is missing from this build's resources)",
                                available: openAIModels.map(\.name))
        }
        return path
    }

    /// The URL, file name and expected SHA-256 of a named model.
    public static func source(of name: String) -> (url: String, file: String, sha256: String)? {
        guard let url = openAIModels.first(where: { $0.name == name })?.url else { return nil }
        let parts = url.split(separator: "/")
        return (url, String(parts[parts.count - 1]), String(parts[parts.count - 2]))
    }

    /// A model by name (downloaded into the cache when needed), file path, Hugging Face folder or `hf-hub:ORG/NAME`.
    /// `openCLIPConfig` overrides the config an open_clip Hub repository brings.
    public func load(_ spec: String, openCLIPConfig: String? = nil, precision: Precision = .fp32,
                     towers: CLIPModel.Towers = .both) throws(HubError) -> LoadedModel {
        let location = try locate(spec)
        let loaded: LoadedModel
        do throws(ModelLoadError) {
            loaded = try CLIPModel.load(path: location.path, openCLIP: openCLIPConfig.map(OpenCLIPConfig.file) ?? location.openCLIPConfig,
                                        precision: precision, towers: towers, cache: weightCache)
        } catch {
            throw .load(error)
        }
        if let folder = location.tokenizerFolder { return loaded.withTokenizerFolder(folder) }
        return loaded
    }

    /// The prefix of a Hugging Face Hub repository as a model name, as open_clip spells it.
    public static let hubPrefix = "hf-hub:"

    /// Where a model's weights are, and the open_clip config that describes them when its source has one.
    public struct Location: Sendable, Equatable {
        /// A weight file or a Hugging Face `CLIPModel` folder.
        public let path: String
        /// An open_clip repository's `open_clip_config.json`, or the config of an open_clip pretrained tag.
        public let openCLIPConfig: OpenCLIPConfig?
        /// Where the tokenizer an open_clip config names (SigLIP's `spiece.model`) was fetched, when it was.
        public var tokenizerFolder: String?

        /// A location; `tokenizerFolder` only for models whose tokenizer lives apart from their weights.
        public init(path: String, openCLIPConfig: OpenCLIPConfig?, tokenizerFolder: String? = nil) {
            (self.path, self.openCLIPConfig, self.tokenizerFolder) = (path, openCLIPConfig, tokenizerFolder)
        }
    }

    /// An open_clip config's own tokenizer (SigLIP's `spiece.model`, SigLIP 2's Gemma `tokenizer.model`, XLM-V's
    /// `sentencepiece.bpe.model`, BERT's `vocab.txt`, RoBERTa's `vocab.json` and `merges.txt`, in the repository `text_cfg.hf_tokenizer_name` names), fetched
    /// into the Hub cache; nil when
    /// the config names none or the repository has neither file (loading the pipeline then says what is missing).
    private func tokenizer(for config: OpenCLIPConfig) throws(HubError) -> String? {
        guard let repository = config.tokenizerRepository else { return nil }
        // Only the files of the kind the config names: a repository holding several (roberta-base has vocab.json,
        // merges.txt and tokenizer.json) is read for the one the model was trained with.
        for files in config.tokenizerFileGroups {
            // A vocabulary in two files (RoBERTa's vocab.json and merges.txt) needs the second once the first is there.
            guard let path = try huggingFace.file(files[0], of: repository, revision: "main", optional: true) else { continue }
            for file in files.dropFirst() { _ = try huggingFace.file(file, of: repository, revision: "main", optional: false) }
            return (path as NSString).deletingLastPathComponent
        }
        return nil
    }

    /// The local files of `spec`: `resolve(spec)` for paths and OpenAI's names; for `hf-hub:ORG/NAME` the files of
    /// an open_clip repository (`open_clip_config.json` and `open_clip_model.safetensors`, else
    /// `open_clip_pytorch_model.bin`) or of a Hugging Face `CLIPModel` folder (`config.json`, `model.safetensors`
    /// else `pytorch_model.bin`, the preprocessor and tokenizer files), fetched at `revision`.
    public func locate(_ spec: String) throws(HubError) -> Location {
        if let pretrained {
            let table = try OpenCLIPPretrained.shared.get()
            guard let entry = table.entry(model: spec, tag: pretrained) else {
                let tags = table.tags(of: spec).map(\.tag)
                if tags.isEmpty {
                    throw .hub("--pretrained needs an open_clip architecture as the model; '\(spec)' is not one with pretrained weights (clip models lists them)")
                }
                throw .hub("open_clip has no tag '\(pretrained)' for \(OpenCLIPPretrained.cleaned(spec)); its tags: \(tags.joined(separator: ", "))")
            }
            return try locate(entry, in: table)
        }
        var st = stat()
        if lstat(spec, &st) != 0, !spec.hasPrefix(Self.hubPrefix), case .success(let table) = OpenCLIPPretrained.shared,
           let entry = table.entry(named: spec) {
            return try locate(entry, in: table)
        }
        guard spec.hasPrefix(Self.hubPrefix) else { return Location(path: try resolve(spec), openCLIPConfig: nil) }
        let repository = String(spec.dropFirst(Self.hubPrefix.count))
        let rev = revision ?? "main"
        let hub = huggingFace
        func first(_ names: [String]) throws(HubError) -> String? {
            for n in names { if let p = try hub.file(n, of: repository, revision: rev, optional: true) { return p } }
            return nil
        }
        if let config = try hub.file("open_clip_config.json", of: repository, revision: rev, optional: true) {
            guard let weights = try first(["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]) else {
                throw .hub("\(repository) has open_clip_config.json but neither open_clip_model.safetensors nor open_clip_pytorch_model.bin")
            }
            return Location(path: weights, openCLIPConfig: .file(config), tokenizerFolder: try tokenizer(for: .file(config)))
        }
        guard let config = try hub.file("config.json", of: repository, revision: rev) else {
            throw .hub("\(repository) at \(rev) has neither open_clip_config.json (an open_clip model) nor config.json (a Hugging Face CLIPModel)")
        }
        if try first(["model.safetensors"]) == nil {
            if let index = try hub.file("model.safetensors.index.json", of: repository, revision: rev, optional: true) {
                // A large model's weights are sharded: the index names the shards, each fetched like any file.
                let shards: [String]
                do { shards = try ShardedWeights.shardNames(indexPath: index) } catch { throw .load(.weightFile(error)) }
                for shard in shards where try hub.file(shard, of: repository, revision: rev) == nil {
                    throw .hub("\(repository): model.safetensors.index.json names the shard \(shard), which the repository does not have")
                }
            } else if try first(["pytorch_model.bin"]) == nil {
                throw .hub("\(repository) has config.json but none of model.safetensors, model.safetensors.index.json, pytorch_model.bin")
            }
        }
        for optional in ["preprocessor_config.json", "vocab.json", "merges.txt", LoadedModel.wordPieceFile, "tokenizer.json", "tokenizer_config.json",
                         "special_tokens_map.json"] + LoadedModel.sentencePieceFiles {
            _ = try hub.file(optional, of: repository, revision: rev, optional: true)
        }
        return Location(path: (config as NSString).deletingLastPathComponent, openCLIPConfig: nil)
    }

    /// An open_clip tag: checked before anything is downloaded, then its weight file (the `.safetensors`
    /// alternative first) from its Hub repository at `revision`, with the table's config.
    func locate(_ entry: OpenCLIPPretrained.Entry, in table: OpenCLIPPretrained) throws(HubError) -> Location {
        if let reason = table.unsupported(entry) {
            throw .hub("open_clip's \(entry.name) cannot be loaded yet: \(reason)")
        }
        guard let config = table.config(for: entry) else { throw .hub("open_clip's \(entry.name) has no config in the table") }
        for file in entry.weightFiles {
            if let path = try huggingFace.file(file, of: entry.repository, revision: revision ?? "main", optional: true) {
                return Location(path: path, openCLIPConfig: config, tokenizerFolder: try tokenizer(for: config))
            }
        }
        throw .hub("\(entry.repository) has none of \(entry.weightFiles.joined(separator: ", ")) (open_clip's \(entry.name))")
    }

    /// The local path for `spec`: itself when it exists on disk, the cached (and verified) file for one of the
    /// nine names; anything else is an error listing the names.
    public func resolve(_ spec: String) throws(HubError) -> String {
        var st = stat()
        if lstat(spec, &st) == 0 { return spec }  // whatever it is, the loader names its problem
        if Self.defaultModelNames.contains(spec) { return try Self.defaultModelPath() }
        guard let s = Self.source(of: spec) else {
            throw .unknownModel(spec, available: Self.openAIModels.map(\.name))
        }
        var url = s.url
        if let base = baseURL {
            url = base.hasSuffix("/") ? base : base + "/"
            url += "\(s.sha256)/\(s.file)"
        }
        return try fetch(url: url, file: s.file, sha256: s.sha256)
    }

    /// Ensures `cacheDirectory/file` exists with the given SHA-256, downloading it from `url` if it is absent or
    /// wrong (one fresh download; a second mismatch is an error). With a packed-weight cache, a file whose identity
    /// (device, inode, size, modification and change times) is what it was when last hashed is judged by the digest
    /// remembered then, without reading it: any write to the file changes its change time, which only the kernel
    /// sets.
    public func fetch(url: String, file: String, sha256: String) throws(HubError) -> String {
        let target = (cacheDirectory as NSString).appendingPathComponent(file)
        let fm = FileManager.default
        var stale: String?
        var st = stat()
        if lstat(target, &st) == 0 {
            // A file hashed before is not read again while it is the same file (device, inode, size, modification
            // and change times): the packed-weight cache remembers its digest. Hashing OpenAI's ViT-B/32 took
            // 0.45 s of every start; OpenAI's clip.load hashes it every time too.
            if let weightCache, let identity = PackedWeightCache.identity(of: target),
               let digest = weightCache.digest(of: target, identity: identity) {
                if digest == sha256 { return target }
                stale = "\(target) exists but its SHA-256 does not match"
            } else {
                // Whatever sits at the cache path is checked without blocking: a FIFO there must not hang us.
                do throws(FileError) {
                    if try SHA256.file(target) == sha256 { return target }
                    stale = "\(target) exists but its SHA-256 does not match"
                } catch {
                    guard case .notRegular = error.problem else { throw .cache("cannot read the cached \(error)") }
                    throw .cache("the cache entry \(error); remove it and try again")
                }
            }
        }
        do {
            try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        } catch {
            throw .cache("cannot create the cache directory \(cacheDirectory): \(error.localizedDescription)")
        }
        let temporary = target + ".download-\(ProcessInfo.processInfo.processIdentifier)"
        defer { try? fm.removeItem(atPath: temporary) }
        do throws(HubError) {
            try download(url, to: temporary, label: file, target: target, sha256: sha256)
        } catch {
            // One line: why the cache did not do, then why the download failed.
            if let stale, case .network(let u, let reason, let t, let sha) = error {
                throw .network(url: u, reason: "\(stale), and downloading it again failed: \(reason)", target: t, sha256: sha)
            }
            throw error
        }
        let got: String
        do { got = try SHA256.file(temporary) } catch { throw .cache("cannot read the download \(error)") }
        guard got == sha256 else {
            throw .checksum(url: url, expected: sha256, actual: got)
        }
        try? fm.removeItem(atPath: target)
        do {
            try fm.moveItem(atPath: temporary, toPath: target)
        } catch {
            throw .cache("cannot move the download into place at \(target): \(error.localizedDescription)")
        }
        return target
    }

    private func download(_ url: String, to path: String, label: String, target: String, sha256: String) throws(HubError) {
        guard let u = URL(string: url), u.scheme == "http" || u.scheme == "https" else {
            throw .network(url: url, reason: "not an http(s) URL", target: target, sha256: sha256)
        }
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw .cache("cannot create \(path)")
        }
        let reply: HTTPReply
        do {
            reply = try HTTPTransfer.get(u, headers: [:], into: path, offset: 0, limits: huggingFace.limits,
                                         progress: DownloadProgress(label: label, enabled: showProgress))
        } catch {
            throw .network(url: url, reason: error.reason, target: target, sha256: sha256)
        }
        guard (200..<300).contains(reply.status) else {
            throw .network(url: url, reason: "HTTP status \(reply.status)", target: target, sha256: sha256)
        }
    }
}

/// Why a model could not be obtained.
public enum HubError: Error, CustomStringConvertible {
    case unknownModel(String, available: [String])
    case network(url: String, reason: String, target: String, sha256: String)
    case checksum(url: String, expected: String, actual: String)
    case cache(String)
    case load(ModelLoadError)
    /// The Hugging Face Hub said no (no such repository, gated, bad revision) or the name is malformed.
    case hub(String)
    /// The Hub (or its mirror) did not answer; nothing usable was in the cache.
    case unreachable(url: String, reason: String)

    public var description: String {
        switch self {
        case .unknownModel(let m, let names):
            return "'\(m)' is neither a file, a folder, nor one of the models \(names.joined(separator: ", "))"
        case .network(let url, let reason, let target, let sha):
            return "cannot download \(url) (\(reason)); without network, put that file at \(target) (SHA-256 \(sha))"
        case .checksum(let url, let expected, let actual):
            return "the download of \(url) has SHA-256 \(actual), expected \(expected); nothing was cached"
        case .cache(let m), .hub(let m): return m
        case .load(let e): return e.description
        case .unreachable(let url, let reason):
            return "cannot download \(url) (\(reason)); without network, fill the cache elsewhere (e.g. `hf download`) and set HF_HUB_OFFLINE=1"
        }
    }
}
