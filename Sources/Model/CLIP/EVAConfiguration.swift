import CLIPLayers
import CLIPWeights

extension CLIPConfiguration {
    /// An EVA image tower as timm's `Eva` builds it for open_clip's EVA01 and EVA02 models: a ViT with a patch bias, a
    /// class token and absolute positions, blocks with q and v biases (no k bias), and the class token after a final
    /// LayerNorm through timm's head (a Linear with bias). EVA02 B and L add a rotary position embedding, a SwiGLU MLP
    /// and sub-LNs inside the attention and the MLP; EVA02-E puts each LayerNorm after its branch (post-norm).
    ///
    /// Heads, the rotary embedding and the norm order are not in the weights: they come from the timm model the open_clip
    /// config names (`vision_cfg.timm_model_name`), and a tower without one is refused.
    public struct EVAConfiguration: Sendable, Equatable {
        /// Token width (EVA02-B: 768).
        public var width: Int
        /// Blocks.
        public var layers: Int
        /// Attention heads per block (timm's `num_heads`; 0 until a config names the timm model).
        public var heads: Int
        /// Side of the square patches, in pixels.
        public var patchSize: Int
        /// Patches per side; the input side is `patchSize × grid`.
        public var grid: Int
        /// The MLP of every block.
        public var mlp: MLP
        /// Whether the attention normalises the heads' context before its output projection (`scale_attn_inner`).
        public var attentionNorm: Bool
        /// EVA02's rotary embedding, positions scaled to this many patches per side (`ref_feat_shape`); nil for none.
        public var rotaryReferenceGrid: Int?
        /// EVA02-E's block: x + norm1(attn(x)), then x + norm2(mlp(x)); otherwise pre-norm.
        public var postNorm: Bool
        /// Whether timm's head (a Linear with bias, `visual.trunk.head`) projects the class token; without it the
        /// tower's width is the embedding.
        public var head: Bool
        /// ε of every LayerNorm (timm's 1e-6).
        public var layerNormEps: Float
        /// The timm model whose settings these are; nil when no config named one.
        public var timmModel: String?

        /// The MLP kinds timm's EVA blocks use here.
        public enum MLP: Sendable, Equatable {
            /// fc1 → GELU → fc2 (EVA01, EVA02-E).
            case gelu(hidden: Int)
            /// SwiGLU: fc2(silu(fc1_g(x)) ⊙ fc1_x(x)), with a LayerNorm over the hidden width when `normed` (EVA02 B, L).
            case swiGLU(hidden: Int, normed: Bool)

            /// The hidden width.
            public var hidden: Int {
                switch self {
                case .gelu(let h), .swiGLU(let h, _): return h
                }
            }
        }

        /// A tower of the given sizes; `heads` and the block settings must then be the timm model's.
        public init(width: Int, layers: Int, heads: Int, patchSize: Int, grid: Int, mlp: MLP, attentionNorm: Bool = false,
                    rotaryReferenceGrid: Int? = nil, postNorm: Bool = false, head: Bool = true, layerNormEps: Float = 1e-6,
                    timmModel: String? = nil) {
            (self.width, self.layers, self.heads, self.patchSize, self.grid, self.mlp) = (width, layers, heads, patchSize, grid, mlp)
            (self.attentionNorm, self.rotaryReferenceGrid, self.postNorm, self.head) = (attentionNorm, rotaryReferenceGrid, postNorm, head)
            (self.layerNormEps, self.timmModel) = (layerNormEps, timmModel)
        }

        /// The input side.
        public var resolution: Int { patchSize * grid }
        /// Tokens per image: the patches and the class token.
        public var tokens: Int { grid * grid + 1 }

        /// Throws unless the sizes describe a tower timm builds and a config has named its timm model.
        func validate(origin: String) throws(ModelLoadError) {
            guard let timmModel else {
                throw .architecture("the weights have an EVA image tower (visual.trunk.blocks.*.attn with q/v biases), whose heads, rotary embedding and norm order are not in the weights; load it with its open_clip config (vision_cfg.timm_model_name eva_giant_* or eva02_*)", origin: origin)
            }
            let sizes = [("width", width, 16_384), ("layers", layers, 1_024), ("heads", heads, 1_024), ("patchSize", patchSize, 64),
                         ("grid", grid, 128), ("MLP hidden width", mlp.hidden, 65_536)]
                + (rotaryReferenceGrid.map { [("rotary reference grid", $0, 1_024)] } ?? [])
            try CLIPConfiguration.checkBounded(sizes, tower: "an EVA", origin: origin)
            guard width % heads == 0 else {
                throw .architecture("\(timmModel)'s \(heads) heads do not divide the EVA tower's width \(width)", origin: origin)
            }
            if rotaryReferenceGrid != nil, (width / heads) % 4 != 0 {
                throw .architecture("\(timmModel)'s rotary embedding needs heads a multiple of 4 wide; \(width) / \(heads) heads is \(width / heads)", origin: origin)
            }
            guard layerNormEps > 0, layerNormEps.isFinite else {
                throw .architecture("configuration vision.layerNormEps is \(layerNormEps); it must be positive", origin: origin)
            }
        }

        /// The tower as the checkpoint's `visual.trunk.*` tensors describe it (heads 0 and no timm model until a config
        /// names one), or nil when the checkpoint has no EVA tower.
        static func infer(_ shape: (String, Int) throws(ModelLoadError) -> [Int], has: (String) -> Bool,
                          blocks: (String) throws(ModelLoadError) -> Int, origin: String) throws(ModelLoadError) -> EVAConfiguration? {
            let t = "visual.trunk", b = "visual.trunk.blocks.0"
            let fused = has("\(b).attn.q_bias")
            guard fused || has("\(b).attn.q_proj.weight") else { return nil }
            let patch = try shape("\(t).patch_embed.proj.weight", 4)
            guard patch[1] == 3, patch[2] == patch[3] else {
                throw .architecture("\(t).patch_embed.proj.weight has shape \(patch), expected [width, 3, patch, patch]", origin: origin)
            }
            let width = patch[0]
            let positions = try shape("\(t).pos_embed", 3)
            let grid = Int(Double(max(positions[1] - 1, 0)).squareRoot().rounded())
            guard positions[0] == 1, positions[2] == width, grid > 0, grid * grid + 1 == positions[1] else {
                throw .architecture("\(t).pos_embed has shape \(positions), expected [1, grid² + 1, \(width)] (a square grid and the class token)", origin: origin)
            }
            let mlp: MLP
            if has("\(b).mlp.fc1_g.weight") {
                mlp = .swiGLU(hidden: try shape("\(b).mlp.fc1_g.weight", 2)[0], normed: has("\(b).mlp.norm.weight"))
            } else {
                mlp = .gelu(hidden: try shape("\(b).mlp.fc1.weight", 2)[0])
            }
            return EVAConfiguration(width: width, layers: try blocks("\(t).blocks"), heads: 0, patchSize: patch[3], grid: grid,
                                    mlp: mlp, attentionNorm: has("\(b).attn.norm.weight"), head: has("\(t).head.weight"))
        }
    }
}
