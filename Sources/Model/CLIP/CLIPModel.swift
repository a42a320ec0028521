#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPLayers
import CLIPTensor
import CLIPWeights

/// A loaded CLIP model: an image tower, a text tower and the learned logit scale. Immutable and `Sendable`,
/// so one instance can serve concurrent requests.
///
/// ```swift
/// let model = try CLIPModel(contentsOf: "ViT-B-32.safetensors")
/// let image = try model.encodeImage(pixels)          // [N, 3, 224, 224] → [N, 512]
/// let text = try model.encodeText(tokenIDs)          // N × 77 ids → [N, 512]
/// let (perImage, _) = try model.logits(images: pixels, texts: tokenIDs)
/// let probs = softmax(perImage)
/// ```
public struct CLIPModel: Sendable {
    /// The architecture the towers were built for.
    public let configuration: CLIPConfiguration
    /// The image tower: `[N, 3, resolution, resolution]` pixels → `[N, embedDim]`.
    public let visual: VisualTower
    /// The text tower: `N × contextLength` token ids → `[N, embedDim]`.
    public let text: TextTower
    /// `logit_scale` as stored: the logits use exp(logitScale).
    public let logitScale: Float
    /// `logit_bias`, added to every logit of a SigLIP model (`objective` `.sigmoid`); 0 for CLIP.
    public let logitBias: Float
    /// Arithmetic of the products with layer weights.
    public let precision: Precision

    /// The two image towers CLIP comes with, open_clip's ConvNeXt, EVA or FastViT, or none when only the text tower was loaded.
    public enum VisualTower: Sendable {
        case transformer(VisionTransformer)
        case resnet(ModifiedResNet)
        case convNeXt(ConvNeXt)
        /// timm's EVA (open_clip's EVA01 and EVA02).
        case eva(EVAVisionTransformer)
        /// timm's FastViT (open_clip's MobileCLIP).
        case fastViT(FastViT)
        /// timm's ViTamin (open_clip's ViTamin models).
        case viTamin(ViTamin)
        /// Loaded with `towers: .textOnly`: text queries pay neither the time nor the memory of the image tower.
        case notLoaded
    }

    /// CLIP's text transformer, a Hugging Face RoBERTa tower (open_clip's XLM-RoBERTa models) or NLLB-200's encoder.
    public enum TextTower: Sendable {
        case transformer(TextTransformer)
        case roberta(RobertaTextEncoder)
        case nllb(NLLBTextEncoder)
        /// Loaded with `towers: .imageOnly`: images are classified against label embeddings computed before.
        case notLoaded

        func forward(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
            switch self {
            case .transformer(let t): return try t.forward(tokens)
            case .roberta(let r): return try r.forward(tokens)
            case .nllb(let e): return try e.forward(tokens)
            case .notLoaded: throw .textTowerNotLoaded
            }
        }

        func converted(to precision: Precision) throws(TensorError) -> TextTower {
            switch self {
            case .transformer(let t): return .transformer(try t.converted(to: precision))
            case .roberta(let r): return .roberta(try r.converted(to: precision))
            case .nllb(let e): return .nllb(try e.converted(to: precision))
            case .notLoaded: return .notLoaded
            }
        }
    }

    /// Which towers to build from a checkpoint.
    public enum Towers: Sendable {
        case both
        /// The text tower alone (the image tower's tensors are skipped unread): for text queries.
        case textOnly
        /// The image tower alone (the text tower's tensors are skipped unread): for images classified against label
        /// embeddings computed before, and for embedding photos.
        case imageOnly

        /// Whether a checkpoint tensor is one these towers skip: the other tower's.
        func skips(_ name: String) -> Bool {
            switch self {
            case .both: false
            case .textOnly: name.hasPrefix("visual.")
            case .imageOnly: !name.hasPrefix("visual.") && name != "logit_scale" && name != "logit_bias"
            }
        }
    }

    /// Names that checkpoints may carry without the model using them: BatchNorm's step counters and the
    /// TorchScript extras that the reference `build_model` deletes.
    public static func isIgnorable(_ name: String) -> Bool {
        name.hasSuffix(".num_batches_tracked") || ["input_resolution", "context_length", "vocab_size"].contains(name)
            || name == "text.transformer.embeddings.position_ids"  // a buffer older transformers saved
    }

    /// Builds the model from named tensors. The architecture is inferred from the weights unless given. Fails on
    /// any missing, mis-shaped or unexpected tensor, naming it. `precision` other than fp32 is `converted(to:)`
    /// applied to each tower as soon as it is built, so the fp32 weights of only one tower are ever held at once.
    public init(weights: any WeightSource, configuration: CLIPConfiguration? = nil,
                ignoring extra: @escaping @Sendable (String) -> Bool = { _ in false },
                precision: Precision = .fp32, towers: Towers = .both) throws(ModelLoadError) {
        let c: CLIPConfiguration
        if let configuration { c = configuration } else { c = try CLIPConfiguration.infer(from: weights) }
        let reader = ParameterReader(source: weights, ignoring: {
            Self.isIgnorable($0) || extra($0) || towers.skips($0)
        })
        try self.init(reader, c, precision: precision, towers: towers)
    }

    /// `init(weights:configuration:precision:towers:)` reading through `packed` (a packed-weight cache file of
    /// these weights) where it holds a tensor or layer; with `record`, also what the load handed out, for writing one.
    package static func build(weights: any WeightSource, configuration c: CLIPConfiguration,
                      ignoring extra: @escaping @Sendable (String) -> Bool = { _ in false }, precision: Precision, towers: Towers,
                      packed: (any PackedWeightSource)?, record: Bool) throws(ModelLoadError) -> (CLIPModel, ParameterReader.Recording) {
        let reader = ParameterReader(source: weights, ignoring: {
            Self.isIgnorable($0) || extra($0) || towers.skips($0)
        }, packed: packed, record: record)
        let model = try CLIPModel(reader, c, precision: precision, towers: towers)
        return (model, reader.recorded)
    }

    /// A model of the given architecture with freshly initialised weights (see `initialValue(of:shape:in:using:)`).
    /// For benchmarks and as the start of training. Throws when the configuration is inconsistent (for example
    /// heads that do not divide a width).
    public init(randomWeightsFor c: CLIPConfiguration, seed: UInt64 = 0,
                precision: Precision = .fp32) throws(ModelLoadError) {
        var rng = NormalGenerator(seed: seed)
        let reader = ParameterReader(origin: "random initialisation") { name, shape in
            Self.initialValue(of: name, shape: shape, in: c, using: &rng)
        }
        try self.init(reader, c, precision: precision)
    }

    /// The freshly initialised parameters of a model of architecture `c`, by checkpoint name in the order the
    /// layers take them: the start of training from scratch. The same seed gives the same values everywhere.
    public static func initialParameters(for c: CLIPConfiguration, seed: UInt64 = 0) throws(ModelLoadError) -> NamedTensors {
        var rng = NormalGenerator(seed: seed)
        var names: [String] = [], values: [String: Tensor] = [:]
        let reader = ParameterReader(origin: "random initialisation") { name, shape in
            let t = Self.initialValue(of: name, shape: shape, in: c, using: &rng)
            names.append(name)
            values[name] = t
            return t
        }
        _ = try CLIPModel(reader, c, precision: .fp32)
        return NamedTensors(names: names, values: values, origin: "random initialisation (seed \(seed))")
    }

    /// One parameter's initial value, as the reference's `initialize_parameters` draws the text tower (normal;
    /// std 0.02 / 0.01 for token / positional embeddings, width^-½ for attention inputs and projections,
    /// (2·width)^-½ for the MLP's first layer, width^-½·(2·layers)^-½ for the layers that write the residual
    /// stream), applied to both towers' transformers; class embedding width^-½; LayerNorm and BatchNorm as
    /// identities, biases zero, `logit_scale` ln(1/0.07), other weights fan-in scaled.
    static func initialValue(of name: String, shape: [Int], in c: CLIPConfiguration,
                             using rng: inout NormalGenerator) -> Tensor {
        let count = shape.reduce(1, *)
        if name == "logit_scale" { return Tensor(uncheckedShape: shape, scalars: [logf(1 / 0.07)]) }
        // SigLIP initialises its bias at −10 (only read for `objective` `.sigmoid`).
        if name == "logit_bias" { return Tensor(uncheckedShape: shape, scalars: [-10]) }
        if name.hasSuffix("running_var") || (name.hasSuffix(".weight") && shape.count == 1) {
            return Tensor(uncheckedShape: shape, scalars: [Float](repeating: 1, count: count))
        }
        if name.hasSuffix("bias") || name.hasSuffix("running_mean") {
            return Tensor(uncheckedShape: shape, scalars: [Float](repeating: 0, count: count))
        }
        var (width, layers) = (c.text.width, c.text.layers)
        if name.hasPrefix("visual."), case .transformer(let v) = c.vision { (width, layers) = (v.width, v.layers) }
        let w = Float(width), residual = 1 / (w.squareRoot() * Float(2 * max(layers, 1)).squareRoot())
        let isTransformer = name.contains("transformer.resblocks.")
        let std: Float
        switch name {
        case "token_embedding.weight": std = 0.02
        case "positional_embedding": std = 0.01
        case "visual.class_embedding", "visual.positional_embedding", "visual.proj", "text_projection":
            std = 1 / w.squareRoot()
        case _ where isTransformer && name.hasSuffix("attn.in_proj_weight"): std = 1 / w.squareRoot()
        case _ where isTransformer && (name.hasSuffix("out_proj.weight") || name.hasSuffix("c_proj.weight")):
            std = residual
        case _ where isTransformer && name.hasSuffix("c_fc.weight"): std = 1 / (2 * w).squareRoot()
        default: std = 1 / Float(max(shape.dropFirst().reduce(1, *), shape.first ?? 1)).squareRoot()
        }
        return Tensor(uncheckedShape: shape, scalars: (0..<count).map { _ in rng.next() * std })
    }

    private init(_ r: ParameterReader, _ c: CLIPConfiguration, precision: Precision,
                 towers: Towers = .both) throws(ModelLoadError) {
        try c.validate(origin: r.origin)
        if let message = CPU.configurationError { throw .cpu(message) }
        try Self.checkAvailable(precision)
        self.precision = precision
        switch c.vision {
        case _ where towers == .textOnly:
            visual = .notLoaded
        case .transformer(let v):
            let tower = try VisionTransformer(r, v, embedDim: c.embedDim)
            visual = .transformer(try Self.convert(precision) { () throws(TensorError) in try tower.converted(to: precision) })
        case .resnet(let v):
            let tower = try ModifiedResNet(r, v, embedDim: c.embedDim)
            visual = .resnet(try Self.convert(precision) { () throws(TensorError) in try tower.converted(to: precision) })
        case .convNeXt(let v):
            let tower = try ConvNeXt(r, v, embedDim: c.embedDim)
            visual = .convNeXt(try Self.convert(precision) { () throws(TensorError) in try tower.converted(to: precision) })
        case .eva(let v):
            let tower = try EVAVisionTransformer(r, v, embedDim: c.embedDim)
            visual = .eva(try Self.convert(precision) { () throws(TensorError) in try tower.converted(to: precision) })
        case .fastViT(let v):
            let tower = try FastViT(r, v, embedDim: c.embedDim)
            visual = .fastViT(try Self.convert(precision) { () throws(TensorError) in try tower.converted(to: precision) })
        case .viTamin(let v):
            let tower = try ViTamin(r, v, embedDim: c.embedDim)
            visual = .viTamin(try Self.convert(precision) { () throws(TensorError) in try tower.converted(to: precision) })
        }
        let textTower: TextTower = towers == .imageOnly ? .notLoaded
            : c.text.roberta != nil ? .roberta(try RobertaTextEncoder(r, c.text, embedDim: c.embedDim))
            : c.text.nllb != nil ? .nllb(try NLLBTextEncoder(r, c.text, embedDim: c.embedDim))
            : .transformer(try TextTransformer(r, c.text, embedDim: c.embedDim))
        text = try Self.convert(precision) { () throws(TensorError) in try textTower.converted(to: precision) }
        logitScale = try r.tensor("logit_scale", shape: []).scalars[0]
        logitBias = c.objective == .sigmoid ? try r.tensor("logit_bias", shape: []).scalars[0] : 0
        // exp(logit_scale) multiplies every logit: one that overflows makes every probability NaN.
        guard expf(logitScale).isFinite, expf(logitScale) > 0 else {
            throw .architecture("logit_scale is \(logitScale); exp(logit_scale) must be a finite positive number (CLIP trains it below ln 100 ≈ 4.6)", origin: r.origin)
        }
        try r.finish()
        self.configuration = c
    }

    private init(configuration: CLIPConfiguration, visual: VisualTower, text: TextTower, logitScale: Float,
                 logitBias: Float, precision: Precision) {
        (self.configuration, self.visual, self.text, self.logitScale, self.logitBias, self.precision) =
            (configuration, visual, text, logitScale, logitBias, precision)
    }

    /// The same model computing its weight products in `precision`: `bf16` stores layer weights as bfloat16 and
    /// rounds activations to it (AVX512-BF16); `int8` quantises weights per output channel and activations per row
    /// (AVX2, AVX512-VNNI or NEON DotProd). Embeddings, LayerNorms and attention stay fp32. An error on a CPU
    /// without the instructions, never a silent fallback. Converting back to fp32 keeps the rounded values.
    public func converted(to precision: Precision) throws(ModelLoadError) -> CLIPModel {
        guard precision != self.precision else { return self }
        try Self.checkAvailable(precision)
        let visual: VisualTower
        switch self.visual {
        case .transformer(let v):
            visual = .transformer(try Self.convert(precision) { () throws(TensorError) in try v.converted(to: precision) })
        case .resnet(let r):
            visual = .resnet(try Self.convert(precision) { () throws(TensorError) in try r.converted(to: precision) })
        case .convNeXt(let c):
            visual = .convNeXt(try Self.convert(precision) { () throws(TensorError) in try c.converted(to: precision) })
        case .eva(let e):
            visual = .eva(try Self.convert(precision) { () throws(TensorError) in try e.converted(to: precision) })
        case .fastViT(let f):
            visual = .fastViT(try Self.convert(precision) { () throws(TensorError) in try f.converted(to: precision) })
        case .viTamin(let v):
            visual = .viTamin(try Self.convert(precision) { () throws(TensorError) in try v.converted(to: precision) })
        case .notLoaded:
            visual = .notLoaded
        }
        let text = try Self.convert(precision) { () throws(TensorError) in try self.text.converted(to: precision) }
        return CLIPModel(configuration: configuration, visual: visual, text: text, logitScale: logitScale,
                         logitBias: logitBias, precision: precision)
    }

    private static func checkAvailable(_ precision: Precision) throws(ModelLoadError) {
        guard precision.isAvailable else {
            throw .cpu("precision \(precision.rawValue) needs a CPU with \(precision.requirement) (this one has: "
                       + "\(CPU.features.isEmpty ? "none of them" : CPU.features.joined(separator: ", "))); use fp32")
        }
    }

    /// A tower conversion, its (internal, shape) errors reported as a load error.
    private static func convert<T>(_ precision: Precision, _ body: () throws(TensorError) -> T) throws(ModelLoadError) -> T {
        do { return try body() } catch { throw .cpu("cannot convert the model to \(precision.rawValue): \(error)") }
    }

    /// Image embeddings: `pixels` [N, 3, R, R] (normalised as the model's preprocessing does) → [N, embed]. A NaFlex
    /// tower (SigLIP 2's `variableGrid`) takes [N, values] in `Preprocessing.PatchBudget`'s layout instead.
    public func encodeImage(_ pixels: Tensor) throws(CLIPError) -> Tensor {
        if case .transformer(let v) = configuration.vision, v.variableGrid {
            guard pixels.rank == 2 else {
                throw .imageShape(pixels.shape, expected: "[N, values]: NaFlex's patch rows (Preprocessing.PatchBudget's layout)")
            }
        } else if pixels.rank != 4 || pixels.shape[1] != 3 {
            throw .imageShape(pixels.shape, expected: "[N, 3, \(configuration.imageResolution), \(configuration.imageResolution)]")
        }
        if pixels.shape[0] == 0 { return Tensor(uncheckedZeros: [0, configuration.embedDim]) }
        if pixels.scalars.contains(where: { !$0.isFinite }) { throw .nonFinitePixels }
        let out: Tensor
        switch visual {
        case .transformer(let vit): out = try vit.forward(pixels)
        case .resnet(let resnet): out = try resnet.forward(pixels)
        case .convNeXt(let convNeXt): out = try convNeXt.forward(pixels)
        case .eva(let eva): out = try eva.forward(pixels)
        case .fastViT(let fastViT): out = try fastViT.forward(pixels)
        case .viTamin(let viTamin): out = try viTamin.forward(pixels)
        case .notLoaded: throw .imageTowerNotLoaded
        }
        try Self.checkFinite(out, "image")
        return out
    }

    /// Finite weights can still overflow (weights of 1e30 are finite); such outputs are an error, not NaN results.
    private static func checkFinite(_ t: Tensor, _ what: String) throws(CLIPError) {
        if let i = t.scalars.firstIndex(where: { !$0.isFinite }) {
            throw .nonFiniteOutput(what: what, row: i / max(t.shape.last ?? 1, 1))
        }
    }

    /// Text embeddings: `tokens` N rows of token ids, all of one length ≤ the context length (as
    /// `clip.tokenize` returns them, [N, 77]) → [N, embed]. Each text's features are taken at its largest
    /// id, the end-of-text token.
    public func encodeText(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
        if tokens.isEmpty { return Tensor(uncheckedZeros: [0, configuration.embedDim]) }
        let out = try text.forward(tokens)
        try Self.checkFinite(out, "text")
        return out
    }

    /// The reference forward pass: `logitsPerImage` [N_img, N_txt] = exp(logit_scale) · cosine similarity
    /// of the embeddings (+ `logit_bias` for SigLIP), and `logitsPerText`, its transpose.
    public func logits(images: Tensor, texts: [[Int]]) throws(CLIPError) -> (logitsPerImage: Tensor, logitsPerText: Tensor) {
        let img = try encodeImage(images)
        let txt = try encodeText(texts)
        do { return try logits(imageEmbeddings: img, textEmbeddings: txt) } catch { throw .internalShape(error) }
    }

    /// Logits from embeddings already computed ([N_img, embed] and [N_txt, embed]).
    public func logits(imageEmbeddings: Tensor, textEmbeddings: Tensor) throws(TensorError) -> (logitsPerImage: Tensor, logitsPerText: Tensor) {
        let cosine = try cosineSimilarity(imageEmbeddings, textEmbeddings)
        let (ni, nt) = (cosine.shape[0], cosine.shape[1])
        let scale = expf(logitScale)
        var perImage = cosine, perText = Tensor(uncheckedZeros: [nt, ni])
        for i in 0..<ni {
            for t in 0..<nt {
                perImage.scalars[i * nt + t] = scale * cosine.scalars[i * nt + t] + logitBias
                perText.scalars[t * ni + i] = perImage.scalars[i * nt + t]
            }
        }
        return (perImage, perText)
    }
}

/// Errors from running a model on bad input. Each names the offending input.
public enum CLIPError: Error, CustomStringConvertible, Equatable {
    case imageShape([Int], expected: String)
    case nonFinitePixels
    case tokenLength(text: Int, count: Int, expected: Int, contextLength: Int)
    case tokenOutOfRange(text: Int, position: Int, id: Int, vocabularySize: Int)
    /// A shape inconsistency inside the model; indicates a bug, reported rather than crashing.
    case internalShape(TensorError)
    /// The model's output overflowed (weights far outside any trained range).
    case nonFiniteOutput(what: String, row: Int)
    /// What was asked cannot be trained (a reduced precision, a ResNet tower).
    case training(String)
    /// The model was loaded text-only.
    case imageTowerNotLoaded
    /// The model was loaded image-only.
    case textTowerNotLoaded

    public var description: String {
        switch self {
        case .imageShape(let s, let e): return "image tensor has shape \(s), expected \(e)"
        case .nonFinitePixels: return "image tensor contains NaN or infinite values"
        case .tokenLength(let t, let n, let e, let ctx):
            return "text \(t) has \(n) tokens; all texts in a batch need the same length (\(e)), between 1 and the context length \(ctx)"
        case .tokenOutOfRange(let t, let p, let id, let v):
            return "text \(t), position \(p): token id \(id) is outside the vocabulary 0..<\(v)"
        case .internalShape(let e): return "internal shape error: \(e)"
        case .nonFiniteOutput(let what, let row):
            return "the model's \(what) embedding \(row) is not finite: its weights overflow fp32 arithmetic"
        case .training(let message): return message
        case .imageTowerNotLoaded: return "the image tower was not loaded (the model was loaded text-only); load it with both towers to encode images"
        case .textTowerNotLoaded: return "the text tower was not loaded (the model was loaded image-only); load it with both towers to encode text"
        }
    }
}
