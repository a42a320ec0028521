import CLIPTensor

/// x += fc2(GELU(fc1(input))) row by row, over channels-last pixels: the MLP of a ConvNeXt or FastViT block, whose
/// rows are pixels. It runs over bands of rows whose hidden activations stay in cache between the two products,
/// instead of one [rows, hidden] tensor written out and read back (100 MB per block at batch 16 in convnext_base's
/// first stage), and fc2 adds straight into the residual stream.
package struct PointwiseMLP: Sendable {
    /// [.., width] → [.., hidden], with bias.
    package let fc1: Linear
    /// [.., hidden] → [.., width], with bias (any layer scale folded in).
    package let fc2: Linear

    /// Hidden activations per band: 512K floats (2 MiB), about what the two cores' L2 caches hold.
    static let bandElements = 1 << 19

    package init(fc1: Linear, fc2: Linear) {
        (self.fc1, self.fc2) = (fc1, fc2)
    }

    /// `x` [.., width] += fc2(GELU(fc1(`input` [.., width]))).
    package func forward(_ input: Tensor, addingTo x: inout Tensor) throws(TensorError) {
        let (width, hiddenWidth) = (fc1.inFeatures, fc1.outFeatures)
        guard input.count == x.count, input.count % width == 0, fc2.inFeatures == hiddenWidth, fc2.outFeatures == width else {
            throw .shapeMismatch(operation: "PointwiseMLP", input.shape, [width, hiddenWidth])
        }
        let rows = input.count / width
        guard rows > 0 else { return }
        let band = min(rows, max(64, Self.bandElements / hiddenWidth))
        let hidden = UnsafeMutablePointer<Float>.allocate(capacity: band * hiddenWidth)
        defer { hidden.deallocate() }
        let (w1, w2) = (fc1.packedWeight, fc2.packedWeight)
        input.scalars.withUnsafeBufferPointer { m in
            x.scalars.withUnsafeMutableBufferPointer { out in
                fc1.bias.withUnsafeElements { b1 in
                    fc2.bias.withUnsafeElements { b2 in
                        for r0 in stride(from: 0, to: rows, by: band) {
                            let count = min(band, rows - r0)
                            w1.multiply(m.baseAddress! + r0 * width, rows: count, lda: width, into: hidden, ldc: hiddenWidth,
                                        bias: b1, activation: .gelu)
                            w2.multiply(hidden, rows: count, lda: hiddenWidth, into: out.baseAddress! + r0 * width,
                                        ldc: width, accumulate: true, bias: b2)
                        }
                    }
                }
            }
        }
    }

    /// The same MLP computing in `precision`.
    package func converted(to precision: Precision) throws(TensorError) -> PointwiseMLP {
        PointwiseMLP(fc1: try fc1.converted(to: precision), fc2: try fc2.converted(to: precision))
    }
}
