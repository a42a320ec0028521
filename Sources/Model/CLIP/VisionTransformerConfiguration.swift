import CLIPLayers

extension CLIPConfiguration {
    /// A Vision Transformer tower: `width`-wide tokens, one per `patchSize × patchSize` patch plus a class token.
    public struct VisionTransformerConfiguration: Sendable, Equatable {
        /// Token width (768 for ViT-B).
        public var width: Int
        /// Residual attention blocks.
        public var layers: Int
        /// Attention heads per block (width/64 in the reference).
        public var heads: Int
        /// Side of the square patches the stem convolution cuts, in pixels.
        public var patchSize: Int
        /// Patches per side; the input resolution is `patchSize × grid`.
        public var grid: Int
        /// The tower's MLP non-linearity.
        public var activation: Activation
        /// ε of the tower's LayerNorms.
        public var layerNormEps: Float
        /// How the tokens become one vector: CLIP's class token, or attention pooling over all tokens (SigLIP's,
        /// PE-Core's).
        public var pooling: Pooling = .classToken
        /// Whether a class token precedes the patches (every tower but SigLIP's).
        public var hasClassToken = true
        /// Whether the projection adds `visual.proj_bias` [embed] (PE-Core's head is timm's Linear with bias).
        public var projectionBias = false
        /// PE-Core's rotary position embedding in every block's attention; nil for none.
        public var rotary: Rotary?
        /// The blocks' MLP hidden width as the weights have it (nil when not inferred from weights; the blocks read
        /// theirs from the weights either way). Checked against what a named timm model builds.
        public var mlpWidth: Int?
        /// The timm model an open_clip config named, for towers whose settings the weights do not hold (PE-Core's
        /// heads and rotary embedding); nil otherwise.
        public var timmModel: String?

        /// timm's axial rotary embedding as PE-Core builds it (see `RotaryEmbedding`).
        public struct Rotary: Sendable, Equatable {
            /// Patches per side the positions are scaled to (`ref_feat_shape`).
            public var referenceGrid: Int
            /// Added to each patch index before scaling (`rope_grid_offset`).
            public var offset: Float
            /// Whether the first half of each head turns by the column (`rope_grid_indexing='xy'`).
            public var columnsFirst: Bool

            /// The embedding's settings.
            public init(referenceGrid: Int, offset: Float = 0, columnsFirst: Bool = false) {
                (self.referenceGrid, self.offset, self.columnsFirst) = (referenceGrid, offset, columnsFirst)
            }
        }
        /// Whether the patch convolution has a bias (`visual.conv1.bias`; SigLIP's has).
        public var patchBias = false
        /// Whether a LayerNorm (`visual.ln_pre`) precedes the transformer (CLIP's does, SigLIP's does not).
        public var preNorm = true
        /// Whether `visual.proj` maps the pooled width to the embedding (SigLIP's pooled width is the embedding).
        public var projection = true
        /// timm's convolutional stem in place of the patch convolution (`vit_base_mci_224`, MobileCLIP-B); nil for the
        /// patch convolution.
        public var convStem: ConvStem?
        /// SigLIP 2's NaFlex: each image comes as its own grid of patch rows (`Preprocessing.PatchBudget`'s layout,
        /// a [N, values] tensor) and the `grid` × `grid` position table is resized to that grid.
        public var variableGrid = false
        /// Whether the positional table has a row for the class token (timm's `no_embed_class` false); without one the
        /// class token enters the blocks without a position (MobileCLIP-B).
        public var classTokenPosition = true

        /// timm's `ConvStem` as a patch embedding: non-overlapping convolutions (kernel = stride, no padding), each
        /// but the last followed by a BatchNorm and GELU, the last with a bias and `width` outputs
        /// (`visual.trunk.patch_embed.backbone.<i>`). The patch side is the product of the kernels.
        public struct ConvStem: Sendable, Equatable {
            /// Each convolution's kernel side (= stride).
            public var kernels: [Int]
            /// Each convolution's output channels (the last is the tower's width).
            public var channels: [Int]

            /// A stem of these convolutions.
            public init(kernels: [Int], channels: [Int]) { (self.kernels, self.channels) = (kernels, channels) }

            /// The stem as `visual.trunk.patch_embed.backbone.<i>.conv.weight` describe it (1 to 8 convolutions of
            /// kernels 1...16 making patches of at most 64 pixels), or nil when the checkpoint has none.
            static func infer(_ shape: (String, Int) throws(ModelLoadError) -> [Int], has: (String) -> Bool,
                              blocks: (String) throws(ModelLoadError) -> Int, origin: String) throws(ModelLoadError) -> ConvStem? {
                let prefix = "visual.trunk.patch_embed.backbone"
                guard has("\(prefix).0.conv.weight") else { return nil }
                let count = try blocks(prefix)
                guard (1...8).contains(count) else {
                    throw .architecture("\(prefix) has \(count) convolutions; a stem here has 1 to 8", origin: origin)
                }
                var s = ConvStem(kernels: [], channels: []), inputs = 3, side = 1
                for i in 0..<count {
                    let key = "\(prefix).\(i).conv.weight"
                    let conv = try shape(key, 4)
                    guard conv[1] == inputs, conv[2] == conv[3], (1...16).contains(conv[2]) else {
                        throw .architecture("\(key) has shape \(conv), expected [channels, \(inputs), k, k] with k in 1...16", origin: origin)
                    }
                    s.kernels.append(conv[2])
                    s.channels.append(conv[0])
                    (inputs, side) = (conv[0], side * conv[2])
                }
                guard side <= 64 else {
                    throw .architecture("\(prefix)'s convolutions make \(side)-pixel patches; at most 64 are supported", origin: origin)
                }
                return s
            }
        }

        /// The image tower's pooling.
        public enum Pooling: Sendable, Equatable {
            /// `ln_post` of the class token (prepended to the patches).
            case classToken
            /// `ln_post` of every token, then `AttentionPooling` (`visual.attn_pool`) with this many heads (the MAP
            /// head of SigLIP, without a class token, and of PE-Core, with one).
            case attention(heads: Int)
            /// CoCa's `AttentionalPooler` (`visual.attn_pool`) over the class token and the patches with this many
            /// heads, then `ln_post` of its first query's output, `embedDim` wide.
            case attentionalPooler(heads: Int)
            /// CLIPA's: the mean of the patch tokens (the class token left out), then `ln_post` (open_clip's
            /// `pool_type: avg` with `final_ln_after_pool`).
            case average
            /// `ln_post` of every token, then the mean of the patch tokens (`pool_type: avg` without
            /// `final_ln_after_pool`).
            case normalizedAverage
        }

        /// Tokens the transformer sees: the patches, plus the class token.
        public var tokens: Int {
            let (square, overflow) = grid.multipliedReportingOverflow(by: grid)
            if overflow { return Int.max }
            return hasClassToken ? (square == Int.max ? Int.max : square + 1) : square
        }

        /// A tower of the given sizes; QuickGELU and ε 1e-5 as in OpenAI's models unless given.
        public init(width: Int, layers: Int, heads: Int, patchSize: Int, grid: Int, activation: Activation = .quickGELU,
                    layerNormEps: Float = 1e-5) {
            (self.width, self.layers, self.heads, self.patchSize, self.grid) = (width, layers, heads, patchSize, grid)
            (self.activation, self.layerNormEps) = (activation, layerNormEps)
        }
    }
}
