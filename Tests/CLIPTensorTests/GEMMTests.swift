import Testing
import CLIPTensor

/// Deterministic pseudo-random values in [-1, 1), so failures reproduce.
struct SplitMix {
    var state: UInt64
    mutating func next() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 24) * 2 - 1
    }
    mutating func array(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

/// Shapes around every kernel's tile and block sizes (MR 4/6/12, NR 8/16/32, KC 256, NC 2048).
let gemmShapes: [(Int, Int, Int)] = [
    (1, 1, 1), (3, 5, 7), (12, 32, 256), (13, 33, 257), (50, 50, 64), (77, 64, 300),
    (25, 3072, 17), (100, 2100, 40), (7, 9, 600), (64, 1, 513), (1, 100, 3),
]

struct GEMMCase: CustomTestStringConvertible, Sendable {
    let kernel: GEMMKernel
    let transA: Bool, transB: Bool
    var testDescription: String { "\(kernel.rawValue) transA=\(transA) transB=\(transB)" }
}

let gemmCases: [GEMMCase] = GEMMKernel.allCases.filter(\.isAvailable).flatMap { k in
    [false, true].flatMap { ta in [false, true].map { tb in GEMMCase(kernel: k, transA: ta, transB: tb) } }
}

@Test("SGEMM equals a double-precision reference", arguments: gemmCases)
func sgemmMatchesReference(_ gc: GEMMCase) {
    var rng = SplitMix(state: 42)
    for (m, n, k) in gemmShapes {
        for (alpha, beta) in [(Float(1), Float(0)), (Float(0.5), Float(-1.25))] {
            // Leading dimensions larger than the logical width check that strides are honoured.
            let lda = (gc.transA ? m : k) + 3, ldb = (gc.transB ? k : n) + 5, ldc = n + 2
            let a = rng.array((gc.transA ? k : m) * lda)
            let b = rng.array((gc.transB ? n : k) * ldb)
            var c = rng.array(m * ldc)
            let c0 = c
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        sgemm(transA: gc.transA, transB: gc.transB, m: m, n: n, k: k, alpha: alpha,
                              a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb, beta: beta,
                              c: cp.baseAddress!, ldc: ldc, kernel: gc.kernel)
                    }
                }
            }
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for p in 0..<k {
                        let av = gc.transA ? a[p * lda + i] : a[i * lda + p]
                        let bv = gc.transB ? b[j * ldb + p] : b[p * ldb + j]
                        s += Double(av) * Double(bv)
                    }
                    let ref = Double(alpha) * s + Double(beta) * Double(c0[i * ldc + j])
                    worst = max(worst, abs(ref - Double(c[i * ldc + j])) / (Double(k).squareRoot() + 1))
                }
                // Padding columns past n must be untouched.
                for j in n..<ldc { #expect(c[i * ldc + j] == c0[i * ldc + j]) }
            }
            #expect(worst < 1e-5, "m=\(m) n=\(n) k=\(k) alpha=\(alpha) beta=\(beta): error \(worst)")
        }
    }
}

@Test func autoKernelIsTheBestAvailable() {
    #expect(GEMMKernel.best.isAvailable)
    #expect(GEMMKernel.portable.isAvailable)
    #if arch(x86_64)
    if GEMMKernel.avx512.isAvailable { #expect(GEMMKernel.best == .avx512) }
    #endif
}

@Test func betaZeroIgnoresNaNInOutput() {
    let a: [Float] = [1, 2, 3, 4], b: [Float] = [1, 0, 0, 1]
    var c = [Float](repeating: .nan, count: 4)
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            c.withUnsafeMutableBufferPointer { cp in
                sgemm(transA: false, transB: false, m: 2, n: 2, k: 2, a: ap.baseAddress!, lda: 2,
                      b: bp.baseAddress!, ldb: 2, c: cp.baseAddress!, ldc: 2)
            }
        }
    }
    #expect(c == [1, 2, 3, 4])
}
