import Testing
import CLIPLayers
import CLIPTensor

/// The direct attention kernel (AVX-512) and the two-SGEMM path other CPUs take compute the same layer; checked here
/// on a CPU that has both, with odd sizes (head dim 32, 13 causal tokens, 50 tokens) and a bias that is not zero.
@Test("Attention's direct kernel equals the two-SGEMM path", arguments: [(50, false), (13, true), (1, true)])
func directAttentionEqualsSGEMMPath(tokens: Int, causal: Bool) throws {
    try #require(directAttentionAvailable, "no AVX-512F: only the SGEMM path exists on this CPU")
    let (width, heads, batch) = (96, 3, 2)
    var state: UInt64 = 99
    func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
    }
    let reader = ParameterReader(origin: "test") { _, shape in
        Tensor(uncheckedShape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in next() * 0.3 })
    }
    let attention = try MultiheadSelfAttention(reader, "attn", width: width, heads: heads)
    let rows = batch * tokens
    let x = (0..<rows * width).map { _ in next() }
    var outputs: [[Float]] = []
    for direct in [true, false] {
        var qkv = [Float](repeating: 0, count: rows * 3 * width)
        var context = [Float](repeating: 0, count: rows * width)
        var out = [Float](repeating: 0, count: rows * width)
        x.withUnsafeBufferPointer { xp in
            qkv.withUnsafeMutableBufferPointer { qp in
                context.withUnsafeMutableBufferPointer { cp in
                    out.withUnsafeMutableBufferPointer { op in
                        attention.apply(xp.baseAddress!, batch: batch, tokens: tokens, causal: causal,
                                        qkv: qp.baseAddress!, context: cp.baseAddress!, out: op.baseAddress!,
                                        accumulate: false, directAttention: direct)
                    }
                }
            }
        }
        outputs.append(out)
    }
    var err: Float = 0, norm: Float = 0
    for (a, b) in zip(outputs[0], outputs[1]) { err += (a - b) * (a - b); norm += b * b }
    let relative = (err / norm).squareRoot()
    #expect(relative <= 1e-6, "relative error \(relative)")
}
