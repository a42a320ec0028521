import CCLIPKernels

/// The SGEMM micro-kernels. `auto` resolves to the fastest one the CPU supports; the others exist so that
/// tests can check every kernel this CPU can run against a plain reference.
public enum GEMMKernel: String, Sendable, CaseIterable {
    case auto, portable, avx2, avx512

    var code: Int32 {
        switch self {
        case .auto: return Int32(CLIP_GEMM_AUTO.rawValue)
        case .portable: return Int32(CLIP_GEMM_PORTABLE.rawValue)
        case .avx2: return Int32(CLIP_GEMM_AVX2.rawValue)
        case .avx512: return Int32(CLIP_GEMM_AVX512.rawValue)
        }
    }

    /// Whether this CPU can run the kernel.
    public var isAvailable: Bool { clip_gemm_kernel_available(code) != 0 }

    /// The kernel `auto` picks on this CPU.
    public static var best: GEMMKernel {
        switch Int(clip_gemm_best_kernel()) {
        case Int(CLIP_GEMM_AVX512.rawValue): return .avx512
        case Int(CLIP_GEMM_AVX2.rawValue): return .avx2
        default: return .portable
        }
    }
}

/// Below this many multiply-adds a GEMM runs on the calling thread: splitting costs more than it saves.
@usableFromInline let parallelGEMMThreshold = 1 << 18

/// Row-major C[m,n] = alpha · op(A)[m,k] · op(B)[k,n] + beta · C, the one matrix-product path every layer uses.
///
/// `op(A)` is A, stored `[m, lda]`, or Aᵀ with A stored `[k, lda]` when `transA`; likewise B. With
/// `parallel`, large products are split over the available cores by columns (or rows when narrow).
/// All sizes must be consistent with the buffers; callers derive them from validated tensor shapes.
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
    kernel: GEMMKernel = .auto, parallel: Bool = true
) {
    let ta: Int32 = transA ? 1 : 0, tb: Int32 = transB ? 1 : 0
    let threads = parallel && m * n * k >= parallelGEMMThreshold ? availableCores : 1
    if threads == 1 {
        let rc = clip_sgemm(kernel.code, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        assert(rc == 0, "clip_sgemm rejected its arguments")
        return
    }
    // Split the output along its longer side so each worker packs only its share of the bigger operand.
    if n >= m {
        let bounds = chunkBounds(total: n, parts: threads, granule: 32)
        parallelFor(bounds.count - 1) { t in
            let j0 = bounds[t], j1 = bounds[t + 1]
            guard j1 > j0 else { return }
            let bOff = transB ? j0 * ldb : j0
            _ = clip_sgemm(kernel.code, ta, tb, m, j1 - j0, k, alpha, a, lda, b + bOff, ldb, beta, c + j0, ldc)
        }
    } else {
        let bounds = chunkBounds(total: m, parts: threads, granule: 12)
        parallelFor(bounds.count - 1) { t in
            let i0 = bounds[t], i1 = bounds[t + 1]
            guard i1 > i0 else { return }
            let aOff = transA ? i0 : i0 * lda
            _ = clip_sgemm(kernel.code, ta, tb, i1 - i0, n, k, alpha, a + aOff, lda, b, ldb, beta, c + i0 * ldc, ldc)
        }
    }
}

/// Matrix product of the last two dimensions: `a` [.., m, k] · `b` [k, n] (or `b`ᵀ with `b` [n, k] when
/// `transposeB`) → [.., m, n]. Leading dimensions of `a` are folded into m.
public func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool = false) throws(TensorError) -> Tensor {
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
/// weights per output channel and activations per row dynamically, with exact int32 sums (AVX512-VNNI).
public enum Precision: String, Sendable, CaseIterable {
    case fp32, bf16, int8

    /// Whether this CPU can compute in this precision.
    public var isAvailable: Bool {
        switch self {
        case .fp32: return true
        case .bf16: return clip_bf16_available() != 0
        case .int8: return clip_int8_available() != 0
        }
    }

    /// The instruction-set extension a reduced precision needs.
    public var requirement: String {
        switch self {
        case .fp32: return "none"
        case .bf16: return "AVX512-BF16"
        case .int8: return "AVX512-VNNI"
        }
    }
}

/// An element-wise function a packed product applies to each output tile as it finishes (after the bias), so the
/// activation costs no separate pass over the output.
public enum OutputActivation: Sendable {
    case none
    /// x·σ(1.702x), OpenAI CLIP's MLP activation.
    case quickGELU
    /// x·Φ(x) with the exact error function.
    case gelu
    /// max(x, 0).
    case relu

    var code: Int32 {
        switch self {
        case .none: return Int32(CLIP_ACTIVATION_NONE.rawValue)
        case .quickGELU: return Int32(CLIP_ACTIVATION_QUICK_GELU.rawValue)
        case .gelu: return Int32(CLIP_ACTIVATION_GELU.rawValue)
        case .relu: return Int32(CLIP_ACTIVATION_RELU.rawValue)
        }
    }
}

/// A right-hand matrix B [k, n] packed once into the GEMM kernel's panel layout, for repeated products A·B
/// (a layer's weights): no per-call packing, and the only copy of the weights kept in memory.
public struct PackedMatrix: Sendable {
    public let k: Int
    public let n: Int
    public let kernel: GEMMKernel
    public let precision: Precision
    let data: [Float]
    let halves: [UInt16]
    let codes: [Int8]
    let columnScales: [Float]
    let columnSums: [Int32]
    let panel: Int

    /// Packs B [k, n], or Bᵀ when `transposed` (then `b` is [n, k], as a Linear layer's [out, in] weight).
    public init(_ b: Tensor, transposed: Bool, kernel: GEMMKernel = .best, precision: Precision = .fp32) throws(TensorError) {
        guard b.rank == 2 else { throw .shapeMismatch(operation: "PackedMatrix", b.shape, []) }
        guard kernel.isAvailable, kernel != .auto else { throw .gemmKernelUnavailable(kernel.rawValue) }
        guard precision.isAvailable else {
            throw .gemmKernelUnavailable("\(precision.rawValue) (needs \(precision.requirement))")
        }
        let (k, n) = transposed ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        var data: [Float] = []
        var halves: [UInt16] = []
        var codes: [Int8] = []
        var columnScales: [Float] = []
        var columnSums: [Int32] = []
        b.scalars.withUnsafeBufferPointer { bp in
            guard let src = bp.baseAddress else { return }
            switch precision {
            case .fp32:
                data = [Float](repeating: 0, count: max(Int(clip_packed_b_count(kernel.code, k, n)), 0))
                data.withUnsafeMutableBufferPointer { dp in
                    _ = clip_pack_b(kernel.code, transposed ? 1 : 0, k, n, src, b.shape[1], dp.baseAddress!)
                }
            case .bf16:
                halves = [UInt16](repeating: 0, count: Int(clip_packed_b_bf16_count(k, n)))
                halves.withUnsafeMutableBufferPointer { hp in
                    _ = clip_pack_b_bf16(transposed ? 1 : 0, k, n, src, b.shape[1], hp.baseAddress!)
                }
            case .int8:
                codes = [Int8](repeating: 0, count: Int(clip_packed_b_int8_bytes(k, n)))
                let columns = Int(clip_packed_b_int8_columns(n))
                columnScales = [Float](repeating: 0, count: columns)
                columnSums = [Int32](repeating: 0, count: columns)
                codes.withUnsafeMutableBufferPointer { cp in
                    columnScales.withUnsafeMutableBufferPointer { sp in
                        columnSums.withUnsafeMutableBufferPointer { up in
                            _ = clip_pack_b_int8(transposed ? 1 : 0, k, n, src, b.shape[1], cp.baseAddress!,
                                                 sp.baseAddress!, up.baseAddress!)
                        }
                    }
                }
            }
        }
        self.k = k
        self.n = n
        self.kernel = kernel
        self.precision = precision
        self.data = data
        self.halves = halves
        self.codes = codes
        self.columnScales = columnScales
        self.columnSums = columnSums
        self.panel = Int(precision == .fp32 ? clip_gemm_panel_width(kernel.code) : clip_bf16_panel_width())
    }

    /// One column range [j0, j1) (or all of it) of C = A·B over rows `m`, then the epilogue on those columns.
    private func run(_ m: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ j0: Int, _ j1: Int, _ beta: Float,
                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ epilogue: UnsafePointer<clip_epilogue>?) {
        switch precision {
        case .fp32:
            data.withUnsafeBufferPointer { dp in
                _ = clip_sgemm_packed(kernel.code, 0, m, n, k, 1, a, lda, dp.baseAddress!, j0, j1, beta, c, ldc, epilogue)
            }
        case .bf16:
            halves.withUnsafeBufferPointer { hp in
                _ = clip_sgemm_packed_bf16(m, n, k, a, lda, hp.baseAddress!, j0, j1, beta, c, ldc, epilogue)
            }
        case .int8:
            codes.withUnsafeBufferPointer { cp in
                columnScales.withUnsafeBufferPointer { sp in
                    columnSums.withUnsafeBufferPointer { up in
                        _ = clip_gemm_packed_int8(m, n, k, a, lda, cp.baseAddress!, sp.baseAddress!, up.baseAddress!,
                                                  j0, j1, beta, c, ldc, epilogue)
                    }
                }
            }
        }
    }

    /// C [m, n] (+)= A [m, k] · B, A with leading dimension `lda`, C with `ldc`; then, on each finished tile,
    /// C += `bias` [n] (when given) and `activation`. Work is split over the cores by columns or rows.
    public func multiply(_ a: UnsafePointer<Float>, rows m: Int, lda: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
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
    public func convolve(image: UnsafePointer<Float>, height: Int, width: Int, channels: Int, kernel: Int, stride: Int,
                         padding: Int, outHeight: Int, outWidth: Int, into c: UnsafeMutablePointer<Float>,
                         bias: UnsafePointer<Float>? = nil, activation: OutputActivation = .none,
                         parallel: Bool = true) -> Bool {
        guard precision == .fp32, kernel * kernel * channels == k, outHeight > 0, outWidth > 0 else { return false }
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

    /// B [k, n] rebuilt from the packed panels (bf16 values widened, int8 codes dequantised).
    public func unpacked() -> Tensor {
        let kc = Int(clip_gemm_block_k())
        let npad = (n + panel - 1) / panel * panel
        var out = [Float](repeating: 0, count: k * n)
        for p in 0..<k {
            let pc = p / kc * kc
            let blockK = min(kc, k - pc)
            for j in 0..<n {
                switch precision {
                case .fp32:
                    out[p * n + j] = data[pc * npad + (j / panel) * blockK * panel + (p - pc) * panel + j % panel]
                case .bf16:
                    let blockK2 = (blockK + 1) / 2 * 2
                    let q = p - pc
                    let h = halves[pc * npad + (j / panel) * blockK2 * panel + (q / 2) * panel * 2 + (j % panel) * 2 + q % 2]
                    out[p * n + j] = Float(bitPattern: UInt32(h) << 16)
                case .int8:
                    let k4 = (k + 3) / 4 * 4
                    let code = codes[(j / panel) * k4 * panel + (p / 4) * panel * 4 + (j % panel) * 4 + p % 4]
                    out[p * n + j] = Float(code) * columnScales[j]
                }
            }
        }
        return Tensor(uncheckedShape: [k, n], scalars: out)
    }
}
