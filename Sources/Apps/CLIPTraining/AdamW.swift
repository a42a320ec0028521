#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPLayers
import CLIPTensor
import CLIPWeights

/// AdamW as PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected moments), with CLIP's exclusions:
/// gains, biases, embeddings and the temperature are not decayed.
package struct AdamW: Sendable {
    /// β₁, β₂ of the moment averages (CLIP: 0.9, 0.98).
    package var betas: (Float, Float)
    /// Added to the second moment's square root (CLIP: 1e-6).
    package var epsilon: Float
    /// Decoupled weight decay per unit learning rate (CLIP: 0.2).
    package var weightDecay: Float
    /// Steps taken (the bias corrections' exponent).
    package private(set) var step: Int = 0
    /// First and second moments by parameter name (zeros until a parameter's first update).
    package private(set) var moments: [String: (first: [Float], second: [Float])] = [:]

    /// An optimizer with no steps taken.
    package init(betas: (Float, Float) = (0.9, 0.98), epsilon: Float = 1e-6, weightDecay: Float = 0.2) {
        (self.betas, self.epsilon, self.weightDecay) = (betas, epsilon, weightDecay)
    }

    /// Whether weight decay applies to `name` (shape `shape`): matrices other than embeddings.
    package static func decays(_ name: String, shape: [Int]) -> Bool {
        shape.count >= 2 && !name.contains("embedding") && name != "logit_scale"
    }

    /// One update of every parameter that has a gradient, at `learningRate`. Parameters without a gradient (a
    /// locked tower) are left alone, as are their moments.
    package mutating func update(_ parameters: inout NamedTensors, gradients: Gradients, learningRate lr: Float) {
        step += 1
        let (b1, b2) = (Double(betas.0), Double(betas.1))
        let c1 = 1 - pow(b1, Double(step)), c2 = 1 - pow(b2, Double(step))
        let stepSize = Float(Double(lr) / c1), c2Root = Float(c2.squareRoot())
        for name in parameters.names {
            // Taken out of their dictionaries so that updating them in place copies nothing.
            guard let g = gradients[name], parameters.values[name]?.count == g.count,
                  var p = parameters.values.removeValue(forKey: name) else { continue }
            var (m, v) = moments.removeValue(forKey: name) ?? ([Float](repeating: 0, count: p.count), [Float](repeating: 0, count: p.count))
            let decay: Float = Self.decays(name, shape: p.shape) ? 1 - lr * weightDecay : 1
            p.scalars.withUnsafeMutableBufferPointer { pp in
                g.scalars.withUnsafeBufferPointer { gp in
                    m.withUnsafeMutableBufferPointer { mp in
                        v.withUnsafeMutableBufferPointer { vp in
                            adamWUpdate(pp.baseAddress!, gp.baseAddress!, mp.baseAddress!, vp.baseAddress!, count: pp.count,
                                        betas: betas, decay: decay, stepSize: stepSize, c2Root: c2Root, eps: epsilon)
                        }
                    }
                }
            }
            moments[name] = (m, v)
            parameters.values[name] = p
        }
    }

    /// Restores the state a checkpoint saved.
    package mutating func restore(step: Int, moments: [String: (first: [Float], second: [Float])]) {
        self.step = step
        self.moments = moments
    }
}

/// Linear warm-up from base/warmup to `base`, then cosine decay to zero at `totalSteps`, as open_clip's `cosine_lr`.
package struct LearningRateSchedule: Sendable, Equatable {
    /// The peak learning rate.
    package var base: Float
    /// Steps of linear warm-up.
    package var warmup: Int
    /// Steps of the whole run.
    package var totalSteps: Int

    package init(base: Float, warmup: Int, totalSteps: Int) {
        (self.base, self.warmup, self.totalSteps) = (base, warmup, totalSteps)
    }

    /// The rate of step `step` (0-based).
    package func rate(at step: Int) -> Float {
        if step < warmup { return base * Float(step + 1) / Float(warmup) }
        let decaying = max(totalSteps - warmup, 1)
        let e = Double(min(step - warmup, decaying))
        return Float(0.5 * (1 + cos(Double.pi * e / Double(decaying))) * Double(base))
    }
}
