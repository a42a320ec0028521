/// A dense, row-major, fp32 tensor with value semantics.
///
/// Storage is a Swift array, so copies are copy-on-write and a `Tensor` is `Sendable`. Layers take and
/// return `Tensor`s and keep no hidden state, which keeps forward passes pure functions of their inputs:
/// the shape a backward pass needs (inputs cached by the caller, gradients as `Tensor`s) fits without change.
public struct Tensor: Sendable, Equatable {
    /// Extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// Elements in row-major order; `scalars.count == shape.reduce(1, *)`.
    public package(set) var scalars: [Float]

    /// Creates a tensor from its elements. Throws when `scalars.count` does not match `shape`.
    public init(shape: [Int], scalars: [Float]) throws(TensorError) {
        let count = try Tensor.elementCount(of: shape)
        guard count == scalars.count else {
            throw .elementCountMismatch(shape: shape, count: scalars.count)
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// A tensor of zeros.
    public init(zeros shape: [Int]) throws(TensorError) {
        let count = try Tensor.elementCount(of: shape)
        self.shape = shape
        self.scalars = [Float](repeating: 0, count: count)
    }

    /// For shapes the caller has already validated (within this package only).
    package init(uncheckedShape shape: [Int], scalars: [Float]) {
        self.shape = shape
        self.scalars = scalars
    }

    /// For a validated shape whose elements the caller is about to overwrite (within this package only).
    package init(uncheckedZeros shape: [Int]) {
        self.shape = shape
        self.scalars = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// For a validated shape every element of which `initialize` writes (within this package only): no zero-fill
    /// pass over buffers that a GEMM or im2col overwrites anyway.
    package init(uncheckedShape shape: [Int], initializingWith initialize: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        self.shape = shape
        self.scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialize(buffer)
            initialized = count
        }
    }

    /// For a validated shape every element of which the caller writes before reading any (within this package
    /// only): activation buffers that a GEMM or a normalisation fills are not zero-filled first.
    package init(uninitialized shape: [Int]) {
        self.init(uncheckedShape: shape) { _ in }
    }

    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Number of elements (the product of `shape`).
    public var count: Int { scalars.count }

    /// The product of `shape`, refusing negative extents and overflow (shapes may come from untrusted files).
    public static func elementCount(of shape: [Int]) throws(TensorError) -> Int {
        var count = 1
        for d in shape {
            guard d >= 0 else { throw .invalidShape(shape) }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw .invalidShape(shape) }
            count = p
        }
        return count
    }

    /// The same elements viewed with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) throws(TensorError) -> Tensor {
        guard try Tensor.elementCount(of: newShape) == count else {
            throw .reshape(from: shape, to: newShape)
        }
        return Tensor(uncheckedShape: newShape, scalars: scalars)
    }

    /// Row `i` of a rank-2 tensor as a rank-1 tensor.
    public func row(_ i: Int) -> [Float] {
        let w = shape.last ?? 1
        return Array(scalars[(i * w)..<((i + 1) * w)])
    }
}

/// Errors about tensor shapes; every message names the shapes involved.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    case invalidShape([Int])
    case elementCountMismatch(shape: [Int], count: Int)
    case reshape(from: [Int], to: [Int])
    case shapeMismatch(operation: String, [Int], [Int])
    case gemmKernelUnavailable(String)
    case cpuConfiguration(String)
    /// Scratch memory a kernel needs could not be allocated.
    case outOfMemory(String)
    /// A backward pass was not given the values of a parameter it needs.
    case missingParameter(String)
    /// A file could not be mapped into memory (the message names it and why).
    case mappedFile(String)

    public var description: String {
        switch self {
        case .invalidShape(let s): return "invalid tensor shape \(s): negative extent or too many elements"
        case .elementCountMismatch(let s, let n): return "shape \(s) needs \(s.reduce(1, *)) elements, got \(n)"
        case .reshape(let a, let b): return "cannot reshape \(a) to \(b): element counts differ"
        case .shapeMismatch(let op, let a, let b): return "\(op): incompatible shapes \(a) and \(b)"
        case .gemmKernelUnavailable(let k): return "GEMM kernel '\(k)' is not supported by this CPU"
        case .cpuConfiguration(let message): return message
        case .outOfMemory(let what): return "out of memory: \(what)"
        case .missingParameter(let name): return "no value for parameter '\(name)'"
        case .mappedFile(let message): return message
        }
    }
}

extension Optional where Wrapped == Tensor {
    /// `body` with the tensor's elements, or with nil when there is none (a layer's optional bias).
    package func withUnsafeElements<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let t = self else { return body(nil) }
        return t.scalars.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
