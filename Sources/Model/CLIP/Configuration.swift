import CLIPLayers
import CLIPWeights

/// The architecture of a CLIP model. `infer(from:)` derives it from the weights alone, as the reference
/// `build_model` does; fields may be changed before building when a model's config says otherwise (for
/// example attention heads that are not width/64).
public struct CLIPConfiguration: Sendable, Equatable {
    /// The largest input side a model may ask for (ViT-L/14@336px takes 336; SigLIP 512).
    public static let maximumImageResolution = 4_096

    /// Width of the joint image–text embedding space.
    public var embedDim: Int
    /// The image tower's architecture.
    public var vision: Vision
    /// The text tower's architecture.
    public var text: Text
    /// How image–text logits become probabilities, and whether a learned `logit_bias` is added to them.
    public var objective: Objective = .softmax

    /// CLIP's contrastive softmax over the candidates, or SigLIP's independent sigmoid per pair.
    public enum Objective: String, Sendable, Equatable {
        /// logits = exp(logit_scale)·cos; probabilities are a softmax over the texts (CLIP).
        case softmax
        /// logits = exp(logit_scale)·cos + logit_bias; each pair's probability is sigmoid(logit) (SigLIP).
        case sigmoid
    }

    /// The non-linearity of every transformer MLP: reading gives the text tower's; setting sets both towers'
    /// (each tower keeps its own, as Hugging Face configs allow).
    public var activation: Activation {
        get { text.activation }
        set {
            // NLLB's encoder keeps its ReLU: `quick_gelu` and GELU are CLIP's towers' settings.
            if text.nllb == nil { text.activation = newValue }
            if case .transformer(var v) = vision { v.activation = newValue; vision = .transformer(v) }
        }
    }

    /// ε of every LayerNorm: reading gives the text tower's; setting sets both towers'.
    public var layerNormEps: Float {
        get { text.layerNormEps }
        set {
            text.layerNormEps = newValue
            if case .transformer(var v) = vision { v.layerNormEps = newValue; vision = .transformer(v) }
        }
    }

    /// A Vision Transformer (ViT-B/32, ViT-L/14, …), the modified ResNet (RN50, RN101, …), a ConvNeXt, an EVA, a FastViT or a ViTamin.
    public enum Vision: Sendable, Equatable {
        case transformer(VisionTransformerConfiguration)
        case resnet(ResNetConfiguration)
        /// timm's ConvNeXt (open_clip's `convnext_*` models).
        case convNeXt(ConvNeXtConfiguration)
        /// timm's EVA (open_clip's `EVA01-*` and `EVA02-*` models).
        case eva(EVAConfiguration)
        /// timm's FastViT (open_clip's MobileCLIP models: `fastvit_mci*`).
        case fastViT(FastViTConfiguration)
        /// timm's ViTamin (open_clip's `ViTamin-*` models).
        case viTamin(ViTaminConfiguration)

        /// The input side length the model was built for.
        public var imageResolution: Int {
            switch self {
            case .transformer(let c): return c.patchSize * c.grid
            case .resnet(let c): return c.outputGrid * 32
            case .convNeXt(let c): return c.resolution
            case .eva(let c): return c.resolution
            case .fastViT(let c): return c.resolution
            case .viTamin(let c): return c.resolution
            }
        }

        /// The input sides a convolutional tower takes (ConvNeXt, FastViT: any side that leaves its last stage a pixel,
        /// up to a bound), with a name for messages; nil for towers built for one size.
        package var convolutionalSides: (range: ClosedRange<Int>, kind: String)? {
            switch self {
            case .convNeXt(let c): return (c.minimumResolution...ConvNeXtConfiguration.maximumResolution, "ConvNeXt")
            case .fastViT(let c): return (c.minimumResolution...FastViTConfiguration.maximumResolution, "FastViT")
            case .viTamin(let c) where c.positionGrid == nil: return (c.sides, "ViTamin")
            default: return nil
            }
        }

        /// The tower trained at `side` pixels, for a convolutional tower (unchanged for others, whose side the weights fix).
        package func trained(at side: Int) -> Vision {
            switch self {
            case .convNeXt(var c): c.resolution = side; return .convNeXt(c)
            case .fastViT(var c): c.resolution = side; return .fastViT(c)
            case .viTamin(var c): c.resolution = side; return .viTamin(c)
            default: return self
            }
        }
    }

    /// A modified ResNet tower: a three-convolution stem, four Bottleneck stages and an attention pool.
    public struct ResNetConfiguration: Sendable, Equatable {
        /// Bottleneck blocks in each of the four stages.
        public var layers: [Int]
        /// Channels of the stem's output (64 for RN50); stage i has width·2ⁱ planes.
        public var width: Int
        /// Heads of the attention pool (width·32/64 in the reference).
        public var heads: Int
        /// Side of the final feature map; the nominal input resolution is 32× this.
        public var outputGrid: Int

        /// A tower of the given sizes.
        public init(layers: [Int], width: Int, heads: Int, outputGrid: Int) {
            (self.layers, self.width, self.heads, self.outputGrid) = (layers, width, heads, outputGrid)
        }
    }

    /// The causal text transformer.
    public struct Text: Sendable, Equatable {
        /// Tokens per sequence, start and end included (77).
        public var contextLength: Int
        /// Rows of the token embedding (49,408 for OpenAI's BPE).
        public var vocabSize: Int
        /// Token width (512 for ViT-B models).
        public var width: Int
        /// Attention heads per block.
        public var heads: Int
        /// Residual attention blocks.
        public var layers: Int
        /// The tower's MLP non-linearity.
        public var activation: Activation
        /// ε of the tower's LayerNorms.
        public var layerNormEps: Float
        /// Whether token i attends to tokens 0...i only (CLIP) or to every token (SigLIP).
        public var causal = true
        /// Which token's features become the text's.
        public var pooling: Pooling = .endOfText
        /// Whether `text_projection_bias` [embed] is added after the projection (SigLIP's head is a biased Linear).
        public var projectionBias = false
        /// The tokenizer whose ids index the token embedding.
        public var vocabulary: Vocabulary = .openAIBPE
        /// Set for a Hugging Face (XLM-)RoBERTa tower (`RobertaTextEncoder`) instead of CLIP's text transformer.
        public var roberta: RobertaConfiguration?
        /// Set for NLLB-200's encoder (`NLLBTextEncoder`: transformers' M2M100 encoder) instead of CLIP's text
        /// transformer.
        public var nllb: NLLBConfiguration?

        /// What a Hugging Face RoBERTa tower has beyond the shared sizes.
        public struct RobertaConfiguration: Sendable, Equatable {
            /// Rows of the position table (514: 512 tokens after `padding_idx` 1).
            public var positions: Int
            /// Rows of the token-type table (1; type 0 is used).
            public var tokenTypes: Int
            /// The width between open_clip's two projection Linears (`hf_proj_type: mlp`), or nil for one Linear.
            public var projectionHidden: Int?
            /// BERT's embeddings in place of RoBERTa's (Chinese-CLIP): padding id 0 and positions 0, 1, … for every
            /// token, where RoBERTa's padding id 1 is also its `padding_idx` and only other tokens count positions.
            public var bert = false

            /// A RoBERTa tower's extra sizes.
            public init(positions: Int, tokenTypes: Int = 1, projectionHidden: Int?) {
                (self.positions, self.tokenTypes, self.projectionHidden) = (positions, tokenTypes, projectionHidden)
            }
        }

        /// What NLLB's encoder has beyond the shared sizes (its positions are a sinusoid computed, not stored).
        public struct NLLBConfiguration: Sendable, Equatable {
            /// The width between open_clip's two projection Linears (`hf_proj_type: mlp`), or nil for one Linear.
            public var projectionHidden: Int?

            /// An NLLB tower's extra sizes.
            public init(projectionHidden: Int?) { self.projectionHidden = projectionHidden }
        }

        /// The tokenizers text towers are trained with.
        public enum Vocabulary: String, Sendable, Equatable {
            /// OpenAI's byte-level BPE (49,408 ids), or a Hugging Face folder's own BPE files.
            case openAIBPE
            /// SigLIP's SentencePiece model (`spiece.model`, SigLIP 2's `tokenizer.model`).
            case sentencePiece
            /// XLM-RoBERTa's over a SentencePiece model (`sentencepiece.bpe.model`): MetaCLIP 2's XLM-V vocabulary.
            case xlmRoberta
            /// BERT's WordPiece (`vocab.txt`, lower-casing) in open_clip's CLIPA rows: `bert-base-uncased`.
            case wordPiece
            /// RoBERTa's byte-level BPE (GPT-2's merges, fairseq's ids; `vocab.json` + `merges.txt`) in open_clip's
            /// `roberta-ViT-B-32`: `roberta-base`.
            case gpt2BPE
            /// BERT's WordPiece (`vocab.txt`, lower-casing) in BERT's rows, `[CLS]` … `[SEP]` `[PAD]`, the text not
            /// cleaned first: transformers' `BertTokenizer`, as Chinese-CLIP's processor tokenizes.
            case bertWordPiece
            /// cn_clip's own tokenizer over a BERT WordPiece vocabulary: Google BERT's `FullTokenizer` in BERT's rows,
            /// where `[CLS]` or `[MASK]` written in the text is text, not a token (its checkpoints hold no vocabulary:
            /// Chinese-CLIP's is bundled).
            case cnCLIPWordPiece
            /// NLLB-200's BPE over a SentencePiece model (`sentencepiece.bpe.model`), rows starting with a language
            /// code: `NLLBTokenizer`.
            case nllb
        }

        /// The text tower's pooling.
        public enum Pooling: Sendable, Equatable {
            /// The position of each row's largest id (CLIP's end-of-text token, as `argmax`).
            case endOfText
            /// The last position of the row as given (SigLIP: rows are padded to the context length).
            case last
            /// CoCa's: a learned token (`cls_emb`) appended after the row is read. Its positional embedding is the
            /// one after the context (`positional_embedding` has contextLength + 1 rows), and every query also
            /// skips padding keys by open_clip's CoCa mask: key j > 0 is hidden when the token at j − 1 is 0 (the
            /// mask is shifted by one position, as the published CoCa weights were trained).
            case appendedClassToken
            /// The first position (open_clip's `first`).
            case first
            /// The mean over the positions that are not padding (open_clip's `mean_pooler`, RoBERTa towers).
            case mean
            /// The first position holding this id (open_clip's `eos` pooling: MetaCLIP 2 reads its `</s>`, id 2),
            /// position 0 in a row without it (as torch's argmax over an all-false mask gives).
            case token(Int)
        }

        /// A tower of the given sizes; QuickGELU and ε 1e-5 as in OpenAI's models unless given.
        public init(contextLength: Int, vocabSize: Int, width: Int, heads: Int, layers: Int,
                    activation: Activation = .quickGELU, layerNormEps: Float = 1e-5) {
            (self.contextLength, self.vocabSize, self.width, self.heads, self.layers) =
                (contextLength, vocabSize, width, heads, layers)
            (self.activation, self.layerNormEps) = (activation, layerNormEps)
        }
    }

    /// A configuration from its parts; `validate(origin:)` checks them against each other.
    public init(embedDim: Int, vision: Vision, text: Text) {
        (self.embedDim, self.vision, self.text) = (embedDim, vision, text)
    }

    /// The input side length the image tower was built for.
    public var imageResolution: Int { vision.imageResolution }

    /// The largest extent any dimension of a weight may have when the architecture is inferred (CLIP's largest,
    /// the token embedding, has 49,408 rows): beyond it the arithmetic on sizes could overflow.
    public static let maximumDimension = 1 << 24

    /// The most tokens a sequence may have (text context, or image patches plus the class token).
    public static let maximumTokens = 16_384

    /// Derives the architecture from tensor names and shapes, following the reference `build_model`.
    public static func infer(from source: any WeightSource) throws(ModelLoadError) -> CLIPConfiguration {
        let table = ShapeTable(source)
        let vision: Vision
        if table.has("visual.proj") || table.has("visual.attn_pool.probe") {
            let classToken = table.has("visual.class_embedding")
            let (width, patch): (Int, Int)
            var stem: VisionTransformerConfiguration.ConvStem?
            if let s = try VisionTransformerConfiguration.ConvStem.infer({ (key, rank) throws(ModelLoadError) in try table.shape(key, rank: rank) },
                                                                        has: table.has, blocks: table.blockCount, origin: source.origin) {
                // timm's convolutional stem (MobileCLIP-B), whose positions leave the class token out.
                (width, patch, stem) = (s.channels.last ?? 0, s.kernels.reduce(1, *), s)
            } else {
                let conv = try table.shape("visual.conv1.weight", rank: 4)
                guard conv[1] == 3, conv[2] == conv[3] else {
                    throw .architecture("visual.conv1.weight has shape \(conv), expected [width, 3, patch, patch]", origin: source.origin)
                }
                (width, patch) = (conv[0], conv[3])
            }
            var v = VisionTransformerConfiguration(
                width: width, layers: try table.blockCount("visual.transformer.resblocks"), heads: max(width / 64, 1),
                patchSize: patch, grid: try table.squareSide("visual.positional_embedding", plus: classToken && stem == nil ? 1 : 0))
            v.convStem = stem
            v.classTokenPosition = stem == nil
            v.hasClassToken = classToken
            if table.has("visual.attn_pool.probe") { v.pooling = .attention(heads: v.heads) }
            v.projectionBias = table.has("visual.proj_bias")
            if table.has("visual.transformer.resblocks.0.mlp.c_fc.weight") {
                v.mlpWidth = try table.shape("visual.transformer.resblocks.0.mlp.c_fc.weight", rank: 2)[0]
            }
            // CoCa's pooler has 8 heads unless its config says otherwise (open_clip's `attn_pooler_heads`).
            if table.has("visual.attn_pool.query") { v.pooling = .attentionalPooler(heads: 8) }
            v.patchBias = table.has("visual.conv1.bias")
            v.preNorm = table.has("visual.ln_pre.weight")
            v.projection = table.has("visual.proj")
            vision = .transformer(v)
        } else if table.has("visual.attnpool.positional_embedding") {
            var counts: [Int] = []
            for b in 1...4 { counts.append(try table.blockCount("visual.layer\(b)")) }
            guard counts.allSatisfy({ $0 > 0 }) else {
                throw .architecture("ResNet stages have \(counts) blocks; every stage needs at least one", origin: source.origin)
            }
            let width = try table.shape("visual.layer1.0.conv1.weight", rank: 4)[0]
            vision = .resnet(.init(layers: counts, width: width, heads: max(width * 32 / 64, 1),
                                   outputGrid: try table.squareSide("visual.attnpool.positional_embedding")))
        } else if let convNeXt = try ConvNeXtConfiguration.infer({ (key, rank) throws(ModelLoadError) in try table.shape(key, rank: rank) },
                                                                 has: table.has, blocks: table.blockCount, origin: source.origin) {
            vision = .convNeXt(convNeXt)
        } else if let eva = try EVAConfiguration.infer({ (key, rank) throws(ModelLoadError) in try table.shape(key, rank: rank) },
                                                       has: table.has, blocks: table.blockCount, origin: source.origin) {
            vision = .eva(eva)
        } else if let fastViT = try FastViTConfiguration.infer({ (key, rank) throws(ModelLoadError) in try table.shape(key, rank: rank) },
                                                               has: table.has, blocks: table.blockCount, origin: source.origin) {
            vision = .fastViT(fastViT)
        } else if let viTamin = try ViTaminConfiguration.infer({ (key, rank) throws(ModelLoadError) in try table.shape(key, rank: rank) },
                                                               has: table.has, blocks: table.blockCount, origin: source.origin) {
            vision = .viTamin(viTamin)
        } else {
            if table.shapes.keys.contains(where: { $0.hasSuffix(".reparam_conv.weight") }) {
                throw .architecture("the weights are a MobileCLIP tower already reparameterised for inference (…reparam_conv.weight); swift-clip folds the training-time branches itself and reads open_clip's checkpoints as the Hub has them (conv_kxk, conv_scale, identity)", origin: source.origin)
            }
            throw .architecture("neither 'visual.proj' (Vision Transformer), 'visual.attnpool.positional_embedding' (ResNet), 'visual.trunk.stem.0.weight' (ConvNeXt), 'visual.trunk.stem.0.conv_kxk.0.conv.weight' (FastViT), 'visual.trunk.patch_embed.backbone.stem.conv1.weight' (ViTamin) nor 'visual.trunk.blocks.0.attn.q_bias' or '.q_proj.weight' (EVA) is present; is this a CLIP checkpoint?", origin: source.origin)
        }
        if table.has("text.transformer.embeddings.word_embeddings.weight") {
            return try inferRoberta(table, vision: vision, origin: source.origin)
        }
        if table.has("text.transformer.embed_tokens.weight") {
            return try inferNLLB(table, vision: vision, origin: source.origin)
        }
        let textWidth = try table.shape("ln_final.weight", rank: 1)[0]
        // CoCa's appended class token has the positional embedding's last row.
        let appendedClassToken = table.has("cls_emb")
        let positions = try table.shape("positional_embedding", rank: 2)[0]
        guard !appendedClassToken || positions > 1 else {
            throw .architecture("positional_embedding has 1 row; with cls_emb it needs the context plus one", origin: source.origin)
        }
        var text = Text(
            contextLength: appendedClassToken ? positions - 1 : positions,
            vocabSize: try table.shape("token_embedding.weight", rank: 2)[0],
            width: textWidth,
            heads: max(textWidth / 64, 1),
            layers: try table.blockCount("transformer.resblocks"))
        if appendedClassToken { text.pooling = .appendedClassToken }
        var c = CLIPConfiguration(embedDim: try table.shape("text_projection", rank: 2)[1], vision: vision, text: text)
        // A learned logit bias is SigLIP's: every such model reads the last of its padded positions without a causal
        // mask (configs that say otherwise are applied after inference).
        if table.has("logit_bias") {
            c.objective = .sigmoid
            c.text.causal = false
            c.text.pooling = .last
            c.text.vocabulary = .sentencePiece
        }
        c.text.projectionBias = table.has("text_projection_bias")
        return c
    }
}

extension CLIPConfiguration {
    /// An open_clip checkpoint whose text tower is a Hugging Face (XLM-)RoBERTa (`text.transformer.*`,
    /// `text.proj.*`): sizes from the tensors; heads 64 wide (xlm-roberta-base's 12, large's 16), GELU, ε 1e-5,
    /// rows of 77 (open_clip's tokenizer context) read as XLM-R ids and pooled by their mean.
    fileprivate static func inferRoberta(_ table: ShapeTable, vision: Vision, origin: String) throws(ModelLoadError) -> CLIPConfiguration {
        let p = "text.transformer"
        let words = try table.shape("\(p).embeddings.word_embeddings.weight", rank: 2)
        let positions = try table.shape("\(p).embeddings.position_embeddings.weight", rank: 2)[0]
        let tokenTypes = try table.shape("\(p).embeddings.token_type_embeddings.weight", rank: 2)[0]
        let width = words[1]
        let (embedDim, hidden) = try openCLIPTextProjection(table)
        var text = Text(contextLength: 77, vocabSize: words[0], width: width, heads: max(width / 64, 1),
                        layers: try table.blockCount("\(p).encoder.layer"), activation: .gelu)
        text.causal = false
        text.pooling = .mean
        text.vocabulary = .xlmRoberta
        text.roberta = .init(positions: positions, tokenTypes: tokenTypes, projectionHidden: hidden)
        return CLIPConfiguration(embedDim: embedDim, vision: vision, text: text)
    }
}

extension CLIPConfiguration {
    /// An open_clip checkpoint whose text tower is NLLB-200's encoder (`text.transformer.embed_tokens`,
    /// `.layers.<i>.self_attn.*`, `.layer_norm`): sizes from the tensors; heads 64 wide (both NLLB models' 16),
    /// ReLU, ε 1e-5, rows of 77 (open_clip's tokenizer context) read as NLLB ids, features at the first position (the
    /// language code, open_clip's `cls_pooler`); sigmoid logits when the checkpoint has `logit_bias` (NLLB-SigLIP).
    fileprivate static func inferNLLB(_ table: ShapeTable, vision: Vision, origin: String) throws(ModelLoadError) -> CLIPConfiguration {
        let p = "text.transformer"
        let words = try table.shape("\(p).embed_tokens.weight", rank: 2)
        let width = words[1]
        guard try table.shape("\(p).layer_norm.weight", rank: 1)[0] == width else {
            throw .architecture("\(p).layer_norm.weight is not \(width) wide, as \(p).embed_tokens.weight is", origin: origin)
        }
        let (embedDim, hidden) = try openCLIPTextProjection(table)
        var text = Text(contextLength: 77, vocabSize: words[0], width: width, heads: max(width / 64, 1),
                        layers: try table.blockCount("\(p).layers"), activation: .relu)
        text.causal = false
        text.pooling = .first
        text.vocabulary = .nllb
        text.nllb = .init(projectionHidden: hidden)
        var c = CLIPConfiguration(embedDim: embedDim, vision: vision, text: text)
        if table.has("logit_bias") { c.objective = .sigmoid }
        return c
    }
}

/// The output width of open_clip's projection after a Hugging Face text tower, and the width between its two Linears
/// (`hf_proj_type: mlp`: `text.proj.0`, `text.proj.2`), nil for one Linear (`linear`: `text.proj`).
private func openCLIPTextProjection(_ table: ShapeTable) throws(ModelLoadError) -> (embedDim: Int, hidden: Int?) {
    guard table.has("text.proj.0.weight") else { return (try table.shape("text.proj.weight", rank: 2)[0], nil) }
    return (try table.shape("text.proj.2.weight", rank: 2)[0], try table.shape("text.proj.0.weight", rank: 2)[0])
}

/// The tensor shapes of a checkpoint, asked the questions architecture inference needs, each answered with an
/// error naming the tensor when the file does not fit a CLIP model.
private struct ShapeTable {
    let origin: String
    var shapes: [String: [Int]] = [:]

    init(_ source: any WeightSource) {
        origin = source.origin
        for t in source.tensorInfos { shapes[t.name] = t.shape }
    }

    func has(_ key: String) -> Bool { shapes[key] != nil }

    /// The shape of `key`, which must have `rank` positive dimensions, none above `maximumDimension`.
    func shape(_ key: String, rank: Int) throws(ModelLoadError) -> [Int] {
        guard let s = shapes[key] else { throw .missingTensor(key, origin: origin) }
        guard s.count == rank, s.allSatisfy({ $0 > 0 }) else {
            throw .architecture("tensor '\(key)' has shape \(s), expected \(rank) positive dimensions", origin: origin)
        }
        guard s.allSatisfy({ $0 <= CLIPConfiguration.maximumDimension }) else {
            throw .architecture("tensor '\(key)' has shape \(s); no dimension of a CLIP model exceeds \(CLIPConfiguration.maximumDimension)", origin: origin)
        }
        return s
    }

    /// The side of the square grid a positional embedding of `side² + plus` rows (a class token first when `plus` is
    /// 1) covers.
    func squareSide(_ key: String, plus: Int = 1) throws(ModelLoadError) -> Int {
        let rows = try shape(key, rank: 2)[0]
        guard rows <= CLIPConfiguration.maximumTokens else {
            throw .architecture("tensor '\(key)' has \(rows) rows; at most \(CLIPConfiguration.maximumTokens) tokens are supported", origin: origin)
        }
        let side = Int((Double(rows - plus)).squareRoot().rounded())
        guard side > 0, side * side + plus == rows else {
            throw .architecture("tensor '\(key)' has \(rows) rows, which is not a square grid\(plus == 1 ? " plus one" : "")", origin: origin)
        }
        return side
    }

    /// How many blocks `<prefix>.<i>.…` there are; the indices must be exactly `0..<n`.
    func blockCount(_ prefix: String) throws(ModelLoadError) -> Int {
        var indices = Set<String>()
        for k in shapes.keys where k.hasPrefix(prefix + ".") {
            let rest = k.dropFirst(prefix.count + 1)
            if let idx = rest.split(separator: ".", maxSplits: 1).first { indices.insert(String(idx)) }
        }
        let n = indices.count
        guard Set((0..<n).map(String.init)) == indices else {
            throw .architecture("\(prefix) blocks are not numbered 0..<\(n): \(indices.sorted())", origin: origin)
        }
        return n
    }
}

extension CLIPConfiguration {
    /// Every stored field, nested ones included (`description` names only the architecture's shape): for keys of
    /// what the model computes, which activation, LayerNorm ε and every other setting change.
    package var fingerprintText: String {
        var text = ""
        dump(self, to: &text)
        return text
    }
}
