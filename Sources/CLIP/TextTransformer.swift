import CLIPLayers
import CLIPTensor

/// The text tower: token and positional embeddings, a causal transformer, `ln_final`, and the features at
/// each text's end-of-text token (the position of its largest id) projected by `text_projection`.
public struct TextTransformer: Sendable {
    /// The sizes this tower was built with.
    public let configuration: CLIPConfiguration.Text
    let tokenEmbedding: Tensor  // [vocab, width]
    let positionalEmbedding: Tensor  // [context, width]
    let transformer: Transformer
    let lnFinal: LayerNorm
    let projection: Tensor  // [width, embed]

    init(_ r: ParameterReader, _ c: CLIPConfiguration.Text, embedDim: Int) throws(ModelLoadError) {
        let (activation, eps) = (c.activation, c.layerNormEps)
        configuration = c
        tokenEmbedding = try r.tensor("token_embedding.weight", shape: [c.vocabSize, c.width])
        positionalEmbedding = try r.tensor("positional_embedding", shape: [c.contextLength, c.width])
        transformer = try Transformer(r, "transformer", width: c.width, layers: c.layers, heads: c.heads,
                                      activation: activation, eps: eps)
        lnFinal = try LayerNorm(r, "ln_final", width: c.width, eps: eps)
        projection = try r.tensor("text_projection", shape: [c.width, embedDim])
    }

    private init(configuration: CLIPConfiguration.Text, tokenEmbedding: Tensor, positionalEmbedding: Tensor,
                 transformer: Transformer, lnFinal: LayerNorm, projection: Tensor) {
        (self.configuration, self.tokenEmbedding, self.positionalEmbedding) =
            (configuration, tokenEmbedding, positionalEmbedding)
        (self.transformer, self.lnFinal, self.projection) = (transformer, lnFinal, projection)
    }

    /// The tower with its transformer computing in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> TextTransformer {
        TextTransformer(configuration: configuration, tokenEmbedding: tokenEmbedding,
                        positionalEmbedding: positionalEmbedding, transformer: try transformer.converted(to: precision),
                        lnFinal: lnFinal, projection: projection)
    }

    /// `tokens`: N rows of equal length ≤ context length, ids in 0..<vocab → [N, embed].
    func forward(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
        let c = configuration
        let n = tokens.count
        let length = tokens.first?.count ?? 0
        var eot = [Int](repeating: 0, count: n)
        for (t, row) in tokens.enumerated() {
            guard row.count == length, length >= 1, length <= c.contextLength else {
                throw .tokenLength(text: t, count: row.count, expected: length >= 1 ? length : c.contextLength,
                                   contextLength: c.contextLength)
            }
            var best = 0
            for (i, id) in row.enumerated() {
                guard id >= 0, id < c.vocabSize else {
                    throw .tokenOutOfRange(text: t, position: i, id: id, vocabularySize: c.vocabSize)
                }
                if id > row[best] { best = i }  // first maximum, as torch.argmax
            }
            eot[t] = best
        }
        // The mask is causal, so positions after the last end-of-text token in the batch cannot affect any
        // feature that is read: running only the prefix gives identical results.
        let used = (eot.max() ?? 0) + 1
        let w = c.width
        var x = Tensor(uncheckedZeros: [n, used, w])
        x.scalars.withUnsafeMutableBufferPointer { xp in
            tokenEmbedding.scalars.withUnsafeBufferPointer { te in
                positionalEmbedding.scalars.withUnsafeBufferPointer { pe in
                    for t in 0..<n {
                        for i in 0..<used {
                            let dst = xp.baseAddress! + (t * used + i) * w
                            let emb = te.baseAddress! + tokens[t][i] * w
                            let pos = pe.baseAddress! + i * w
                            for j in 0..<w { dst[j] = emb[j] + pos[j] }
                        }
                    }
                }
            }
        }
        do {
            try transformer.forward(&x, causal: true)
            var picked = Tensor(uncheckedZeros: [n, w])
            for t in 0..<n {
                let start = (t * used + eot[t]) * w
                picked.scalars.replaceSubrange((t * w)..<((t + 1) * w), with: x.scalars[start..<(start + w)])
            }
            return try matmul(lnFinal(picked), projection)
        } catch {
            throw .internalShape(error)
        }
    }
}
