import Testing
import CLIPTensor
import CCLIPKernels
import Foundation

/// Deterministic pseudo-random values in [-1, 1), so failures reproduce.
typealias SplitMix = SplitMix64

extension SplitMix64 {
    mutating func array(_ n: Int) -> [Float] { signedArray(n) }
}

/// Shapes around every kernel's tile and block sizes (MR 4/6/8/12, NR 8/12/16/32, KC 384, NC 2048).
let gemmShapes: [(Int, Int, Int)] = [
    (1, 1, 1), (3, 5, 7), (12, 32, 384), (13, 33, 385), (50, 50, 64), (77, 64, 300), (9, 40, 1153),
    (25, 3072, 17), (100, 2100, 40), (7, 9, 600), (64, 1, 513), (1, 100, 3),
]

struct GEMMCase: CustomTestStringConvertible, Sendable {
    let kernel: GEMMKernel
    let transA: Bool, transB: Bool
    var testDescription: String { "\(kernel.rawValue) transA=\(transA) transB=\(transB)" }
}

let gemmCases: [GEMMCase] = ([.auto] + GEMMKernel.available).flatMap { k in
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
    #expect(CPU.configurationError == nil)
    #if arch(x86_64)
    if GEMMKernel.avx512.isAvailable { #expect(GEMMKernel.best == .avx512) }
    else if GEMMKernel.avx2.isAvailable { #expect(GEMMKernel.best == .avx2) }
    #expect(!GEMMKernel.neon.isAvailable)
    #elseif arch(arm64)
    #expect(GEMMKernel.best == .neon)
    #endif
    // What the kernels may use is what the hardware has, limited by CLIP_CPU: never more.
    #expect(Set(CPU.features).isSubset(of: Set(CPU.hardwareFeatures)))
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

@Test("Pre-packed SGEMM equals the plain one", arguments: GEMMKernel.available)
func packedMatchesPlain(_ kernel: GEMMKernel) throws {
    var rng = SplitMix(state: 7)
    for (m, n, k) in [(1, 1, 1), (7, 100, 513), (50, 2304, 768), (33, 17, 300), (12, 64, 384), (3, 768, 3072), (2, 512, 49408 % 1000 + 300),
                      (200, 160, 129)] {
        let w = try Tensor(shape: [n, k], scalars: rng.array(n * k))   // a Linear weight [out, in]
        let a = rng.array(m * k)
        let packed = try PackedMatrix(w, transposed: true, kernel: kernel)
        #expect(packed.unpacked().shape == [k, n])
        for accumulate in [false, true] {
            var plain = rng.array(m * n), fast = plain
            a.withUnsafeBufferPointer { ap in
                w.scalars.withUnsafeBufferPointer { wp in
                    plain.withUnsafeMutableBufferPointer { cp in
                        sgemm(transA: false, transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: wp.baseAddress!,
                              ldb: k, beta: accumulate ? 1 : 0, c: cp.baseAddress!, ldc: n, kernel: kernel)
                    }
                }
                fast.withUnsafeMutableBufferPointer { cp in
                    packed.multiply(ap.baseAddress!, rows: m, lda: k, into: cp.baseAddress!, ldc: n, accumulate: accumulate)
                }
            }
            #expect(plain == fast, "m=\(m) n=\(n) k=\(k) accumulate=\(accumulate)")
        }
        // Unpacking gives the weight back exactly.
        let back = packed.unpacked()
        var transposed = [Float](repeating: 0, count: k * n)
        for i in 0..<n { for j in 0..<k { transposed[j * n + i] = w.scalars[i * k + j] } }
        #expect(back.scalars == transposed)
    }
}

@Test func vectorisedExpIsAccurate() {
    var worst: Double = 0
    var x: Float = -87
    while x < 88 {
        let e = Double(clip_exp(x)), r = exp(Double(x))
        worst = max(worst, abs(e - r) / r)
        x += 0.0137
    }
    #expect(worst < 3e-7, "max relative error \(worst)")
}

/// A random A [m, k] and weight W [n, k] (a Linear layer's layout), W packed in `precision`, and C = A·Wᵀ computed
/// by the packed GEMM.
func packedProduct(_ m: Int, _ n: Int, _ k: Int, _ precision: Precision, _ rng: inout SplitMix,
                   kernel: GEMMKernel? = nil) throws -> (a: [Float], w: Tensor, packed: PackedMatrix, c: [Float]) {
    let w = try Tensor(shape: [n, k], scalars: rng.array(n * k))
    let a = rng.array(m * k)
    let packed = try PackedMatrix(w, transposed: true, kernel: kernel, precision: precision)
    var c = [Float](repeating: 0, count: m * n)
    a.withUnsafeBufferPointer { ap in
        c.withUnsafeMutableBufferPointer { cp in packed.multiply(ap.baseAddress!, rows: m, lda: k, into: cp.baseAddress!, ldc: n) }
    }
    return (a, w, packed, c)
}

@Test(.enabled(if: Precision.bf16.isAvailable, "needs AVX512-BF16"))
func bf16GEMMEqualsReferenceOnRoundedInputs() throws {
    var rng = SplitMix(state: 11)
    // (200, 160, 129): enough rows and panels that both threads take rows of their own; k 1601 spans three
    // K blocks of 768 with an odd remainder.
    for (m, n, k) in [(1, 1, 1), (7, 100, 513), (50, 2304, 768), (33, 17, 301), (13, 64, 256), (200, 160, 129),
                      (9, 70, 1601)] {
        let (a, w, packed, c) = try packedProduct(m, n, k, .bf16, &rng)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(clip_bf16_round(a[i * k + p])) * Double(clip_bf16_round(w.scalars[j * k + p])) }
                worst = max(worst, abs(s - Double(c[i * n + j])) / (Double(k).squareRoot() + 1))
            }
        }
        #expect(worst < 1e-5, "m=\(m) n=\(n) k=\(k): \(worst)")
        // Unpacking gives the bf16-rounded weight.
        let back = packed.unpacked()
        #expect(back.scalars[0] == clip_bf16_round(w.scalars[0]))
        #expect(back.scalars[back.count - 1] == clip_bf16_round(w.scalars[w.count - 1]))
    }
}

/// The four operand layouts of `sgemm`, for the bf16 product training uses.
let bf16Layouts: [(transA: Bool, transB: Bool)] = [(false, false), (true, false), (false, true), (true, true)]

@Test("bf16 SGEMM (mixed-precision training's products) equals a double-precision product of the bf16-rounded operands",
      .enabled(if: Precision.bf16.isAvailable, "needs AVX512-BF16"), arguments: bf16Layouts)
func bf16SGEMMEqualsReferenceOnRoundedOperands(transA: Bool, transB: Bool) {
    var rng = SplitMix(state: 17)
    // gemmShapes covers the tiles, K blocks of 768 (with (9, 40, 1153) an odd remainder) and NC; (8320 / 64, 128, 520)
    // and (128, 96, 8320 / 10) are training's shapes scaled down (activations × weights, gradientsᵀ × activations),
    // large enough to be split over the cores.
    // On one thread (parallel: false), (400, 70, 50) takes three row blocks of 192 (A re-packed against the same B
    // panels) and (200, 2100, 9) two column blocks of 2,048, which a split over the cores would not reach.
    let cases = (gemmShapes + [(130, 128, 520), (128, 96, 832)]).map { ($0.0, $0.1, $0.2, true) }
        + [(400, 70, 50, false), (200, 2100, 9, false)]
    for (m, n, k, parallel) in cases {
        for (alpha, beta) in [(Float(1), Float(0)), (Float(0.5), Float(-1.25))] {
            let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
            let a = rng.array((transA ? k : m) * lda), b = rng.array((transB ? n : k) * ldb)
            var c = rng.array(m * ldc)
            let c0 = c
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!, lda: lda,
                              b: bp.baseAddress!, ldb: ldb, beta: beta, c: cp.baseAddress!, ldc: ldc, parallel: parallel,
                              bf16: true)
                    }
                }
            }
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0, magnitude = 0.0
                    for p in 0..<k {
                        let x = Double(clip_bf16_round(transA ? a[p * lda + i] : a[i * lda + p]))
                        let y = Double(clip_bf16_round(transB ? b[j * ldb + p] : b[p * ldb + j]))
                        s += x * y
                        magnitude += abs(x * y)
                    }
                    let expected = Double(alpha) * s + Double(beta) * Double(c0[i * ldc + j])
                    let scale = Double(alpha) * magnitude + abs(Double(beta) * Double(c0[i * ldc + j])) + 1e-30
                    worst = max(worst, abs(expected - Double(c[i * ldc + j])) / scale)
                }
                // The columns past n are not written.
                for j in n..<ldc { #expect(c[i * ldc + j] == c0[i * ldc + j]) }
            }
            // fp32 sums of k products, relative to Σ|x·y|: a few fp32 roundings. Unrounded operands would be off by
            // bf16's 2⁻⁹ (0.2 %), a missing product or K block by far more.
            #expect(worst < 2e-6, "m=\(m) n=\(n) k=\(k) alpha=\(alpha) beta=\(beta): \(worst)")
        }
    }
}

@Test("bf16 SGEMM rounds its operands: the product of values bf16 cannot hold differs from fp32's",
      .enabled(if: Precision.bf16.isAvailable, "needs AVX512-BF16"))
func bf16SGEMMIsNotFP32() {
    // 1 + 2⁻¹⁰ rounds to 1 in bf16 (8 significant bits); 1 · (1 + 2⁻¹⁰) summed over 64 products is 64.0625 in fp32.
    let (m, n, k) = (12, 32, 64)
    let a = [Float](repeating: 1, count: m * k), b = [Float](repeating: 1 + 1.0 / 1024, count: k * n)
    var c32 = [Float](repeating: 0, count: m * n), c16 = c32
    a.withUnsafeBufferPointer { ap in
        b.withUnsafeBufferPointer { bp in
            c32.withUnsafeMutableBufferPointer { cp in
                sgemm(transA: false, transB: false, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                      c: cp.baseAddress!, ldc: n)
            }
            c16.withUnsafeMutableBufferPointer { cp in
                sgemm(transA: false, transB: false, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                      c: cp.baseAddress!, ldc: n, bf16: true)
            }
        }
    }
    #expect(c32.allSatisfy { $0 == 64.0625 })
    #expect(c16.allSatisfy { $0 == 64 })
}

/// Codes and scale as the int8 path quantises a vector: scale max|v|/127, round half to even, clamp to ±127.
func quantised(_ v: [Float]) -> (codes: [Float], scale: Float) {
    let m = v.map(abs).max() ?? 0
    guard m > 0 else { return (v.map { _ in 0 }, 0) }
    let inv = 127 / m
    return (v.map { min(max(($0 * inv).rounded(.toNearestOrEven), -127), 127) }, m / 127)
}

@Test("int8 GEMM equals its quantised product", .enabled(if: Precision.int8.isAvailable, "needs AVX2, AVX512-VNNI or NEON DotProd"),
      arguments: Precision.int8.kernels)
func int8GEMMEqualsItsQuantisedProduct(_ kernel: GEMMKernel) throws {
    var rng = SplitMix(state: 13)
    // (200, 160, 129): enough rows and panels that both threads take rows of their own; odd k around the 2- and
    // 4-code groups.
    for (m, n, k) in [(1, 1, 1), (7, 100, 513), (50, 2304, 768), (33, 17, 301), (13, 64, 256), (200, 160, 129), (5, 30, 2)] {
        let (a, w, packed, c) = try packedProduct(m, n, k, .int8, &rng, kernel: kernel)
        #expect(packed.kernel == kernel)
        let rows = (0..<m).map { quantised(Array(a[($0 * k)..<(($0 + 1) * k)])) }
        let cols = (0..<n).map { quantised(Array(w.scalars[($0 * k)..<(($0 + 1) * k)])) }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(rows[i].codes[p]) * Double(cols[j].codes[p]) }
                let expected = s * Double(rows[i].scale) * Double(cols[j].scale)
                worst = max(worst, abs(expected - Double(c[i * n + j])) / (abs(expected) + 1e-3))
            }
        }
        #expect(worst < 1e-5, "m=\(m) n=\(n) k=\(k): \(worst)")
        // Unpacking dequantises the codes.
        #expect(abs(packed.unpacked().scalars[0] - cols[0].codes[0] * cols[0].scale) < 1e-6)
    }
}

/// Every int8 kernel sums the same integer products and dequantises them the same way: identical outputs.
@Test(.enabled(if: Precision.int8.kernels.count > 1, "one int8 kernel on this CPU"))
func int8KernelsAgreeBitwise() throws {
    for (m, n, k) in [(13, 70, 301), (200, 160, 129)] {
        let outputs = try Precision.int8.kernels.map { kernel in
            var rng = SplitMix(state: 19)
            return try packedProduct(m, n, k, .int8, &rng, kernel: kernel).c
        }
        for (kernel, c) in zip(Precision.int8.kernels.dropFirst(), outputs.dropFirst()) {
            #expect(c == outputs[0], "\(kernel.rawValue) differs from \(Precision.int8.kernels[0].rawValue) at m=\(m) n=\(n) k=\(k)")
        }
    }
}

struct EpilogueCase: CustomTestStringConvertible, Sendable {
    let precision: Precision
    let kernel: GEMMKernel
    let activation: OutputActivation
    var testDescription: String { "\(precision.rawValue) \(kernel.rawValue) \(activation)" }
}

/// Every micro-kernel this CPU has in every precision (each applies the epilogue its own way).
let epilogueCases: [EpilogueCase] = {
    let pairs = Precision.allCases.flatMap { p in p.kernels.map { (p, $0) } }
    return pairs.flatMap { p, k in
        [OutputActivation.none, .quickGELU, .gelu, .relu, .geluTanh].map { EpilogueCase(precision: p, kernel: k, activation: $0) }
    }
}()

/// The fused bias + activation equals separate passes over the output: bitwise for the bias (the same additions),
/// within 2e-7 relative for the activations (the micro-kernels evaluate QuickGELU's exponential in registers with
/// their own instruction sequence). Checked on edge tiles, across K block boundaries (only the last block may apply
/// it) and under both thread splits.
@Test("GEMM epilogue equals separate bias and activation passes", arguments: epilogueCases)
func epilogueEqualsSeparatePasses(_ ec: EpilogueCase) throws {
    var rng = SplitMix(state: 17)
    for (m, n, k) in [(1, 1, 1), (13, 70, 800), (50, 2304, 64), (200, 160, 129), (9, 33, 1601), (4, 5, 0)] {
        let w = try Tensor(shape: [n, k], scalars: rng.array(n * k))
        let a = rng.array(m * k), bias = rng.array(n).map { $0 * 4 }
        let packed = try PackedMatrix(w, transposed: true, kernel: ec.kernel, precision: ec.precision)
        for accumulate in [false, true] {
            var separate = rng.array(m * n), fused = separate
            a.withUnsafeBufferPointer { ap in
                bias.withUnsafeBufferPointer { bp in
                    separate.withUnsafeMutableBufferPointer { cp in
                        let c = cp.baseAddress!
                        packed.multiply(ap.baseAddress!, rows: m, lda: max(k, 1), into: c, ldc: n, accumulate: accumulate)
                        addBiasRows(c, rows: m, width: n, bias: bp.baseAddress!)
                        switch ec.activation {
                        case .none: break
                        case .quickGELU: quickGELUInPlace(c, count: m * n)
                        case .gelu: geluInPlace(c, count: m * n)
                        case .relu: for i in 0..<(m * n) { c[i] = max(c[i], 0) }
                        case .geluTanh: geluTanhInPlace(c, count: m * n)
                        }
                    }
                    fused.withUnsafeMutableBufferPointer { cp in
                        packed.multiply(ap.baseAddress!, rows: m, lda: max(k, 1), into: cp.baseAddress!, ldc: n,
                                        accumulate: accumulate, bias: bp.baseAddress!, activation: ec.activation)
                    }
                }
            }
            let tolerance: Float = ec.activation == .none || ec.activation == .relu ? 0 : 2e-7
            let differing = zip(separate, fused).filter { abs($0.0 - $0.1) > tolerance * max(1, abs($0.0)) }.count
            #expect(differing == 0, "m=\(m) n=\(n) k=\(k) accumulate=\(accumulate): \(differing) of \(m * n) differ")
        }
    }
}
