import CLIPLayers
import CLIPTensor

/// The text tower: token and positional embeddings, a causal transformer, `ln_final`, and the features at
/// each text's end-of-text token (the position of its largest id) projected by `text_projection`. SigLIP's variant
/// attends without a causal mask, reads the last position and adds `text_projection_bias`.
public struct TextTransformer: Sendable {
    /// The sizes this tower was built with.
    public let configuration: CLIPConfiguration.Text
    let tokenEmbedding: Tensor  // [vocab, width]
    let positionalEmbedding: Tensor  // [context, width]
    let transformer: Transformer
    let lnFinal: LayerNorm
    let projection: Tensor  // [width, embed]
    let projectionBias: Tensor?  // [embed]

    init(_ r: ParameterReader, _ c: CLIPConfiguration.Text, embedDim: Int) throws(ModelLoadError) {
        let (activation, eps) = (c.activation, c.layerNormEps)
        configuration = c
        tokenEmbedding = try r.tensor("token_embedding.weight", shape: [c.vocabSize, c.width])
        positionalEmbedding = try r.tensor("positional_embedding", shape: [c.contextLength, c.width])
        transformer = try Transformer(r, "transformer", width: c.width, layers: c.layers, heads: c.heads,
                                      activation: activation, eps: eps)
        lnFinal = try LayerNorm(r, "ln_final", width: c.width, eps: eps)
        projection = try r.tensor("text_projection", shape: [c.width, embedDim])
        projectionBias = c.projectionBias ? try r.tensor("text_projection_bias", shape: [embedDim]) : nil
    }

    private init(configuration: CLIPConfiguration.Text, tokenEmbedding: Tensor, positionalEmbedding: Tensor,
                 transformer: Transformer, lnFinal: LayerNorm, projection: Tensor, projectionBias: Tensor?) {
        (self.configuration, self.tokenEmbedding, self.positionalEmbedding) =
            (configuration, tokenEmbedding, positionalEmbedding)
        (self.transformer, self.lnFinal, self.projection, self.projectionBias) =
            (transformer, lnFinal, projection, projectionBias)
    }

    /// The tower with its transformer computing in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> TextTransformer {
        TextTransformer(configuration: configuration, tokenEmbedding: tokenEmbedding,
                        positionalEmbedding: positionalEmbedding, transformer: try transformer.converted(to: precision),
                        lnFinal: lnFinal, projection: projection, projectionBias: projectionBias)
    }

    /// `tokens`: N rows of equal length ≤ context length, ids in 0..<vocab → [N, embed].
    func forward(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
        let eot = try endOfText(tokens)
        let c = configuration
        do {
            // Without the causal mask every position reaches every feature: the whole rows run.
            var x = embed(tokens, through: c.causal ? (eot.max() ?? 0) + 1 : tokens.first?.count ?? 0)
            try transformer.forward(&x, causal: c.causal)
            var y = try matmul(lnFinal(pick(x, at: eot)), projection)
            if let projectionBias {
                y.scalars.withUnsafeMutableBufferPointer { yp in
                    projectionBias.scalars.withUnsafeBufferPointer { bp in
                        addBiasRows(yp.baseAddress!, rows: eot.count, width: bp.count, bias: bp.baseAddress!)
                    }
                }
            }
            return y
        } catch {
            throw .internalShape(error)
        }
    }

    /// Checks every row and returns the position each text's features are read at: its end-of-text token (the first
    /// largest id, as torch.argmax), or its last position with `.last` pooling.
    func endOfText(_ tokens: [[Int]]) throws(CLIPError) -> [Int] {
        let c = configuration
        let length = tokens.first?.count ?? 0
        var eot = [Int](repeating: 0, count: tokens.count)
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
                if id > row[best] { best = i }
            }
            eot[t] = c.pooling == .last ? length - 1 : best
        }
        return eot
    }

    /// Token plus positional embeddings of the first `used` positions → [N, used, width]. The mask is causal, so
    /// positions after the last end-of-text token in the batch cannot affect any feature that is read: running only
    /// this prefix gives identical results (and identical gradients).
    func embed(_ tokens: [[Int]], through used: Int) -> Tensor {
        let (n, w) = (tokens.count, configuration.width)
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
        return x
    }

    /// Tokens [N, used, width] → each text's features at its end-of-text position [N, width].
    func pick(_ x: Tensor, at eot: [Int]) -> Tensor {
        let (used, w) = (x.shape[1], x.shape[2])
        var picked = Tensor(uncheckedZeros: [eot.count, w])
        for (t, e) in eot.enumerated() {
            let start = (t * used + e) * w
            picked.scalars.replaceSubrange((t * w)..<((t + 1) * w), with: x.scalars[start..<(start + w)])
        }
        return picked
    }
}

extension TextTransformer {
    /// What the backward pass needs from a training forward.
    struct Trace: Sendable {
        var tokens: [[Int]]
        var endOfText: [Int]
        var blocks: [ResidualAttentionBlock.Trace]
        var picked: Tensor  // [N, width], before ln_final
        var pooled: Tensor  // [N, width], after ln_final
    }

    /// The forward pass for training: N rows of token ids → [N, embed], keeping what `backward` needs.
    func forwardTraining(_ tokens: [[Int]]) throws(CLIPError) -> (Tensor, Trace) {
        let eot = try endOfText(tokens)
        do {
            var x = embed(tokens, through: (eot.max() ?? 0) + 1)
            let blocks = try transformer.forwardTraining(&x, causal: true)
            let picked = pick(x, at: eot)
            let pooled = try lnFinal(picked)
            let trace = Trace(tokens: tokens, endOfText: eot, blocks: blocks, picked: picked, pooled: pooled)
            return (try matmul(pooled, projection), trace)
        } catch {
            throw .internalShape(error)
        }
    }

    /// The backward pass: `dy` [N, embed] the gradient of the features; adds the gradient of every text parameter
    /// (`token_embedding.weight` only in the rows of tokens that were used).
    func backward(_ trace: Trace, featureGradient dy: Tensor, parameters p: ParameterValues,
                  into gradients: inout Gradients) throws(TensorError) {
        let c = configuration, w = c.width, n = trace.tokens.count
        let used = (trace.endOfText.max() ?? 0) + 1
        let dPooled = try projectionBackward(input: trace.pooled, outputGradient: dy, projection: projection,
                                             name: "text_projection", into: &gradients)
        let dPicked = try lnFinal.backward(input: trace.picked, outputGradient: dPooled, prefix: "ln_final",
                                           into: &gradients)
        var dx = Tensor(uncheckedZeros: [n, used, w])
        for (t, e) in trace.endOfText.enumerated() {
            let start = (t * used + e) * w
            dx.scalars.replaceSubrange(start..<(start + w), with: dPicked.scalars[(t * w)..<((t + 1) * w)])
        }
        dx = try transformer.backward(trace.blocks, outputGradient: dx, prefix: "transformer", parameters: p,
                                      into: &gradients)
        dx.scalars.withUnsafeBufferPointer { d in
            gradients.accumulate("token_embedding.weight", shape: [c.vocabSize, w]) { te in
                for t in 0..<n {
                    for i in 0..<used {
                        let src = d.baseAddress! + (t * used + i) * w, dst = te + trace.tokens[t][i] * w
                        for j in 0..<w { dst[j] += src[j] }
                    }
                }
            }
            gradients.accumulate("positional_embedding", shape: [c.contextLength, w]) { pe in
                for t in 0..<n {
                    for k in 0..<(used * w) { pe[k] += d[t * used * w + k] }
                }
            }
        }
    }
}
