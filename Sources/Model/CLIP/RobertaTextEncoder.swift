import CLIPLayers
import CLIPTensor

/// open_clip's Hugging Face text tower for XLM-RoBERTa (`hf_model_name: xlm-roberta-base | xlm-roberta-large`,
/// `HFTextEncoder` over transformers' `XLMRobertaModel`): word, position and token-type embeddings and their
/// LayerNorm, post-norm encoder layers (`BertEncoderLayer`) attending to every token that is not padding, the mean
/// over those tokens (open_clip's `mean_pooler`), then open_clip's projection: Linear → GELU → Linear without biases
/// (`hf_proj_type: mlp`) or one Linear (`linear`). Tensors are read under `text.transformer.*` and `text.proj.*`.
///
/// Positions follow RoBERTa's: padding tokens take position 1 (`padding_idx`), the others 2, 3, … counting only
/// tokens that are not padding.
///
/// The same tower computes transformers' `ChineseCLIPTextModel` (a BERT) when `roberta.bert`: padding id 0, positions
/// 0, 1, … for every token, the features at the first position (`[CLS]`), then `text_projection` (read as `text.proj`).
public struct RobertaTextEncoder: Sendable {
    /// The sizes this tower was built with.
    public let configuration: CLIPConfiguration.Text
    let wordEmbedding: Tensor  // [vocab, width]
    let positionEmbedding: Tensor  // [positions, width]
    let tokenType: Tensor  // [width], type 0's embedding
    let embeddingNorm: LayerNorm
    let layers: [BertEncoderLayer]
    let head: HuggingFaceTextHead

    /// RoBERTa's padding id (and `padding_idx`, the position padding takes).
    static let padding = 1

    /// The padding id: RoBERTa's 1, BERT's 0.
    var padding: Int { configuration.roberta?.bert == true ? 0 : Self.padding }

    init(_ r: ParameterReader, _ c: CLIPConfiguration.Text, embedDim: Int) throws(ModelLoadError) {
        guard let roberta = c.roberta else {
            throw .architecture("the text tower is not a Hugging Face RoBERTa tower", origin: r.origin)
        }
        configuration = c
        let (w, p) = (c.width, "text.transformer")
        wordEmbedding = try r.tensor("\(p).embeddings.word_embeddings.weight", shape: [c.vocabSize, w])
        positionEmbedding = try r.tensor("\(p).embeddings.position_embeddings.weight", shape: [roberta.positions, w])
        tokenType = Tensor(uncheckedShape: [w], scalars: Array(try r.tensor("\(p).embeddings.token_type_embeddings.weight",
                                                                         shape: [roberta.tokenTypes, w]).scalars.prefix(w)))
        embeddingNorm = try LayerNorm(r, "\(p).embeddings.LayerNorm", width: w, eps: c.layerNormEps)
        var layers: [BertEncoderLayer] = []
        for i in 0..<c.layers {
            layers.append(try BertEncoderLayer(r, "\(p).encoder.layer.\(i)", width: w, heads: c.heads, eps: c.layerNormEps))
        }
        self.layers = layers
        head = try HuggingFaceTextHead(r, width: w, hidden: roberta.projectionHidden, embedDim: embedDim)
    }

    private init(configuration: CLIPConfiguration.Text, wordEmbedding: Tensor, positionEmbedding: Tensor,
                 tokenType: Tensor, embeddingNorm: LayerNorm, layers: [BertEncoderLayer], head: HuggingFaceTextHead) {
        (self.configuration, self.wordEmbedding, self.positionEmbedding, self.tokenType) =
            (configuration, wordEmbedding, positionEmbedding, tokenType)
        (self.embeddingNorm, self.layers, self.head) = (embeddingNorm, layers, head)
    }

    /// The tower with its products computed in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> RobertaTextEncoder {
        var layers: [BertEncoderLayer] = []
        for l in self.layers { layers.append(try l.converted(to: precision)) }
        return RobertaTextEncoder(configuration: configuration, wordEmbedding: wordEmbedding,
                                  positionEmbedding: positionEmbedding, tokenType: tokenType,
                                  embeddingNorm: embeddingNorm, layers: layers, head: try head.converted(to: precision))
    }

    /// `tokens`: N rows of equal length ≤ the context length, ids in 0..<vocab → [N, embed].
    func forward(_ tokens: [[Int]]) throws(CLIPError) -> Tensor {
        let c = configuration
        let (n, w) = (tokens.count, c.width)
        let length = try HuggingFaceTextHead.rowLength(tokens, c)
        let (padding, bert) = (self.padding, c.roberta?.bert == true)
        let keys = tokens.flatMap { $0.map { $0 != padding } }
        do {
            var x = Tensor(uncheckedZeros: [n, length, w])
            x.scalars.withUnsafeMutableBufferPointer { xp in
                wordEmbedding.scalars.withUnsafeBufferPointer { we in
                    positionEmbedding.scalars.withUnsafeBufferPointer { pe in
                        for (t, row) in tokens.enumerated() {
                            var seen = 0
                            for (i, id) in row.enumerated() {
                                if id != padding { seen += 1 }
                                let position = bert ? i : id != padding ? seen + padding : padding
                                let dst = xp.baseAddress! + (t * length + i) * w
                                let word = we.baseAddress! + id * w, pos = pe.baseAddress! + position * w
                                for j in 0..<w { dst[j] = word[j] + tokenType.scalars[j] + pos[j] }
                            }
                        }
                    }
                }
            }
            try embeddingNorm.forward(x, into: &x)
            for layer in layers { try layer.forward(&x, keyMask: keys) }
            // open_clip's mean_pooler, or BERT's [CLS] for Chinese-CLIP.
            return try head.project(HuggingFaceTextHead.pooled(x, keys: keys, pooling: c.pooling))
        } catch {
            throw .internalShape(error)
        }
    }
}

extension CLIPConfiguration.Text {
    /// The inferred Hugging Face text tower read as Chinese-CLIP's BERT, in either of its formats: BERT's embeddings
    /// (padding id 0, positions from 0), the features at `[CLS]`, `vocabulary`'s rows of cn_clip's 52 tokens (fewer
    /// when the position table is shorter). Nothing changes for a tower without RoBERTa's layout.
    package mutating func readAsChineseCLIP(vocabulary: Vocabulary) {
        guard var bert = roberta else { return }
        bert.bert = true
        roberta = bert
        pooling = .first
        self.vocabulary = vocabulary
        contextLength = min(52, bert.positions)
    }
}
