import CCLIPKernels

/// The GEMM micro-kernels, one per instruction set (each also has an attention kernel, and the SIMD ones an int8
/// GEMM). `auto` resolves to the fastest one `CPU` allows; the others exist so that tests and benchmarks can run
/// every kernel this CPU has.
package enum GEMMKernel: String, Sendable, CaseIterable {
    case auto, portable, avx2, avx512, neon

    var code: Int32 {
        switch self {
        case .auto: return Int32(CLIP_GEMM_AUTO.rawValue)
        case .portable: return Int32(CLIP_GEMM_PORTABLE.rawValue)
        case .avx2: return Int32(CLIP_GEMM_AVX2.rawValue)
        case .avx512: return Int32(CLIP_GEMM_AVX512.rawValue)
        case .neon: return Int32(CLIP_GEMM_NEON.rawValue)
        }
    }

    init?(code: Int32) {
        guard let kernel = GEMMKernel.allCases.first(where: { $0.code == code }) else { return nil }
        self = kernel
    }

    /// Whether this CPU (as `CPU` allows) can run the kernel.
    package var isAvailable: Bool { clip_gemm_kernel_available(code) != 0 }

    /// The kernels this CPU can run, `auto` excluded.
    package static var available: [GEMMKernel] { allCases.filter { $0 != .auto && $0.isAvailable } }

    /// The kernel `auto` picks on this CPU.
    package static var best: GEMMKernel { GEMMKernel(code: clip_gemm_best_kernel()) ?? .portable }
}

/// Below this many multiply-adds a GEMM runs on the calling thread: splitting costs more than it saves.
@usableFromInline let parallelGEMMThreshold = 1 << 18

/// Row-major C[m,n] = alpha · op(A)[m,k] · op(B)[k,n] + beta · C, for products of activations with each other (layer
/// weights go through `PackedMatrix`).
///
/// `op(A)` is A, stored `[m, lda]`, or Aᵀ with A stored `[k, lda]` when `transA`; likewise B. With
/// `parallel`, large products are split over the available cores by columns (or rows when narrow). With `bf16`
/// both operands are rounded to bfloat16 as they are packed and the sums stay fp32 (AVX512-BF16; the caller checks
/// `Precision.bf16.isAvailable`): mixed-precision training's products, as PyTorch's autocast computes them.
/// All sizes must be consistent with the buffers; callers derive them from validated tensor shapes.
package func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    kernel: GEMMKernel = .auto, parallel: Bool = true, bf16: Bool = false
) {
    let ta: Int32 = transA ? 1 : 0, tb: Int32 = transB ? 1 : 0
    let threads = parallel && m * n * k >= parallelGEMMThreshold ? availableCores : 1
    func product(_ m: Int, _ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        let rc = bf16 ? clip_sgemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
                      : clip_sgemm(kernel.code, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        assert(rc == 0, "the GEMM rejected its arguments")
    }
    if threads == 1 {
        product(m, n, a, b, c)
        return
    }
    // Split the output along its longer side so each worker packs only its share of the bigger operand.
    if n >= m {
        let bounds = chunkBounds(total: n, parts: threads, granule: 32)
        parallelFor(bounds.count - 1) { t in
            let j0 = bounds[t], j1 = bounds[t + 1]
            guard j1 > j0 else { return }
            product(m, j1 - j0, a, b + (transB ? j0 * ldb : j0), c + j0)
        }
    } else {
        let bounds = chunkBounds(total: m, parts: threads, granule: 12)
        parallelFor(bounds.count - 1) { t in
            let i0 = bounds[t], i1 = bounds[t + 1]
            guard i1 > i0 else { return }
            product(i1 - i0, n, a + (transA ? i0 : i0 * lda), b, c + i0 * ldc)
        }
    }
}

/// Matrix product of the last two dimensions: `a` [.., m, k] · `b` [k, n] (or `b`ᵀ with `b` [n, k] when
/// `transposeB`) → [.., m, n]. Leading dimensions of `a` are folded into m.
package func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool = false) throws(TensorError) -> Tensor {
    guard a.rank >= 2, b.rank == 2 else { throw .shapeMismatch(operation: "matmul", a.shape, b.shape) }
    let k = a.shape[a.rank - 1]
    let m = a.count / max(k, 1)
    let (bk, n) = transposeB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
    guard bk == k else { throw .shapeMismatch(operation: "matmul", a.shape, b.shape) }
    var outShape = a.shape
    outShape[outShape.count - 1] = n
    var out = Tensor(uncheckedZeros: outShape)
    if k == 0 && m > 0 { return out }
    a.scalars.withUnsafeBufferPointer { ap in
        b.scalars.withUnsafeBufferPointer { bp in
            out.scalars.withUnsafeMutableBufferPointer { cp in
                guard let aBase = ap.baseAddress, let bBase = bp.baseAddress, let cBase = cp.baseAddress else { return }
                sgemm(transA: false, transB: transposeB, m: m, n: n, k: k, a: aBase, lda: k,
                      b: bBase, ldb: b.shape[1], c: cBase, ldc: n)
            }
        }
    }
    return out
}

/// Arithmetic of the matrix products with layer weights. `bf16` (opt-in) stores weights as bfloat16 and rounds
/// activations to bfloat16 before each product, accumulating in fp32 (AVX512-BF16). `int8` (opt-in) quantises
/// weights per output channel and activations per row dynamically, with exact int32 sums (AVX512-VNNI, AVX2, or NEON
/// with DotProd; every one gives the same numbers).
public enum Precision: String, Sendable, CaseIterable {
    case fp32, bf16, int8

    /// Whether this CPU can compute in this precision.
    public var isAvailable: Bool { !kernels.isEmpty }

    /// The kernels that compute in this precision here, fastest first.
    package var kernels: [GEMMKernel] {
        switch self {
        case .fp32: return [GEMMKernel.best] + GEMMKernel.available.filter { $0 != GEMMKernel.best }.reversed()
        case .bf16: return clip_bf16_available() != 0 ? [.avx512] : []
        case .int8:
            guard let best = GEMMKernel(code: clip_int8_best_kernel()) else { return [] }
            return [best] + GEMMKernel.available.filter { $0 != best && clip_int8_kernel_available($0.code) != 0 }
        }
    }

    /// The instruction-set extensions a reduced precision needs (one of them).
    public var requirement: String {
        switch self {
        case .fp32: return "none"
        case .bf16: return "AVX512-BF16"
        case .int8: return "AVX2, AVX512-VNNI or NEON DotProd"
        }
    }
}

/// An element-wise function a packed product applies to each output tile as it finishes (after the bias), so the
/// activation costs no separate pass over the output.
package enum OutputActivation: Sendable {
    case none
    /// x·σ(1.702x), OpenAI CLIP's MLP activation.
    case quickGELU
    /// x·Φ(x) with the exact error function.
    case gelu
    /// max(x, 0).
    case relu
    /// GELU's tanh approximation (PyTorch's `approximate='tanh'`, SigLIP's `gelu_pytorch_tanh`).
    case geluTanh

    var code: Int32 {
        switch self {
        case .none: return Int32(CLIP_ACTIVATION_NONE.rawValue)
        case .quickGELU: return Int32(CLIP_ACTIVATION_QUICK_GELU.rawValue)
        case .gelu: return Int32(CLIP_ACTIVATION_GELU.rawValue)
        case .relu: return Int32(CLIP_ACTIVATION_RELU.rawValue)
        case .geluTanh: return Int32(CLIP_ACTIVATION_GELU_TANH.rawValue)
        }
    }
}

/// A right-hand matrix B [k, n] packed once into a GEMM kernel's panel layout, for repeated products A·B (a layer's
/// weights): no per-call packing, and the only copy of the weights kept in memory.
package struct PackedMatrix: Sendable {
    /// Rows of B (the inner dimension of A·B).
    package let k: Int
    /// Columns of B.
    package let n: Int
    /// The kernel whose layout `storage` has (and that multiplies with it).
    package let kernel: GEMMKernel
    let storage: Storage
    /// Column-panel width of the layout: the granule for splitting columns between threads.
    let panel: Int

    /// The name a packed-weight cache knows this matrix by (the checkpoint tensor it was packed from), kept through
    /// `converted(to:)`; nil for matrices packed outside a model load.
    package var name: String?

    enum Storage: Sendable {
        case fp32(Elements<Float>)
        case bf16(Elements<UInt16>)
        /// Codes in the kernel's layout (`group` consecutive k per column side by side), per-column scales and sums.
        case int8(codes: Elements<Int8>, scales: Elements<Float>, sums: Elements<Int32>, group: Int)
    }

    /// The arithmetic the packed values are multiplied in.
    package var precision: Precision {
        switch storage {
        case .fp32: return .fp32
        case .bf16: return .bf16
        case .int8: return .int8
        }
    }

    /// Packs B [k, n], or Bᵀ when `transposed` (then `b` is [n, k], as a Linear layer's [out, in] weight), for
    /// `kernel` (default: the fastest one for `precision` on this CPU).
    package init(_ b: Tensor, transposed: Bool, kernel: GEMMKernel? = nil, precision: Precision = .fp32) throws(TensorError) {
        guard b.rank == 2 else { throw .shapeMismatch(operation: "PackedMatrix", b.shape, []) }
        guard let chosen = kernel ?? precision.kernels.first else {
            throw .gemmKernelUnavailable("\(precision.rawValue) (needs \(precision.requirement))")
        }
        guard chosen != .auto, precision.kernels.contains(chosen) else {
            throw .gemmKernelUnavailable(precision == .fp32 ? chosen.rawValue : "\(chosen.rawValue) \(precision.rawValue)")
        }
        let (k, n) = transposed ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        let trans: Int32 = transposed ? 1 : 0, ldb = b.shape[1], code = chosen.code
        let storage: Storage = b.scalars.withUnsafeBufferPointer { bp in
            let src = bp.baseAddress ?? UnsafePointer(bitPattern: 64)!  // an empty matrix packs nothing
            switch precision {
            case .fp32:
                let count = max(Int(clip_packed_b_count(code, k, n)), 0)
                return .fp32(Elements([Float](unsafeUninitializedCapacity: count) { buf, initialized in
                    _ = clip_pack_b(code, trans, k, n, src, ldb, buf.baseAddress!)
                    initialized = count
                }))
            case .bf16:
                let count = max(Int(clip_packed_b_bf16_count(k, n)), 0)
                return .bf16(Elements([UInt16](unsafeUninitializedCapacity: count) { buf, initialized in
                    _ = clip_pack_b_bf16(trans, k, n, src, ldb, buf.baseAddress!)
                    initialized = count
                }))
            case .int8:
                var codes = [Int8](repeating: 0, count: max(Int(clip_packed_b_int8_bytes(code, k, n)), 0))
                let columns = max(Int(clip_packed_b_int8_columns(code, n)), 0)
                var scales = [Float](repeating: 0, count: columns)
                var sums = [Int32](repeating: 0, count: columns)
                codes.withUnsafeMutableBufferPointer { cp in
                    scales.withUnsafeMutableBufferPointer { sp in
                        sums.withUnsafeMutableBufferPointer { up in
                            _ = clip_pack_b_int8(code, trans, k, n, src, ldb, cp.baseAddress!, sp.baseAddress!,
                                                 up.baseAddress!)
                        }
                    }
                }
                return .int8(codes: Elements(codes), scales: Elements(scales), sums: Elements(sums),
                             group: Int(clip_int8_group(code)))
            }
        }
        self.k = k
        self.n = n
        self.kernel = chosen
        self.storage = storage
        switch precision {
        case .fp32: panel = Int(clip_gemm_panel_width(code))
        case .bf16: panel = Int(clip_bf16_panel_width())
        case .int8: panel = Int(clip_int8_panel_width(code))
        }
    }

    /// One column range [j0, j1) (or all of it) of C = A·B over rows `m`, then the epilogue on those columns.
    private func run(_ m: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ j0: Int, _ j1: Int, _ beta: Float,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ epilogue: UnsafePointer<clip_epilogue>?) {
        switch storage {
        case .fp32(let data):
            data.withUnsafeBufferPointer { dp in
                _ = clip_sgemm_packed(kernel.code, 0, m, n, k, 1, a, lda, dp.baseAddress!, j0, j1, beta, c, ldc, epilogue)
            }
        case .bf16(let halves):
            halves.withUnsafeBufferPointer { hp in
                _ = clip_sgemm_packed_bf16(m, n, k, a, lda, hp.baseAddress!, j0, j1, beta, c, ldc, epilogue)
            }
        case .int8(let codes, let scales, let sums, _):
            codes.withUnsafeBufferPointer { cp in
                scales.withUnsafeBufferPointer { sp in
                    sums.withUnsafeBufferPointer { up in
                        _ = clip_gemm_packed_int8(kernel.code, m, n, k, a, lda, cp.baseAddress!, sp.baseAddress!,
                                                  up.baseAddress!, j0, j1, beta, c, ldc, epilogue)
                    }
                }
            }
        }
    }

    /// `c` [.., n] (+)= `a` [.., k] · B, then `bias` [n] and `activation` on each finished tile; the leading
    /// dimensions of `a` are rows, and `c` must hold rows × n elements (its shape is kept). Work is split over the
    /// cores by columns or rows.
    package func multiply(_ a: Tensor, into c: inout Tensor, accumulate: Bool = false, bias: Tensor? = nil,
                         activation: OutputActivation = .none) throws(TensorError) {
        let rows = k == 0 ? 0 : a.count / k
        guard a.rank >= 1, a.shape[a.rank - 1] == k, c.count == rows * n, bias.map({ $0.count == n }) ?? true else {
            throw .shapeMismatch(operation: "PackedMatrix.multiply", a.shape, [k, n])
        }
        guard rows > 0 else { return }
        a.scalars.withUnsafeBufferPointer { ap in
            c.scalars.withUnsafeMutableBufferPointer { cp in
                bias.withUnsafeElements { bp in
                    multiply(ap.baseAddress!, rows: rows, lda: k, into: cp.baseAddress!, ldc: n, accumulate: accumulate,
                             bias: bp, activation: activation)
                }
            }
        }
    }

    /// C [m, n] (+)= A [m, k] · B, A with leading dimension `lda`, C with `ldc`; then, on each finished tile,
    /// C += `bias` [n] (when given) and `activation`. Work is split over the cores by columns or rows.
    package func multiply(_ a: UnsafePointer<Float>, rows m: Int, lda: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                         accumulate: Bool = false, bias: UnsafePointer<Float>? = nil,
                         activation: OutputActivation = .none, parallel: Bool = true) {
        guard m > 0, n > 0 else { return }
        var ep = clip_epilogue(bias: bias, activation: activation.code)
        let hasEpilogue = bias != nil || activation != .none
        withUnsafePointer(to: &ep) { epp in
            let epilogue = hasEpilogue ? epp : nil
            let beta: Float = accumulate ? 1 : 0
            let threads = parallel && m * n * k >= parallelGEMMThreshold ? availableCores : 1
            let panels = (n + panel - 1) / panel
            if threads > 1 && (panels < 2 * threads || m >= 64 * threads) {
                // Too few column panels to share (narrow convolutions), or enough rows for each thread to keep its
                // tiles full: then a row split packs (or converts, or quantises) each activation row once, where a
                // column split would repeat that in every thread.
                let bounds = chunkBounds(total: m, parts: threads, granule: 16)
                parallelFor(bounds.count - 1) { t in
                    let (i0, i1) = (bounds[t], bounds[t + 1])
                    guard i1 > i0 else { return }
                    run(i1 - i0, a + i0 * lda, lda, 0, n, beta, c + i0 * ldc, ldc, epilogue)
                }
                return
            }
            let bounds = chunkBounds(total: n, parts: threads, granule: panel)
            parallelFor(bounds.count - 1) { t in
                let (j0, j1) = (bounds[t], bounds[t + 1])
                guard j1 > j0 else { return }
                run(m, a, lda, j0, j1, beta, c, ldc, epilogue)
            }
        }
    }

    /// A convolution without an im2col buffer: C [outHeight·outWidth, n] = im2col(image) · B, then `bias` [n] and
    /// `activation`, for one channels-last image [height, width, channels] and B [kernel²·channels, n] in patch order
    /// (y, x, channel). Rows are split over the cores when `parallel`. Returns false (C untouched) when this matrix is
    /// not fp32 or its k is not kernel²·channels; the caller then builds the im2col rows itself.
    package func convolve(image: UnsafePointer<Float>, height: Int, width: Int, channels: Int, kernel: Int, stride: Int,
                         padding: Int, outHeight: Int, outWidth: Int, into c: UnsafeMutablePointer<Float>,
                         bias: UnsafePointer<Float>? = nil, activation: OutputActivation = .none,
                         parallel: Bool = true) -> Bool {
        guard case .fp32(let data) = storage, kernel * kernel * channels == k, outHeight > 0, outWidth > 0 else {
            return false
        }
        var geometry = clip_conv_geometry(image: image, height: height, width: width, channels: channels,
                                          kernel: kernel, stride: stride, padding: padding, out_height: outHeight,
                                          out_width: outWidth, first_pixel: 0)
        var ep = clip_epilogue(bias: bias, activation: activation.code)
        let hasEpilogue = bias != nil || activation != .none
        let rows = outHeight * outWidth
        let threads = parallel && rows * n * k >= parallelGEMMThreshold ? availableCores : 1
        let bounds = chunkBounds(total: rows, parts: threads, granule: 16)
        var results = [Int32](repeating: 0, count: max(bounds.count - 1, 0))
        let kernelCode = self.kernel.code
        results.withUnsafeMutableBufferPointer { rp in
            withUnsafePointer(to: &geometry) { g in
                withUnsafePointer(to: &ep) { epp in
                    data.withUnsafeBufferPointer { dp in
                        parallelFor(bounds.count - 1) { t in
                            let (r0, r1) = (bounds[t], bounds[t + 1])
                            guard r1 > r0 else { return }
                            rp[t] = clip_conv_packed(kernelCode, g, r0, r1 - r0, n, dp.baseAddress!, 0, n, c + r0 * n,
                                                     n, hasEpilogue ? epp : nil)
                        }
                    }
                }
            }
        }
        return results.allSatisfy { $0 == 0 }
    }

    /// The same matrix packed for `precision` (and `kernel`, default the fastest for it), from its values here: exact
    /// from fp32; from bf16 or int8 the already-rounded values are packed again.
    package func converted(to precision: Precision, kernel: GEMMKernel? = nil) throws(TensorError) -> PackedMatrix {
        if precision == self.precision && (kernel == nil || kernel == self.kernel) { return self }
        var converted = try PackedMatrix(unpacked(), transposed: false, kernel: kernel, precision: precision)
        converted.name = name
        return converted
    }

    /// B [k, n] rebuilt from the packed panels (bf16 values widened, int8 codes dequantised).
    package func unpacked() -> Tensor {
        let kc = Int(clip_gemm_block_k())
        let npad = (n + panel - 1) / panel * panel
        var out = [Float](repeating: 0, count: k * n)
        // One pass per storage kind, so the element loop holds no switch.
        func each(_ value: (_ p: Int, _ j: Int, _ pc: Int, _ blockK: Int) -> Float) {
            for p in 0..<k {
                let pc = p / kc * kc
                let blockK = min(kc, k - pc)
                for j in 0..<n { out[p * n + j] = value(p, j, pc, blockK) }
            }
        }
        switch storage {
        case .fp32(let data):
            data.withUnsafeBufferPointer { d in
                each { p, j, pc, blockK in d[pc * npad + (j / panel) * blockK * panel + (p - pc) * panel + j % panel] }
            }
        case .bf16(let halves):
            halves.withUnsafeBufferPointer { h in
                each { p, j, pc, blockK in
                    let blockK2 = (blockK + 1) / 2 * 2, q = p - pc
                    let half = h[pc * npad + (j / panel) * blockK2 * panel + (q / 2) * panel * 2 + (j % panel) * 2 + q % 2]
                    return Float(bitPattern: UInt32(half) << 16)
                }
            }
        case .int8(let codes, let scales, _, let g):
            let kg = (k + g - 1) / g * g
            codes.withUnsafeBufferPointer { c in
                scales.withUnsafeBufferPointer { s in
                    each { p, j, _, _ in Float(c[(j / panel) * kg * panel + (p / g) * panel * g + (j % panel) * g + p % g]) * s[j] }
                }
            }
        }
        return Tensor(uncheckedShape: [k, n], scalars: out)
    }
}
