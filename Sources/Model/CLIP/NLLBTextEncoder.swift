#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPLayers
import CLIPTensor

/// open_clip's Hugging Face text tower for NLLB-200 (`hf_model_name: facebook/nllb-200-distilled-600M | -1.3B`,
/// `HFTextEncoder` over the encoder of transformers' `M2M100Model`; NLLB-CLIP and NLLB-SigLIP): token embeddings
/// scaled by √width plus a sinusoid, pre-norm encoder layers (CLIP's block with ReLU) attending to every token that is
/// not padding, a final LayerNorm, the features at the first position (the language code; open_clip's `cls_pooler`)
/// or the mean over the tokens (`mean_pooler`), then open_clip's projection: one Linear without bias
/// (`hf_proj_type: linear`) or Linear → GELU → Linear (`mlp`). Tensors are read under `text.transformer.*` and
/// `text.proj.*`.
///
/// Positions are fairseq's: padding (id 1) takes position 1, whose sinusoid row is zero; the other tokens 2, 3, …
/// counting only tokens that are not padding. The sinusoid is computed in float32 as transformers computes it: for
/// k < width/2, f_k = exp(k · −ln 10000 / (width/2 − 1)), row p = sin(p·f_k) for every k, then cos(p·f_k).
public struct NLLBTextEncoder: Sendable {
    /// The sizes this tower was built with.
    public let configuration: CLIPConfiguration.Text
    let tokenEmbedding: Tensor  // [vocab, width]
    let layers: Transformer
    let finalNorm: LayerNorm
    let head: HuggingFaceTextHead
    /// The sinusoid's rows for positions 0 ... context + 1 [context + 2, width], computed once: a row of the context's
    /// length reads up to position context + 1.
    let positions: Tensor

    /// NLLB's padding id, which is also the position padding takes.
    static let padding = 1

    init(_ r: ParameterReader, _ c: CLIPConfiguration.Text, embedDim: Int) throws(ModelLoadError) {
        guard let nllb = c.nllb else {
            throw .architecture("the text tower is not NLLB's encoder", origin: r.origin)
        }
        guard c.width % 2 == 0 else {
            throw .architecture("NLLB's sinusoidal positions need an even width; text.transformer.embed_tokens.weight is \(c.width) wide", origin: r.origin)
        }
        configuration = c
        let (w, p) = (c.width, "text.transformer")
        tokenEmbedding = try r.tensor("\(p).embed_tokens.weight", shape: [c.vocabSize, w])
        layers = try Transformer(r, layers: c.layers) { (i) throws(ModelLoadError) in
            try ResidualAttentionBlock(m2m100: r, "\(p).layers.\(i)", width: w, heads: c.heads, eps: c.layerNormEps)
        }
        finalNorm = try LayerNorm(r, "\(p).layer_norm", width: w, eps: c.layerNormEps)
        head = try HuggingFaceTextHead(r, width: w, hidden: nllb.projectionHidden, embedDim: embedDim)
        positions = Tensor(uncheckedShape: [c.contextLength + 2, w],
                           scalars: (0...(c.contextLength + 1)).flatMap { Self.sinusoid($0, width: w) })
    }

    private init(configuration: CLIPConfiguration.Text, tokenEmbedding: Tensor, layers: Transformer, finalNorm: LayerNorm,
                 head: HuggingFaceTextHead, positions: Tensor) {
        (self.configuration, self.tokenEmbedding, self.layers, self.finalNorm, self.head, self.positions) =
            (configuration, tokenEmbedding, layers, finalNorm, head, positions)
    }

    /// The tower with its products computed in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> NLLBTextEncoder {
        NLLBTextEncoder(configuration: configuration, tokenEmbedding: tokenEmbedding,
                        layers: try layers.converted(to: precision), finalNorm: finalNorm,
                        head: try head.converted(to: precision), positions: positions)
    }

    /// The sinusoid row of `position` [width], in float32 as transformers' `M2M100SinusoidalPositionalEmbedding`.
    package static func sinusoid(_ position: Int, width: Int) -> [Float] {
        let half = width / 2
        // torch: emb = exp(arange(half) * -(log(10000) / (half - 1))), each product in float32.
        let step = Float(log(10000.0) / Double(max(half - 1, 1)))
        var row = [Float](repeating: 0, count: width)
        guard position != padding else { return row }
        for k in 0..<half {
            let angle = Float(position) * expf(Float(k) * -step)
            row[k] = sinf(angle)
            row[half + k] = cosf(angle)
        }
        return row
    }

    /// `tokens`: N rows of equal length ≤ the context length, ids in 0..<vocab → [N, embed].
    func forward(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
        let c = configuration
        let (n, w) = (tokens.count, c.width)
        let length = try HuggingFaceTextHead.rowLength(tokens, c)
        let padding = Self.padding
        let keys = tokens.flatMap { $0.map { $0 != padding } }
        let scale = Float(Double(w).squareRoot())
        do {
            var x = Tensor(uncheckedZeros: [n, length, w])
            x.scalars.withUnsafeMutableBufferPointer { xp in
                tokenEmbedding.scalars.withUnsafeBufferPointer { we in
                    positions.scalars.withUnsafeBufferPointer { pe in
                        for (t, row) in tokens.enumerated() {
                            var seen = 0
                            for (i, id) in row.enumerated() {
                                if id != padding { seen += 1 }
                                let position = id != padding ? seen + padding : padding
                                let dst = xp.baseAddress! + (t * length + i) * w
                                let (word, sinusoid) = (we.baseAddress! + id * w, pe.baseAddress! + position * w)
                                for j in 0..<w { dst[j] = word[j] * scale + sinusoid[j] }
                            }
                        }
                    }
                }
            }
            try layers.forward(&x, causal: false, keyMask: keys)
            try finalNorm.forward(x, into: &x)
            // The language code's position (open_clip's cls_pooler), or the mean (mean_pooler).
            return try head.project(HuggingFaceTextHead.pooled(x, keys: keys, pooling: c.pooling))
        } catch {
            throw .internalShape(error)
        }
    }
}
