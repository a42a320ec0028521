import CLIP
import CLIPFiles
import CLIPImage
import CLIPLayers
import CLIPTensor
import CLIPWeights
import Foundation

extension CLIPModel {
    /// Loads a checkpoint file or Hugging Face folder (see `CLIPModel.load(path:)`, which also reports the
    /// model's preprocessing).
    public init(contentsOf path: String) throws(ModelLoadError) {
        self = try CLIPModel.load(path: path).model
    }

    /// Loads a checkpoint in any supported form: a `.safetensors` file, a PyTorch zip checkpoint (`torch.save`
    /// state dict, wrapped training checkpoint, or TorchScript archive such as OpenAI's `.pt` files), or a Hugging
    /// Face `CLIPModel` folder. `openCLIPConfig` names an open_clip model-config JSON whose activation, head
    /// widths and preprocessing override what the weights imply.
    /// `towers: .textOnly` builds the text tower alone (for text queries).
    /// With a `cache`, the first load of a checkpoint file writes its weights as the layers hold them (packed,
    /// converted to `precision`) and later loads map that file instead of decoding and packing (see
    /// `PackedWeightCache`); a cache that cannot be read or written is passed over, never an error.
    public static func load(path: String, openCLIPConfig: String? = nil, precision: Precision = .fp32,
                            towers: Towers = .both, cache: PackedWeightCache? = nil) throws(ModelLoadError) -> LoadedModel {
        try load(path: path, openCLIP: openCLIPConfig.map(OpenCLIPConfig.file), precision: precision, towers: towers,
                 cache: cache)
    }

    /// `load(path:openCLIPConfig:)` with the open_clip config given as a file or as JSON in memory.
    public static func load(path: String, openCLIP openCLIPConfig: OpenCLIPConfig?, precision: Precision = .fp32,
                            towers: Towers = .both, cache: PackedWeightCache? = nil) throws(ModelLoadError) -> LoadedModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw .weightFile(WeightFileError(file: path, .cannotOpen(reason: "no such file or directory")))
        }
        if isDir.boolValue { return try loadHuggingFace(folder: path, precision: precision, towers: towers, cache: cache) }
        var source: any WeightSource
        let format: WeightFormat
        let identity = cache == nil ? nil : PackedWeightCache.identity(of: path)
        do {
            (source, format) = try openWeightFile(path: path)
            source = try openCLIPLayout(source)
        } catch { throw .weightFile(error) }
        var configuration = try CLIPConfiguration.infer(from: source)
        var preprocessing = Preprocessing(resolution: configuration.imageResolution)
        if source is CNCLIPWeights {
            // cn_clip resizes both sides to the model's resolution (no crop) and tokenizes BERT rows of 52.
            CNCLIPWeights.configure(&configuration)
            preprocessing.resizeMode = .squash
        }
        if let openCLIPConfig {
            try openCLIPConfig.apply(to: &configuration, &preprocessing)
        }
        let (model, digest) = try loadThroughCache(cache, path: path, identity: identity, source: source,
                                                   configuration: configuration, precision: precision, towers: towers)
        var loaded = LoadedModel(model: model, preprocessing: preprocessing, format: format, path: path,
                                 storedDTypes: dtypeCounts(source), parameterCount: parameterCount(source), tokenizerFolder: nil)
        loaded.checkpointDigest = digest
        return loaded
    }

    /// The model from `source`, through the packed-weight cache when there is one: a valid cache file for this
    /// content, precision and CPU serves every layer it holds; a missing or partial one is (re)written after the
    /// build. Loading one tower may use the file written for both towers, and writing that file removes the
    /// single-tower ones.
    static func loadThroughCache(_ cache: PackedWeightCache?, path: String, identity: String?, source: any WeightSource,
                                         configuration: CLIPConfiguration,
                                         ignoring: @escaping @Sendable (String) -> Bool = { _ in false }, precision: Precision,
                                         towers: Towers, shownAs: String? = nil) throws(ModelLoadError) -> (CLIPModel, digest: String?) {
        func uncached() throws(ModelLoadError) -> CLIPModel {
            try CLIPModel(weights: source, configuration: configuration, ignoring: ignoring, precision: precision, towers: towers)
        }
        // The checkpoint's identity before and after: a file replaced while it loads (a download renamed over it)
        // must neither be served another content's cache nor have its cache filled from the other content.
        guard let cache, let identity = identity, let digest = cache.digest(of: path, identity: identity) else {
            return (try uncached(), nil)
        }
        let key = PackedWeightCache.key(digest: digest, configuration: configuration, precision: precision, towers: towers)
        let bothKey = PackedWeightCache.key(digest: digest, configuration: configuration, precision: precision, towers: .both)
        let file = (towers != .both ? cache.open(key: bothKey, precision: precision) : nil)
            ?? cache.open(key: key, precision: precision)
        let (model, recording) = try CLIPModel.build(weights: source, configuration: configuration, ignoring: ignoring,
                                                     precision: precision, towers: towers, packed: file, record: true)
        guard PackedWeightCache.identity(of: path) == identity else { return (try uncached(), nil) }
        if file == nil || recording.misses > 0 || recording.tensorMisses > 0 {
            let stored: Void? = try? cache.store(model, recording: recording, key: key, source: shownAs ?? path)
            // One tower's loads read the file of both once there is one: the single-tower files are then dead weight.
            if towers == .both, stored != nil {
                for single in [Towers.textOnly, .imageOnly] {
                    unlink(cache.path(forKey: PackedWeightCache.key(digest: digest, configuration: configuration,
                                                                     precision: precision, towers: single)))
                }
            }
        }
        // A damaged file written for both towers and used by a text-only load: the text-only file just written
        // replaces it for such loads, and leaving it would send every later one through the same rebuild.
        if let file, file.foundDamage, file.path != cache.path(forKey: key) { unlink(file.path) }
        return (model, digest)
    }

    /// `file` under the names the towers read when it is laid out as one of open_clip's custom-text models (SigLIP,
    /// CoCa), else as it is.
    static func openCLIPLayout(_ file: any WeightSource) throws(WeightFileError) -> any WeightSource {
        if OpenCLIPTimmViTWeights.matches(file) { return try OpenCLIPTimmViTWeights(file) }
        if CNCLIPWeights.matches(file) { return try CNCLIPWeights(file) }
        if OpenCLIPCustomTextWeights.matches(file) { return try OpenCLIPCustomTextWeights(file) }
        return file
    }

    static func dtypeCounts(_ s: any WeightSource) -> [DType: Int] {
        var d: [DType: Int] = [:]
        for t in s.tensorInfos where !isIgnorable(t.name) { d[t.dtype, default: 0] += 1 }
        return d
    }

    /// Parameters as PyTorch counts them; saturates at Int.max rather than trapping on hostile shapes.
    static func parameterCount(_ s: any WeightSource) -> Int {
        s.tensorInfos.filter { $0.dtype.isFloatingPoint && !$0.name.hasSuffix("running_mean") && !$0.name.hasSuffix("running_var") }
            .reduce(0) { Checked.sum($0, Checked.product($1.shape) ?? Int.max) ?? Int.max }
    }
}

extension CLIPModel {
    /// The fp32 parameters of a checkpoint by OpenAI name (a file, or a Hugging Face folder mapped to OpenAI's
    /// names), with its architecture and preprocessing: the start of fine-tuning.
    public static func loadParameters(path: String, openCLIP openCLIPConfig: OpenCLIPConfig? = nil) throws(ModelLoadError)
        -> (parameters: NamedTensors, configuration: CLIPConfiguration, preprocessing: Preprocessing) {
        let loaded = try load(path: path, openCLIP: openCLIPConfig)
        let source: any WeightSource
        let ignorable: (String) -> Bool
        let huggingFaceBase = loaded.format == .huggingFace ? try huggingFaceWeightFile(folder: path) : nil
        do throws(WeightFileError) {
            if let huggingFaceBase {
                source = try HuggingFaceWeights(huggingFaceBase)
                ignorable = { isIgnorable($0) || HuggingFaceWeights.isIgnorable($0) }
            } else {
                let file = try openWeightFile(path: path).0
                source = try openCLIPLayout(file)
                ignorable = isIgnorable
            }
            var all = try NamedTensors(source)
            all.names = all.names.filter { !ignorable($0) }
            return (NamedTensors(names: all.names, values: all.values.filter { !ignorable($0.key) }, origin: path),
                    loaded.model.configuration, loaded.preprocessing)
        } catch {
            throw .weightFile(error)
        }
    }
}
