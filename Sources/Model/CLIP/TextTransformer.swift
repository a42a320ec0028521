import CLIPLayers
import CLIPTensor

/// The text tower: token and positional embeddings, a causal transformer, `ln_final`, and the features at
/// each text's end-of-text token (the position of its largest id) projected by `text_projection`. SigLIP's variant
/// attends without a causal mask, reads the last position and adds `text_projection_bias`. CoCa's appends a learned
/// token (`cls_emb`) to every row, masks padding keys, and reads that token.
public struct TextTransformer: Sendable {
    /// The sizes this tower was built with.
    public let configuration: CLIPConfiguration.Text
    /// [vocab, width]; mapped from the packed-weight cache when loaded through one (not copied: the load reads it
    /// once to verify its checksum, and queries then read only the rows of their tokens).
    let tokenEmbedding: Elements<Float>
    let positionalEmbedding: Tensor  // [context, width]; [context + 1, width] with CoCa's class token
    let classEmbedding: Tensor?  // [width], CoCa's appended token
    let transformer: Transformer
    let lnFinal: LayerNorm
    let projection: Tensor  // [width, embed]
    let projectionBias: Tensor?  // [embed]

    init(_ r: ParameterReader, _ c: CLIPConfiguration.Text, embedDim: Int) throws(ModelLoadError) {
        let (activation, eps) = (c.activation, c.layerNormEps)
        guard c.pooling != .mean else {
            throw .architecture("mean pooling over tokens belongs to Hugging Face RoBERTa towers, not CLIP's text transformer", origin: r.origin)
        }
        configuration = c
        tokenEmbedding = try r.table("token_embedding.weight", shape: [c.vocabSize, c.width])
        let appended = c.pooling == .appendedClassToken
        positionalEmbedding = try r.tensor("positional_embedding", shape: [c.contextLength + (appended ? 1 : 0), c.width])
        classEmbedding = appended ? try r.tensor("cls_emb", shape: [c.width]) : nil
        transformer = try Transformer(r, "transformer", width: c.width, layers: c.layers, heads: c.heads,
                                      activation: activation, eps: eps)
        lnFinal = try LayerNorm(r, "ln_final", width: c.width, eps: eps)
        projection = try r.tensor("text_projection", shape: [c.width, embedDim])
        projectionBias = c.projectionBias ? try r.tensor("text_projection_bias", shape: [embedDim]) : nil
    }

    private init(configuration: CLIPConfiguration.Text, tokenEmbedding: Elements<Float>, positionalEmbedding: Tensor,
                 classEmbedding: Tensor?, transformer: Transformer, lnFinal: LayerNorm, projection: Tensor,
                 projectionBias: Tensor?) {
        (self.configuration, self.tokenEmbedding, self.positionalEmbedding, self.classEmbedding) =
            (configuration, tokenEmbedding, positionalEmbedding, classEmbedding)
        (self.transformer, self.lnFinal, self.projection, self.projectionBias) =
            (transformer, lnFinal, projection, projectionBias)
    }

    /// The tower with its transformer computing in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> TextTransformer {
        TextTransformer(configuration: configuration, tokenEmbedding: tokenEmbedding,
                        positionalEmbedding: positionalEmbedding, classEmbedding: classEmbedding,
                        transformer: try transformer.converted(to: precision),
                        lnFinal: lnFinal, projection: projection, projectionBias: projectionBias)
    }

    /// `tokens`: N rows of equal length ≤ context length, ids in 0..<vocab → [N, embed].
    func forward(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
        let eot = try endOfText(tokens)
        let c = configuration
        do {
            // Without the causal mask every position reaches every feature, and CoCa's appended token reads every
            // position: the whole rows run.
            let whole = !c.causal || classEmbedding != nil
            let used = whole ? tokens.first?.count ?? 0 : (eot.max() ?? 0) + 1
            var x: Tensor
            if !whole, let tree = sharedPrefixes(tokens, endOfText: eot, used: used) {
                x = try transformer.forward(embed(tree), tree: tree)
            } else {
                x = embed(tokens, through: used)
                try transformer.forward(&x, causal: c.causal, keyMask: classEmbedding == nil ? nil : paddingKeys(tokens),
                                        keeping: eot)
            }
            var y = try matmul(lnFinal(x.reshaped([eot.count, c.width])), projection)
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
    /// largest id, as torch.argmax), its last position with `.last` pooling, the appended token after it, or the
    /// first position of a given id.
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
            switch c.pooling {
            case .endOfText: eot[t] = best
            case .last: eot[t] = length - 1
            case .appendedClassToken: eot[t] = length
            case .token(let id): eot[t] = row.firstIndex(of: id) ?? 0
            case .first, .mean: eot[t] = 0  // .mean is refused when the tower is built
            }
        }
        return eot
    }

    /// Token plus positional embeddings of the first `used` positions → [N, used, width], with CoCa's class token
    /// appended at position `used` ([N, used + 1, width]). The mask is causal, so positions after the last
    /// end-of-text token in the batch cannot affect any feature that is read: running only this prefix gives
    /// identical results (and identical gradients).
    func embed(_ tokens: [[Int]], through used: Int) -> Tensor {
        let (n, w) = (tokens.count, configuration.width)
        let positions = used + (classEmbedding == nil ? 0 : 1)
        var x = Tensor(uncheckedZeros: [n, positions, w])
        addEmbeddings(n * used, into: &x) { k in
            let (t, i) = (k / used, k % used)
            return (tokens[t][i], i, t * positions + i)
        }
        if let classEmbedding {
            x.scalars.withUnsafeMutableBufferPointer { xp in
                positionalEmbedding.scalars.withUnsafeBufferPointer { pe in
                    for t in 0..<n {
                        let dst = xp.baseAddress! + (t * positions + used) * w, pos = pe.baseAddress! + used * w
                        for j in 0..<w { dst[j] = classEmbedding.scalars[j] + pos[j] }
                    }
                }
            }
        }
        return x
    }

    /// The prefix tree of each row's tokens through its end of text, when running its nodes saves at least a fifth
    /// of the `used` positions every row would otherwise compute: prompts of one template share their first
    /// tokens, shorter rows need no padding, and a repeated text is one path. Otherwise nil: the whole rows run,
    /// where every block but the last has the vectorised attention kernels.
    package func sharedPrefixes(_ tokens: [[Int]], endOfText eot: [Int], used: Int) -> PrefixTree? {
        let tree = PrefixTree(tokens, lengths: eot.map { $0 + 1 })
        return tree.count * 5 <= tokens.count * used * 4 ? tree : nil
    }

    /// Token plus positional embeddings of a prefix tree's nodes → [nodes, width].
    func embed(_ tree: PrefixTree) -> Tensor {
        var x = Tensor(uncheckedZeros: [tree.count, configuration.width])
        addEmbeddings(tree.count, into: &x) { (tree.tokens[$0], tree.positions[$0], $0) }
        return x
    }

    /// Row `entry(k).row` of `x` [.., width] = token embedding of `entry(k).token` + positional embedding of
    /// `entry(k).position`, for k in 0..<count.
    private func addEmbeddings(_ count: Int, into x: inout Tensor,
                               _ entry: (Int) -> (token: Int, position: Int, row: Int)) {
        let w = configuration.width
        x.scalars.withUnsafeMutableBufferPointer { xp in
            tokenEmbedding.withUnsafeBufferPointer { te in
                positionalEmbedding.scalars.withUnsafeBufferPointer { pe in
                    for k in 0..<count {
                        let (token, position, row) = entry(k)
                        let dst = xp.baseAddress! + row * w
                        let emb = te.baseAddress! + token * w, pos = pe.baseAddress! + position * w
                        for j in 0..<w { dst[j] = emb[j] + pos[j] }
                    }
                }
            }
        }
    }

    /// CoCa's key mask over rows with the appended token, [N·(length + 1)]: key 0 and the keys whose preceding token
    /// is not padding (id 0) are visible. open_clip puts the class token's entry before the row's instead of after
    /// it (`correct_cls_mask` is off for CoCa), so the mask is shifted by one position; the published CoCa weights
    /// were trained with it, and it is reproduced as it is.
    func paddingKeys(_ tokens: [[Int]]) -> [Bool] {
        let length = tokens.first?.count ?? 0
        var keys = [Bool](repeating: true, count: tokens.count * (length + 1))
        for (t, row) in tokens.enumerated() {
            for j in 1...length { keys[t * (length + 1) + j] = row[j - 1] != 0 }
        }
        return keys
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
            let picked = try gatherTokens(x, at: eot).reshaped([eot.count, configuration.width])
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
