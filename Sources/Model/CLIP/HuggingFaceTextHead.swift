import CLIPLayers
import CLIPTensor

/// What open_clip's `HFTextEncoder` does around any Hugging Face text tower (`RobertaTextEncoder`,
/// `NLLBTextEncoder`): the rows checked before they index anything, the pooler over the tower's output, and the
/// projection after it.
struct HuggingFaceTextHead: Sendable {
    /// The projection: [fc, proj] with GELU between (`hf_proj_type: mlp`), or [proj] (`linear`).
    let projection: [Linear]

    /// Reads `text.proj.0` and `text.proj.2` (no biases) when `hidden` is given, else `text.proj`.
    init(_ r: ParameterReader, width: Int, hidden: Int?, embedDim: Int) throws(ModelLoadError) {
        if let hidden {
            projection = [try Linear(r, "text.proj.0", in: width, out: hidden, bias: false),
                          try Linear(r, "text.proj.2", in: hidden, out: embedDim, bias: false)]
        } else {
            projection = [try Linear(r, "text.proj", in: width, out: embedDim, bias: false)]
        }
    }

    private init(projection: [Linear]) { self.projection = projection }

    /// The head computing its products in `precision`.
    func converted(to precision: Precision) throws(TensorError) -> HuggingFaceTextHead {
        var projection: [Linear] = []
        for l in self.projection { projection.append(try l.converted(to: precision)) }
        return HuggingFaceTextHead(projection: projection)
    }

    /// The rows' common length, once every row has it (1 ... the context length) and every id is below the vocabulary
    /// size; else an error naming the text and position.
    static func rowLength(_ tokens: [[Int]], _ c: CLIPConfiguration.Text) throws(CLIPError) -> Int {
        let length = tokens.first?.count ?? 0
        for (t, row) in tokens.enumerated() {
            guard row.count == length, length >= 1, length <= c.contextLength else {
                throw .tokenLength(text: t, count: row.count, expected: length >= 1 ? length : c.contextLength,
                                   contextLength: c.contextLength)
            }
            if let (i, id) = row.enumerated().first(where: { $0.element < 0 || $0.element >= c.vocabSize }) {
                throw .tokenOutOfRange(text: t, position: i, id: id, vocabularySize: c.vocabSize)
            }
        }
        return length
    }

    /// `x` [n, length, width] pooled to [n, width]: the first position (`pooling == .first`), else the mean over the
    /// positions `keys` [n·length] marks (open_clip's `mean_pooler`; a row without any is zero).
    static func pooled(_ x: Tensor, keys: [Bool], pooling: CLIPConfiguration.Text.Pooling) -> Tensor {
        let (n, length, w) = (x.shape[0], x.shape[1], x.shape[2])
        var pooled = Tensor(uncheckedZeros: [n, w])
        for t in 0..<n {
            if pooling == .first {
                for j in 0..<w { pooled.scalars[t * w + j] = x.scalars[t * length * w + j] }
                continue
            }
            var count: Float = 0
            for i in 0..<length where keys[t * length + i] {
                count += 1
                for j in 0..<w { pooled.scalars[t * w + j] += x.scalars[(t * length + i) * w + j] }
            }
            for j in 0..<w { pooled.scalars[t * w + j] /= max(count, 1) }
        }
        return pooled
    }

    /// `pooled` [n, width] → [n, embed].
    func project(_ pooled: Tensor) throws(TensorError) -> Tensor {
        guard projection.count == 2 else { return try projection[0](pooled) }
        var hidden = Tensor(uninitialized: [pooled.shape[0], projection[0].outFeatures])
        try projection[0].forward(pooled, into: &hidden, activation: .gelu)
        return try projection[1](hidden)
    }
}
