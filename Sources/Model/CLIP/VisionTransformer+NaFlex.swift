import CLIPLayers
import CLIPTensor

// SigLIP 2's NaFlex tower (transformers' `Siglip2VisionModel`): SigLIP's ViT over an image's own patch grid. The
// input is `Preprocessing.PatchBudget`'s layout, each image's grid (rows, columns) then its patch rows in (y, x,
// channel) order, padded to a fixed count. transformers runs the padded batch with an attention mask; padding never
// reaches a real token through it, so each image's features are those of its patches alone. Here the images of one
// grid run together without padding: the same result (checked against transformers' masked batch), no work spent on
// padding, and no mask in the blocks or the pooling head.

extension VisionTransformer {
    /// `input` [N, 2 + P·3·p·p] (P patch rows per image) → [N, width]: per image, its grid's patches embedded, the
    /// position table resized to that grid added, the transformer, `ln_post` and the attention-pooling head.
    func forwardVariableGrid(_ input: Tensor) throws(CLIPError) -> Tensor {
        let (p, w) = (configuration.patchSize, configuration.width)
        let patch = 3 * p * p
        let expected = "[N, 2 + patches·\(patch)] (each image's patch rows and columns, then its \(p)×\(p) patches as rows of \(patch) values: Preprocessing.PatchBudget's layout)"
        guard input.rank == 2, input.shape[1] > 2, (input.shape[1] - 2) % patch == 0 else {
            throw .imageShape(input.shape, expected: expected)
        }
        let (n, values) = (input.shape[0], input.shape[1])
        let capacity = (values - 2) / patch
        guard case .patches(let embedding) = patchEmbedding, let attentionPooling else {
            throw .internalShape(.shapeMismatch(operation: "NaFlex tower without a patch Linear or pooling head", input.shape, []))
        }
        var groups: [Grid: [Int]] = [:]
        for i in 0..<n {
            let (rows, cols) = (input.scalars[i * values], input.scalars[i * values + 1])
            let most = min(capacity, CLIPConfiguration.maximumTokens)
            // Each side checked before the product, which is taken in integers (a Float product rounds above 2²⁴).
            guard rows >= 1, cols >= 1, rows <= Float(most), cols <= Float(most), rows == rows.rounded(),
                  cols == cols.rounded(), Int(rows) * Int(cols) <= most else {
                throw .imageShape(input.shape, expected: expected + "; image \(i) gives a grid of \(rows)×\(cols) patches, not whole rows × columns of at most \(most)")
            }
            groups[Grid(rows: Int(rows), cols: Int(cols)), default: []].append(i)
        }
        var out = Tensor(uncheckedZeros: [n, w])
        do {
            for (grid, images) in groups.sorted(by: { $0.value[0] < $1.value[0] }) {
                let tokens = grid.rows * grid.cols
                let patches = convolutionOrderedPatches(input, images: images, tokens: tokens, patchSize: p)
                let embedded = try embedding(patches)  // [images·tokens, width]
                let positions = resizedPositions(rows: grid.rows, cols: grid.cols)
                var x = Tensor(uncheckedShape: [images.count, tokens, w]) { dst in
                    embedded.scalars.withUnsafeBufferPointer { e in
                        positions.scalars.withUnsafeBufferPointer { pos in
                            for img in 0..<images.count {
                                for i in 0..<(tokens * w) { dst[img * tokens * w + i] = e[img * tokens * w + i] + pos[i] }
                            }
                        }
                    }
                }
                try transformer.forward(&x, causal: false)
                try lnPost.forward(x, into: &x)
                let pooled = try attentionPooling.forward(x)
                for (k, img) in images.enumerated() {
                    out.scalars.replaceSubrange((img * w)..<((img + 1) * w), with: pooled.scalars[(k * w)..<((k + 1) * w)])
                }
            }
        } catch {
            throw .internalShape(error)
        }
        return out
    }

    /// A patch grid's size.
    private struct Grid: Hashable { let rows, cols: Int }

    /// The first `tokens` patch rows of each of `images` in `input`, reordered from (y, x, channel) to the patch
    /// convolution's (channel, y, x) → [images·tokens, 3·p·p].
    private func convolutionOrderedPatches(_ input: Tensor, images: [Int], tokens: Int, patchSize p: Int) -> Tensor {
        let (values, patch, area) = (input.shape[1], 3 * p * p, p * p)
        return Tensor(uncheckedShape: [images.count * tokens, patch]) { dst in
            input.scalars.withUnsafeBufferPointer { src in
                for (k, img) in images.enumerated() {
                    for t in 0..<tokens {
                        let s = src.baseAddress! + img * values + 2 + t * patch
                        let d = dst.baseAddress! + (k * tokens + t) * patch
                        for yx in 0..<area {
                            for c in 0..<3 { d[c * area + yx] = s[yx * 3 + c] }
                        }
                    }
                }
            }
        }
    }

    /// The position table [grid², width] resized to `rows` × `cols` → [rows·cols, width], as transformers' Siglip2
    /// computes `F.interpolate(mode="bilinear", align_corners=False, antialias=True)`, in float32: along each axis
    /// of size s, output i weighs source j by max(0, 1 − |j − c| / support) with c = (i + 0.5)·grid/s − 0.5 and
    /// support = max(grid/s, 1), normalised to sum 1; the two axes' weights multiply.
    func resizedPositions(rows: Int, cols: Int) -> Tensor {
        let (g, w) = (configuration.grid, configuration.width)
        let (rowWeights, colWeights) = (axisWeights(size: rows, grid: g), axisWeights(size: cols, grid: g))
        return Tensor(uncheckedShape: [rows * cols, w]) { dst in
            dst.update(repeating: 0)
            positionalEmbedding.scalars.withUnsafeBufferPointer { table in
                for r in 0..<rows {
                    for c in 0..<cols {
                        let out = dst.baseAddress! + (r * cols + c) * w
                        for a in 0..<g where rowWeights[r * g + a] != 0 {
                            for b in 0..<g where colWeights[c * g + b] != 0 {
                                let weight = rowWeights[r * g + a] * colWeights[c * g + b]
                                let src = table.baseAddress! + (a * g + b) * w
                                for i in 0..<w { out[i] += weight * src[i] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// One axis's antialiased bilinear weights [size, grid] from `grid` source positions to `size` outputs.
    private func axisWeights(size: Int, grid: Int) -> [Float] {
        let scale = Float(grid) / Float(size), support = max(scale, 1)
        var weights = [Float](repeating: 0, count: size * grid)
        for i in 0..<size {
            let center = (Float(i) + 0.5) * scale - 0.5
            var sum: Float = 0
            for j in 0..<grid {
                let v = max(0, 1 - abs(Float(j) - center) / support)
                weights[i * grid + j] = v
                sum += v
            }
            for j in 0..<grid { weights[i * grid + j] /= sum }
        }
        return weights
    }
}
