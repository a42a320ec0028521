import CLIPLayers
import CLIPWeights

extension CLIPConfiguration {
    /// A ViTamin image tower as timm builds it for open_clip's `ViTamin-*` models (`vitamin_small_224` …
    /// `vitamin_xlarge_384`): a convolutional stem (3×3 stride 2, LayerNorm2d + GELU, 3×3), two stages of MbConv blocks
    /// (pre-norm inverted bottlenecks, each stage entered at stride 2), a LayerNorm2d and a 3×3 stride-2 convolution that
    /// makes one token per 16×16 pixels, then ViT blocks whose MLP is GeGLU with its own LayerNorm, learned positions
    /// (none for XL), the mean of the tokens, a LayerNorm and open_clip's linear projection. Every LayerNorm has ε
    /// 1e-6 and every activation is exact GELU.
    public struct ViTaminConfiguration: Sendable, Equatable {
        /// Channels of the stem.
        public var stemWidth: Int
        /// Channels of each MbConv stage (S: [64, 128]).
        public var stageWidths: [Int]
        /// MbConv blocks per stage (all of timm's: [2, 4]).
        public var stageDepths: [Int]
        /// Each stage's inverted-bottleneck width (timm's make_divisible(4 · width)).
        public var expandedWidths: [Int]
        /// Token width of the transformer (S: 384).
        public var width: Int
        /// Transformer blocks.
        public var layers: Int
        /// Attention heads per block (from the timm model's name; 0 until a config names it).
        public var heads: Int
        /// Hidden width of the GeGLU MLPs (timm's 2 · width).
        public var mlpHidden: Int
        /// Tokens per side of the learned positions added to the tokens (`pos_embed`); nil without (XL).
        public var positionGrid: Int?
        /// The input side: with positions, 16 × their grid; without, any side (this is the one a config trained it at).
        public var resolution: Int
        /// Whether open_clip's projection has a bias (`timm_proj_bias`).
        public var projectionBias: Bool
        /// The timm model whose settings these are; nil when no config named one.
        public var timmModel: String?

        /// ε of every LayerNorm (timm's LayerNorm2d and ViT LayerNorms as ViTamin builds them).
        public static let layerNormEps: Float = 1e-6
        /// Pixels per token side: four stride-2 steps (stem, two stages, the final convolution).
        public static let reduction = 16
        /// The largest input side accepted without positions, in the config and in `encodeImage` (open_clip's XL tags
        /// use 256 to 384): at 1,024 XL's stem output holds 512²·192 floats (201 MB) per image and 4,096 tokens attend.
        public static let maximumResolution = 1_024

        /// What timm builds for each model open_clip names beyond what the weights show: the heads, and whether it has
        /// learned positions (checked against the weights); the GeGLU ratio 2 is the same for all and checked too.
        package static let timmModels: [String: (heads: Int, positions: Bool)] = [
            "vitamin_small_224": (6, true), "vitamin_base_224": (12, true),
            "vitamin_large_224": (16, true), "vitamin_large_256": (16, true), "vitamin_large_336": (16, true),
            "vitamin_large_384": (16, true),
            "vitamin_large2_224": (16, true), "vitamin_large2_256": (16, true), "vitamin_large2_336": (16, true),
            "vitamin_large2_384": (16, true),
            "vitamin_xlarge_256": (16, false), "vitamin_xlarge_336": (16, false), "vitamin_xlarge_384": (16, false),
        ]

        /// A tower of the given sizes.
        public init(stemWidth: Int, stageWidths: [Int], stageDepths: [Int], expandedWidths: [Int], width: Int, layers: Int,
                    heads: Int, mlpHidden: Int, positionGrid: Int?, resolution: Int, projectionBias: Bool = false,
                    timmModel: String? = nil) {
            (self.stemWidth, self.stageWidths, self.stageDepths, self.expandedWidths) = (stemWidth, stageWidths, stageDepths, expandedWidths)
            (self.width, self.layers, self.heads, self.mlpHidden) = (width, layers, heads, mlpHidden)
            (self.positionGrid, self.resolution) = (positionGrid, resolution)
            (self.projectionBias, self.timmModel) = (projectionBias, timmModel)
        }

        /// Tokens per side for an input side: each stride-2 step (padding 1) rounds up.
        public static func grid(forSide side: Int) -> Int { (side + reduction - 1) / reduction }

        /// The input sides the tower takes: with positions, those that make their grid (16 × grid − 15 ... 16 × grid,
        /// as timm's stride-2 steps round up), or, without, any side up to `maximumResolution`.
        public var sides: ClosedRange<Int> {
            if let g = positionGrid { return max(g * Self.reduction - Self.reduction + 1, 1)...g * Self.reduction }
            return Self.reduction...Self.maximumResolution
        }

        /// The most floats one image's largest activation may hold (1 GiB): the stem's output, and each MbConv stage's
        /// expansion at its input side (real XL at 1,024 pixels: 512² · 768, 201M).
        public static let maximumActivation = 1 << 28

        /// Throws unless the sizes describe a tower timm builds and a config has named its timm model.
        func validate(origin: String) throws(ModelLoadError) {
            guard let timmModel, let model = Self.timmModels[timmModel] else {
                throw .architecture("the weights have a ViTamin image tower (visual.trunk.patch_embed.backbone.stem.*), whose heads are not in the weights; load it with its open_clip config (vision_cfg.timm_model_name vitamin_*)", origin: origin)
            }
            guard stageWidths.count == 2, stageDepths.count == 2, expandedWidths.count == 2 else {
                throw .architecture("a ViTamin tower has two MbConv stages, got widths \(stageWidths) and depths \(stageDepths)", origin: origin)
            }
            // Bounded so that a 1,024-pixel image's activations stay bounded (XL: stem 192, stages 192 and 384 expanded 4×,
            // width 1,152).
            var sizes = [("stemWidth", stemWidth, 1_024), ("width", width, 4_096), ("layers", layers, 256), ("heads", heads, 256),
                         ("mlpHidden", mlpHidden, 32_768), ("resolution", resolution, Self.maximumResolution)]
            for i in 0..<2 {
                sizes += [("stageWidths[\(i)]", stageWidths[i], 2_048), ("stageDepths[\(i)]", stageDepths[i], 64),
                          ("expandedWidths[\(i)]", expandedWidths[i], 8_192)]
            }
            if let g = positionGrid { sizes.append(("positionGrid", g, 64)) }
            try CLIPConfiguration.checkBounded(sizes, tower: "a ViTamin", origin: origin)
            guard width % heads == 0 else {
                throw .architecture("\(timmModel)'s \(heads) heads do not divide the ViTamin tower's width \(width)", origin: origin)
            }
            guard (positionGrid != nil) == model.positions else {
                throw .architecture("\(timmModel) has \(model.positions ? "learned positions" : "no positions"), but the weights have \(positionGrid != nil ? "visual.trunk.pos_embed" : "none"): they are another model's", origin: origin)
            }
            guard sides.contains(resolution) else {
                throw .architecture("ViTamin input side \(resolution) is not one the tower takes (\(sides.lowerBound)...\(sides.upperBound))", origin: origin)
            }
            // Widths are not tied to the timm name (scaled structures load too), so their product with the largest side
            // is bounded here: a small file could otherwise ask for gigabytes per image.
            let side = sides.upperBound, stem = (side + 1) / 2, stage1 = (stem + 1) / 2
            let largest = max(stem * stem * max(stemWidth, expandedWidths[0]), stage1 * stage1 * expandedWidths[1])
            guard largest <= Self.maximumActivation else {
                throw .architecture("a ViTamin tower of stem \(stemWidth) and expansions \(expandedWidths) at \(side) pixels holds \(largest) floats in one activation per image; at most \(Self.maximumActivation) are supported", origin: origin)
            }
        }

        /// The tower as the checkpoint's `visual.trunk.*` and `visual.head.*` tensors describe it (heads 0 and no timm
        /// model until a config names one), or nil when the checkpoint has no ViTamin tower.
        static func infer(_ shape: (String, Int) throws(ModelLoadError) -> [Int], has: (String) -> Bool,
                          blocks: (String) throws(ModelLoadError) -> Int, origin: String) throws(ModelLoadError) -> ViTaminConfiguration? {
            let t = "visual.trunk", b = "visual.trunk.patch_embed.backbone"
            guard has("\(b).stem.conv1.weight") else { return nil }
            let stem = try shape("\(b).stem.conv1.weight", 4)
            guard stem[1] == 3, stem[2] == 3, stem[3] == 3 else {
                throw .architecture("\(b).stem.conv1.weight has shape \(stem), expected [width, 3, 3, 3]", origin: origin)
            }
            let stages = try blocks("\(b).stages")
            guard stages == 2 else {
                throw .architecture("\(b).stages has \(stages) stages; a ViTamin tower has 2", origin: origin)
            }
            var (widths, depths, expanded) = ([Int](), [Int](), [Int]())
            for i in 0..<2 {
                let s = "\(b).stages.\(i)"
                depths.append(try blocks(s))
                guard depths[i] > 0 else { throw .missingTensor("\(s).0.conv1_1x1.weight", origin: origin) }
                let expand = try shape("\(s).0.conv1_1x1.weight", 4)
                let project = try shape("\(s).0.conv3_1x1.weight", 4)
                widths.append(project[0])
                expanded.append(expand[0])
            }
            let proj = try shape("\(b).pool.proj.weight", 4)
            let width = proj[0]
            let mlp = try shape("\(t).blocks.0.mlp.w0.weight", 2)
            var grid: Int?
            if has("\(t).pos_embed") {
                let positions = try shape("\(t).pos_embed", 3)
                let side = Int(Double(positions[1]).squareRoot().rounded())
                guard positions[0] == 1, positions[2] == width, side > 0, side * side == positions[1] else {
                    throw .architecture("\(t).pos_embed has shape \(positions), expected [1, grid², \(width)] (a square grid, no class token)", origin: origin)
                }
                grid = side
            }
            return ViTaminConfiguration(
                stemWidth: stem[0], stageWidths: widths, stageDepths: depths, expandedWidths: expanded, width: width,
                layers: try blocks("\(t).blocks"), heads: 0, mlpHidden: mlp[0], positionGrid: grid,
                resolution: (grid ?? 14) * reduction, projectionBias: has("visual.head.proj.bias"))
        }
    }
}
