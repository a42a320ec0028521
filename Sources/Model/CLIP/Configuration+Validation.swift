import CLIPLayers
import CLIPWeights

extension CLIPConfiguration {
    /// Throws unless every size is positive and the ResNet has four stages.
    public func validate(origin: String) throws(ModelLoadError) {
        var sizes: [(String, Int)] = [("embedDim", embedDim), ("text.contextLength", text.contextLength),
                                      ("text.vocabSize", text.vocabSize), ("text.width", text.width),
                                      ("text.heads", text.heads), ("text.layers", text.layers)]
        switch vision {
        case .transformer(let v):
            sizes += [("vision.width", v.width), ("vision.layers", v.layers), ("vision.heads", v.heads),
                      ("vision.patchSize", v.patchSize), ("vision.grid", v.grid)]
        case .resnet(let r):
            guard r.layers.count == 4 else {
                throw .architecture("a ResNet needs 4 stages, got \(r.layers)", origin: origin)
            }
            sizes += [("vision.width", r.width), ("vision.heads", r.heads), ("vision.outputGrid", r.outputGrid)]
            sizes += r.layers.enumerated().map { ("vision.layers[\($0.offset)]", $0.element) }
        case .convNeXt(let c):
            try c.validate(origin: origin)
        case .eva(let c):
            try c.validate(origin: origin)
        case .fastViT(let c):
            try c.validate(origin: origin)
        case .viTamin(let c):
            try c.validate(origin: origin)
        }
        if case .transformer(let v) = vision {
            switch v.pooling {
            case .classToken, .average, .normalizedAverage: break
            case .attention(let heads):
                sizes.append(("vision.pooling heads", heads))
            case .attentionalPooler(let heads):
                sizes.append(("vision.pooling heads", heads))
                if heads > 0 && embedDim % heads != 0 {
                    throw .architecture("the attentional pooler's \(heads) heads do not divide embedDim \(embedDim)", origin: origin)
                }
            }
            if !v.projection && v.width != embedDim {
                throw .architecture("the image tower has no projection, so its width \(v.width) must equal embedDim \(embedDim)", origin: origin)
            }
            // PE-Core's signature beside SigLIP's (which has neither): ln_pre, a projection bias, no patch bias, or a class
            // token with attention pooling.
            if case .attention = v.pooling, v.timmModel == nil, v.hasClassToken || v.preNorm || v.projectionBias || !v.patchBias {
                throw .architecture("the weights have PE-Core's image tower (attention pooling with norm_pre, a class token or timm's head), whose heads and rotary embedding are not in the weights; load it with its open_clip config (vision_cfg.timm_model_name vit_pe_core_*)", origin: origin)
            }
            if v.convStem != nil || !v.classTokenPosition, v.timmModel != "vit_base_mci_224" {
                throw .architecture("the weights have a convolutional stem (visual.trunk.patch_embed.backbone.*) and positions without the class token, timm's vit_base_mci_224 (MobileCLIP-B); load it with its open_clip config", origin: origin)
            }
            if let stem = v.convStem {
                guard !stem.kernels.isEmpty, stem.kernels.count == stem.channels.count, stem.channels.last == v.width,
                      stem.kernels.allSatisfy({ (1...16).contains($0) }), stem.channels.allSatisfy({ (1...16_384).contains($0) }),
                      stem.kernels.count <= 8, stem.kernels.reduce(1, *) == v.patchSize else {
                    throw .architecture("the convolutional stem's kernels \(stem.kernels) and channels \(stem.channels) do not make \(v.patchSize)-pixel patches \(v.width) wide", origin: origin)
                }
            }
            if v.pooling == .classToken, v.projectionBias, v.timmModel == nil {
                throw .architecture("the weights have a timm CLIP ViT image tower (a class token and timm's head with bias, as MobileCLIP2-L-14 and MobileCLIP-B), whose heads and activation are not in the weights; load it with its open_clip config (vision_cfg.timm_model_name vit_large_patch14_clip_224 or vit_base_mci_224)", origin: origin)
            }
            if v.variableGrid {
                guard case .attention = v.pooling, !v.hasClassToken, v.convStem == nil, v.rotary == nil, !v.projection else {
                    throw .architecture("a NaFlex image tower (positions resized to each image's grid) is SigLIP's: no class token, a patch Linear, no rotary embedding or projection, attention pooling", origin: origin)
                }
            }
            if let rotary = v.rotary {
                let headDim = v.heads > 0 ? v.width / v.heads : 0
                guard headDim % 4 == 0, (1...1_024).contains(rotary.referenceGrid), rotary.offset.isFinite, abs(rotary.offset) <= 1_024 else {
                    throw .architecture("the rotary embedding needs heads a multiple of 4 wide (\(headDim)), a reference grid within 1...1024 (\(rotary.referenceGrid)) and a finite offset (\(rotary.offset))", origin: origin)
                }
            }
        }
        if let roberta = text.roberta {
            sizes += [("text.roberta.positions", roberta.positions), ("text.roberta.tokenTypes", roberta.tokenTypes)]
            // RoBERTa's positions start after padding_idx 1: a row of contextLength tokens reads position
            // contextLength + 1.
            if roberta.bert {
                guard text.contextLength <= roberta.positions else {
                    throw .architecture("the text context of \(text.contextLength) tokens needs as many positions; text.transformer.embeddings.position_embeddings has \(roberta.positions)", origin: origin)
                }
                guard text.pooling == .first else {
                    throw .architecture("a BERT text tower here reads its features at the first position ([CLS]), not \(text.pooling)", origin: origin)
                }
            } else if text.pooling != .mean {
                throw .architecture("a RoBERTa text tower here reads the mean over its tokens (open_clip's mean_pooler), not \(text.pooling)", origin: origin)
            } else if text.contextLength + 1 >= roberta.positions {
                throw .architecture("the text context of \(text.contextLength) tokens needs \(text.contextLength + 2) positions; text.transformer.embeddings.position_embeddings has \(roberta.positions)", origin: origin)
            }
        }
        if text.nllb != nil {
            guard text.roberta == nil else {
                throw .architecture("the text tower cannot be both a RoBERTa and NLLB's encoder", origin: origin)
            }
            guard text.pooling == .first || text.pooling == .mean else {
                throw .architecture("an NLLB text tower here reads its features at the first position (open_clip's cls_pooler) or their mean (mean_pooler), not \(text.pooling)", origin: origin)
            }
            guard !text.causal, text.activation == .relu else {
                throw .architecture("NLLB's encoder attends both ways and uses ReLU; the configuration says \(text.causal ? "causal" : "bidirectional"), \(text.activation.rawValue)", origin: origin)
            }
        }
        for (name, value) in sizes where value <= 0 {
            throw .architecture("configuration \(name) is \(value); it must be positive", origin: origin)
        }
        var epsilons = [("text.layerNormEps", text.layerNormEps)]
        if case .transformer(let v) = vision { epsilons.append(("vision.layerNormEps", v.layerNormEps)) }
        for (name, eps) in epsilons where !(eps > 0 && eps.isFinite) {
            throw .architecture("configuration \(name) is \(eps); it must be positive", origin: origin)
        }
        // Attention keeps a tokens × tokens score matrix per head in flight: beyond this a checkpoint's positional
        // embedding would ask for gigabytes per head (ViT-L/14@336px has 577 tokens, the text tower 77).
        func gridTokens(_ grid: Int) -> Int {
            let (square, overflow) = grid.multipliedReportingOverflow(by: grid)
            return overflow || square >= Int.max ? Int.max : square + 1
        }
        var tokens = [("text.contextLength", text.contextLength)]
        if case .transformer(let v) = vision {
            tokens.append((v.hasClassToken ? "vision tokens (grid² + 1)" : "vision tokens (grid²)", v.tokens))
        }
        if case .resnet(let r) = vision { tokens.append(("attention-pool tokens (grid² + 1)", gridTokens(r.outputGrid))) }
        if case .eva(let e) = vision { tokens.append(("vision tokens (grid² + 1)", gridTokens(e.grid))) }
        if case .viTamin(let v) = vision {
            let grid = ViTaminConfiguration.grid(forSide: v.resolution)
            tokens.append(("vision tokens (grid²)", gridTokens(grid) - 1))
        }
        for (name, value) in tokens where value > Self.maximumTokens {
            throw .architecture("configuration \(name) is \(value); at most \(Self.maximumTokens) tokens are supported",
                                origin: origin)
        }
        guard imageResolution <= Self.maximumImageResolution else {
            throw .architecture("configuration asks for \(imageResolution)×\(imageResolution) images; at most \(Self.maximumImageResolution) is supported", origin: origin)
        }
    }

    /// Throws unless each of a tower's `sizes` (name, value, upper bound) is positive and within its bound, naming
    /// the first that is not and the `tower` ("an EVA").
    static func checkBounded(_ sizes: [(String, Int, Int)], tower: String, origin: String) throws(ModelLoadError) {
        for (name, value, limit) in sizes {
            guard value > 0 else {
                throw .architecture("configuration vision.\(name) is \(value); it must be positive", origin: origin)
            }
            guard value <= limit else {
                throw .architecture("configuration vision.\(name) is \(value); \(tower) tower here takes at most \(limit)", origin: origin)
            }
        }
    }
}
