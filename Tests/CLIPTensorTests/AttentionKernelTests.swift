import Testing
import CLIPTensor
import Foundation

/// softmax(scale · Q·Kᵀ) · V in double precision, from rows of a fused [tokens, 3·width] buffer.
func referenceAttention(_ qkv: [Float], tokens: Int, headDim hd: Int, ld: Int, offset: Int, width w: Int,
                        scale: Float, causal: Bool) -> [Double] {
    var out = [Double](repeating: 0, count: tokens * hd)
    for i in 0..<tokens {
        let valid = causal ? i + 1 : tokens
        var scores = (0..<valid).map { j -> Double in
            var dot = 0.0
            for d in 0..<hd { dot += Double(qkv[i * ld + offset + d]) * Double(qkv[j * ld + w + offset + d]) }
            return dot * Double(scale)
        }
        let top = scores.max() ?? 0
        scores = scores.map { exp($0 - top) }
        let total = scores.reduce(0, +)
        for j in 0..<valid {
            for d in 0..<hd { out[i * hd + d] += scores[j] / total * Double(qkv[j * ld + 2 * w + offset + d]) }
        }
    }
    return out
}

struct AttentionCase: CustomTestStringConvertible, Sendable {
    let tokens: Int, headDim: Int, heads: Int, causal: Bool
    var testDescription: String { "tokens \(tokens) head dim \(headDim) × \(heads)\(causal ? " causal" : "")" }
}

/// Every attention kernel this CPU has (each instruction set has one; `CLIP_CPU` limits which run here).

/// Token counts around the 6-row tiles and 4-, 8- and 16-lane vectors (1, 5, 17, 50 = ViT-B/32, 77 = text, 197 =
/// ViT-B/16) and head sizes that are and are not whole vectors (the last vector of a row is masked or padded).
let attentionCases: [AttentionCase] = [
    AttentionCase(tokens: 1, headDim: 64, heads: 2, causal: false),
    AttentionCase(tokens: 5, headDim: 8, heads: 3, causal: true),
    AttentionCase(tokens: 17, headDim: 24, heads: 2, causal: false),
    AttentionCase(tokens: 50, headDim: 64, heads: 3, causal: false),
    AttentionCase(tokens: 50, headDim: 32, heads: 2, causal: true),
    AttentionCase(tokens: 77, headDim: 64, heads: 2, causal: true),
    AttentionCase(tokens: 197, headDim: 80, heads: 2, causal: false),
    AttentionCase(tokens: 70, headDim: 72, heads: 1, causal: true),
]

@Test("Attention kernel equals a double-precision reference", arguments: GEMMKernel.available, attentionCases)
func attentionKernelMatchesReference(_ kernel: GEMMKernel, _ ac: AttentionCase) throws {
    var rng = SplitMix(state: UInt64(ac.tokens * 1000 + ac.headDim))
    let w = ac.headDim * ac.heads, ld = 3 * w
    // Large enough logits that the softmax is far from uniform.
    let qkv = rng.array(ac.tokens * ld).map { $0 * 3 }
    // Sentinels around the output catch a store outside a head's columns.
    var out = [Float](repeating: .nan, count: ac.tokens * w + 16)
    for h in 0..<ac.heads {
        let ok = qkv.withUnsafeBufferPointer { qp in
            out.withUnsafeMutableBufferPointer { op in
                let q = qp.baseAddress! + h * ac.headDim
                return attentionHead(tokens: ac.tokens, headDim: ac.headDim, scale: 1 / Float(ac.headDim).squareRoot(),
                                     causal: ac.causal, q: q, k: q + w, v: q + 2 * w, ld: ld,
                                     out: op.baseAddress! + h * ac.headDim, ldo: w, kernel: kernel)
            }
        }
        #expect(ok)
    }
    for h in 0..<ac.heads {
        let ref = referenceAttention(qkv, tokens: ac.tokens, headDim: ac.headDim, ld: ld, offset: h * ac.headDim,
                                     width: w, scale: 1 / Float(ac.headDim).squareRoot(), causal: ac.causal)
        var err = 0.0, norm = 0.0
        for i in 0..<ac.tokens {
            for d in 0..<ac.headDim {
                let diff = Double(out[i * w + h * ac.headDim + d]) - ref[i * ac.headDim + d]
                err += diff * diff
                norm += ref[i * ac.headDim + d] * ref[i * ac.headDim + d]
            }
        }
        let relative = (err / norm).squareRoot()
        #expect(relative <= 1e-6, "head \(h): relative error \(relative)")
    }
    let untouched = out[(ac.tokens * w)...].allSatisfy { $0.isNaN }
    #expect(untouched)
}

@Test("Attention refuses invalid arguments and kernels this CPU lacks")
func attentionRefusesInvalidArguments() {
    var buffer = [Float](repeating: 1, count: 64)
    buffer.withUnsafeMutableBufferPointer { p in
        let b = p.baseAddress!
        // ld shorter than a head: rows would overlap.
        #expect(!attentionHead(tokens: 2, headDim: 8, scale: 1, causal: false, q: b, k: b, v: b, ld: 4, out: b, ldo: 8))
        #expect(!attentionHead(tokens: -1, headDim: 8, scale: 1, causal: false, q: b, k: b, v: b, ld: 8, out: b, ldo: 8))
        for kernel in GEMMKernel.allCases where !kernel.isAvailable {
            #expect(!attentionHead(tokens: 2, headDim: 8, scale: 1, causal: false, q: b, k: b, v: b, ld: 8, out: b, ldo: 8,
                                   kernel: kernel))
        }
    }
}
