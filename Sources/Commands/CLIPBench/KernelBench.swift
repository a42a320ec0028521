import CCLIPKernels
import CLIP
import Foundation

/// The kernels on their own: the measured arithmetic peak and GEMM rates as a share of it.
extension Bench {
    /// The measured arithmetic peak of all cores for `kind` (0 fp32, 1 bf16, 2 int8) in GFLOP/s, or nil when the
    /// CPU lacks it: a register-only multiply-add loop on every core, best of five runs (about 50 ms each on this
    /// AVX-512 machine).
    func measuredPeak(kind: Int32) -> Double? {
        var sink: Float = 0
        guard clip_peak_loop(kind, 1, &sink) > 0 else { return nil }
        let iterations = 16_000_000
        var best = 0.0
        for _ in 0..<5 {
            let start = monotonicSeconds()
            let ops = ParallelSum()
            parallelFor(availableCores) { _ in
                var s: Float = 0
                ops.add(clip_peak_loop(kind, iterations, &s))
            }
            best = max(best, ops.total / (monotonicSeconds() - start) / 1e9)
        }
        return best
    }

    /// GFLOP/s of C = A·Bᵀ (the Linear layer's form) for square 1024³ and ViT-B/32 batch-16 layer shapes, and as a
    /// share of the measured arithmetic peak.
    func runGEMM() throws {
        print("threads: \(availableCores)")
        var peaks: [Precision: Double] = [:]
        for (precision, kind) in [(Precision.fp32, Int32(0)), (.bf16, 1), (.int8, 2)] {
            guard let peak = measuredPeak(kind: kind) else { continue }
            peaks[precision] = peak
            print(String(format: "arithmetic peak, %@ multiply-add loop on %d cores: %.1f GFLOP/s", precision.rawValue,
                         availableCores, peak))
        }
        func share(_ rate: Double, _ precision: Precision) -> String {
            guard let peak = peaks[precision] else { return "" }
            return String(format: " (%.0f %% of peak)", 100 * rate / peak)
        }
        let shapes = [(1024, 1024, 1024, "square"), (800, 2304, 768, "ViT-B/32 qkv"), (800, 768, 768, "ViT-B/32 out"),
                      (800, 3072, 768, "ViT-B/32 c_fc"), (800, 768, 3072, "ViT-B/32 c_proj")]
        for kernel in GEMMKernel.allCases where kernel != .auto && kernel.isAvailable {
            for (m, n, k, label) in shapes {
                let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: n * k)
                var c = [Float](repeating: 0, count: m * n)
                let t = try median {
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                sgemm(transA: false, transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k,
                                      b: bp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n, kernel: kernel)
                            }
                        }
                    }
                }
                let rate = 2 * Double(m * n * k) / t / 1e9
                print(String(format: "%@ %dx%dx%d (%@): %.1f GFLOP/s", kernel.rawValue, m, n, k, label, rate)
                      + (kernel == .best ? share(rate, .fp32) : ""))
            }
        }
        // Products with packed layer weights, as the model runs them; also ConvNeXt-B's MLPs (4 images at 224: the
        // first stage's K of 128 and the third's 784-row bands) and its last stage at batch 1 (49 rows).
        let convNeXt = [(12544, 512, 128, "ConvNeXt-B stage 1 fc1"), (12544, 128, 512, "ConvNeXt-B stage 1 fc2"),
                        (784, 2048, 512, "ConvNeXt-B stage 3 fc1"), (784, 512, 2048, "ConvNeXt-B stage 3 fc2"),
                        (49, 4096, 1024, "ConvNeXt-B stage 4 fc1, 1 image")]
        for precision in Precision.allCases where precision.isAvailable {
            for (m, n, k, label) in shapes + convNeXt {
                let a = [Float](repeating: 0.5, count: m * k)
                let w = try Tensor(shape: [n, k], scalars: [Float](repeating: 0.25, count: n * k))
                let packed = try PackedMatrix(w, transposed: true, precision: precision)
                var c = [Float](repeating: 0, count: m * n)
                let t = try median {
                    a.withUnsafeBufferPointer { ap in
                        c.withUnsafeMutableBufferPointer { cp in
                            packed.multiply(ap.baseAddress!, rows: m, lda: k, into: cp.baseAddress!, ldc: n)
                        }
                    }
                }
                let rate = 2 * Double(m * n * k) / t / 1e9
                print(String(format: "packed %@ %dx%dx%d (%@): %.1f GFLOP/s", precision.rawValue, m, n, k, label, rate)
                      + share(rate, precision))
            }
        }
    }
}
