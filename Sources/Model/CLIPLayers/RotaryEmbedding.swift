#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// Axial 2-D rotary position embedding over a square patch grid, as timm's `RotaryEmbeddingCat` builds it for EVA02
/// and PE-Core (`in_pixels=False`, `ref_feat_shape`, interleaved pairs): of each head's `headDim` channels the first
/// half turns by the patch's row (its column with `columnsFirst`, timm's `grid_indexing='xy'`), the second by the
/// other coordinate, at headDim/4 frequencies 1/temperature^(j/(headDim/4)), each angle used by one interleaved pair.
/// Positions are offset (`grid_offset`) and scaled to a reference grid (`(i + offset) / grid · referenceGrid`), which
/// is how EVA02 keeps the angles it was trained with at another resolution. Prefix tokens (the class token) are not
/// turned.
package struct RotaryEmbedding: Sendable {
    /// Sine and cosine of each patch's angles: [grid², headDim] each.
    let sines: [Float]
    let cosines: [Float]
    /// Channels per head; a multiple of 4.
    package let headDim: Int
    /// Tokens before the patches that keep their values (1: the class token).
    package let prefixTokens: Int
    /// Patches per side.
    package let grid: Int

    /// The angles of a `grid` × `grid` patch grid. The arithmetic is timm's, in fp32 up to the sine and cosine, so
    /// the tables equal the buffers timm computes (to one rounding of sin/cos).
    package init(grid: Int, headDim: Int, referenceGrid: Int, offset: Float = 0, columnsFirst: Bool = false,
                 prefixTokens: Int = 1, temperature: Float = 10_000) {
        let bands = headDim / 4
        let frequencies = (0..<bands).map { j in 1 / Float(pow(Double(temperature), Double(Float(j) / Float(bands)))) }
        let positions = (0..<grid).map { (Float($0) + offset) / Float(grid) * Float(referenceGrid) }
        var sines = [Float](repeating: 0, count: grid * grid * headDim)
        var cosines = sines
        for y in 0..<grid {
            for x in 0..<grid {
                let row = (y * grid + x) * headDim
                for d in 0..<headDim {
                    // Channel d: axis d / (headDim/2) (row, then column, or the reverse), frequency (d % (headDim/2)) / 2.
                    let axis = d / (2 * bands), band = (d % (2 * bands)) / 2
                    let byRow = (axis == 0) != columnsFirst
                    let angle = Double((byRow ? positions[y] : positions[x]) * frequencies[band])
                    sines[row + d] = Float(sin(angle))
                    cosines[row + d] = Float(cos(angle))
                }
            }
        }
        (self.sines, self.cosines, self.headDim, self.prefixTokens, self.grid) = (sines, cosines, headDim, prefixTokens, grid)
    }

    /// Turns the queries and keys of fused projection rows in place: `qkv` [batch, tokens, 3·width] holds each
    /// token's q, k, v, each `width` = heads·headDim wide; tokens after the prefix are the grid's patches in row
    /// order.
    package func apply(to qkv: inout Tensor, width: Int) throws(TensorError) {
        let patches = grid * grid
        guard qkv.rank == 3, qkv.shape[2] == 3 * width, qkv.shape[1] == prefixTokens + patches,
              headDim > 0, width % headDim == 0 else {
            throw .shapeMismatch(operation: "RotaryEmbedding", qkv.shape, [prefixTokens + patches, 3 * width])
        }
        let (batch, tokens, hd) = (qkv.shape[0], qkv.shape[1], headDim)
        let rows = batch * patches
        qkv.scalars.withUnsafeMutableBufferPointer { qp in
            sines.withUnsafeBufferPointer { sp in
                cosines.withUnsafeBufferPointer { cp in
                    let (base, s, c) = (qp.baseAddress!, sp.baseAddress!, cp.baseAddress!)
                    let bounds = chunkBounds(total: rows, parts: rows * width >= 1 << 14 ? availableCores : 1, granule: 1)
                    parallelFor(bounds.count - 1) { t in
                        for r in bounds[t]..<bounds[t + 1] {
                            let (image, patch) = (r / patches, r % patches)
                            let row = base + (image * tokens + prefixTokens + patch) * 3 * width
                            // Queries and keys are adjacent: one pass over 2·width values, head by head.
                            for h in 0..<(2 * width / hd) {
                                rotateInterleaved(row + h * hd, count: hd, sin: s + patch * hd, cos: c + patch * hd)
                            }
                        }
                    }
                }
            }
        }
    }
}
