import CLIPTensor
import CLIPWeights

/// A checkpoint's tensors under the names the towers read, each made by a recipe from the checkpoint's own tensors:
/// what `HuggingFaceWeights` and `OpenCLIPTimmViTWeights` share, each supplying its own name mapping.
struct RenamedTensors: Sendable {
    let base: any WeightSource
    /// The mapped tensors, in the underlying file's order.
    let tensorInfos: [TensorInfo]
    private let recipes: [String: WeightRecipe]

    /// Maps every tensor of `base` not `skipping` with `mapping` (given the tensor and every tensor by name), which
    /// returns the new name, its recipe and shape, or nil for a tensor another entry's recipe consumes.
    init(_ base: any WeightSource, skipping: (String) -> Bool = { _ in false },
         mapping: (TensorInfo, [String: TensorInfo]) throws(WeightFileError) -> (String, WeightRecipe, [Int])?) throws(WeightFileError) {
        var infos: [String: TensorInfo] = [:]
        for t in base.tensorInfos { infos[t.name] = t }
        var recipes: [String: WeightRecipe] = [:]
        var out: [TensorInfo] = []
        for t in base.tensorInfos where !skipping(t.name) {
            guard let (name, recipe, shape) = try mapping(t, infos) else { continue }
            recipes[name] = recipe
            out.append(TensorInfo(name: name, dtype: t.dtype, shape: shape))
        }
        (self.base, self.recipes, self.tensorInfos) = (base, recipes, out)
    }

    /// The tensor under its mapped name.
    func floatTensor(_ name: String) throws(WeightFileError) -> Tensor {
        guard let r = recipes[name] else { throw WeightFileError(file: base.origin, .missingTensor(name)) }
        return try r.make(name, from: base)
    }
}

/// How a tensor under the name the towers read is made from a checkpoint's own tensors.
enum WeightRecipe: Sendable {
    case rename(String)
    /// A `[rows, cols]` matrix as `[cols, rows]` (a Linear weight as OpenAI's projection layout).
    case transpose(String)
    /// Tensors stacked along their first dimension (q, k, v as one `in_proj`).
    case concat([String])
    /// The same values under another shape (`[1]` scalars as `[]`, `[1, N, w]` embeddings as `[N, w]`).
    case reshape(String, [Int])
    /// A Linear over patch rows in (y, x, channel) order, `[width, p·p·3]` (SigLIP 2 NaFlex's patch embedding), as the
    /// patch convolution `[width, 3, p, p]` the ViT tower reads: `conv[o, c, y, x] = linear[o, (y·p + x)·3 + c]`.
    case patchLinear(String, patch: Int)

    /// The tensor `name` made from `base`.
    func make(_ name: String, from base: any WeightSource) throws(WeightFileError) -> Tensor {
        let origin = base.origin
        switch self {
        case .rename(let n):
            return try base.floatTensor(n)
        case .transpose(let n):
            let t = try base.floatTensor(n)
            let (rows, cols) = (t.shape[0], t.shape[1])
            var out = [Float](repeating: 0, count: t.count)
            for i in 0..<rows { for j in 0..<cols { out[j * rows + i] = t.scalars[i * cols + j] } }
            do { return try Tensor(shape: [cols, rows], scalars: out) } catch {
                throw WeightFileError(file: origin, .invalidEntry(tensor: n, message: error.description))
            }
        case .reshape(let n, let shape):
            let t = try base.floatTensor(n)
            do { return try Tensor(shape: shape, scalars: t.scalars) } catch {
                throw WeightFileError(file: origin, .invalidEntry(tensor: n, message: error.description))
            }
        case .patchLinear(let n, let p):
            let t = try base.floatTensor(n)
            let (rows, cols) = (t.shape[0], t.shape.count == 2 ? t.shape[1] : 0)
            guard t.shape.count == 2, cols == 3 * p * p else {
                throw WeightFileError(file: origin, .invalidEntry(tensor: n, message: "has shape \(t.shape), expected [width, \(3 * p * p)] (\(p)×\(p) patches of 3 channels)"))
            }
            var out = [Float](repeating: 0, count: t.count)
            for o in 0..<rows {
                for c in 0..<3 {
                    for yx in 0..<(p * p) { out[(o * 3 + c) * p * p + yx] = t.scalars[o * cols + yx * 3 + c] }
                }
            }
            return Tensor(uncheckedShape: [rows, 3, p, p], scalars: out)
        case .concat(let parts):
            var scalars: [Float] = []
            var shape: [Int] = []
            for p in parts {
                let t = try base.floatTensor(p)
                scalars += t.scalars
                if shape.isEmpty { shape = t.shape } else { shape[0] += t.shape[0] }
            }
            do { return try Tensor(shape: shape, scalars: scalars) } catch {
                throw WeightFileError(file: origin, .invalidEntry(tensor: name, message: error.description))
            }
        }
    }
}
