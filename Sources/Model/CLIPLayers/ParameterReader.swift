import CLIPTensor
import CLIPWeights
import Synchronization

/// Hands each layer the tensors it names, checking every shape, and remembers which tensors were taken so
/// that loading can fail on any the model did not use.
///
/// A reader either reads a weight source or, for a model trained from scratch or a benchmark, creates each
/// tensor with an initialiser. Used only while a model is built; the model holds plain `Tensor`s.
package final class ParameterReader {
    /// Where the tensors come from, for error messages.
    package let origin: String
    private let source: (any WeightSource)?
    private let initializer: ((String, [Int]) -> Tensor)?
    private let shapes: [String: [Int]]
    private let taken = Mutex(Set<String>())
    private let isIgnored: (String) -> Bool
    private let packedSource: (any PackedWeightSource)?
    private let record: Bool
    private let recording = Mutex(Recording())

    /// What a load hands out, kept for writing a packed-weight cache: plain tensors by name, and each packed
    /// weight's bias and the checkpoint tensors it consumed (those are not stored again).
    package struct Recording: Sendable {
        package var tensors: [String: (shape: [Int], values: Elements<Float>)] = [:]
        package var biases: [String: Tensor?] = [:]
        package var consumed: Set<String> = []
        /// Packed weights a layer asked for that the packed source did not hold (they were packed from the checkpoint).
        package var misses = 0
        /// Plain tensors not already in the packed source.
        package var tensorMisses = 0
    }

    /// - Parameter ignoring: names that may be present without being used (BatchNorm's
    ///   `num_batches_tracked`, the TorchScript extras the reference deletes).
    package convenience init(source: any WeightSource, ignoring: @escaping (String) -> Bool = { _ in false }) {
        self.init(source: source, ignoring: ignoring, packed: nil, record: false)
    }

    /// A reader that serves what `packed` holds (a cache file of this checkpoint's packed weights) instead of
    /// reading and packing it, and reads the rest from `source`; with `record`, it keeps what it hands out for
    /// `recording`.
    package init(source: any WeightSource, ignoring: @escaping (String) -> Bool = { _ in false },
                 packed: (any PackedWeightSource)?, record: Bool) {
        self.origin = source.origin
        self.source = source
        self.initializer = nil
        self.shapes = Dictionary(source.tensorInfos.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        self.isIgnored = ignoring
        self.packedSource = packed
        self.record = record
    }

    /// What was handed out (empty unless the reader records).
    package var recorded: Recording { recording.withLock { $0 } }

    /// A reader that creates every tensor a layer asks for with `initializer(name, shape)`.
    package init(origin: String, initializer: @escaping (String, [Int]) -> Tensor) {
        self.origin = origin
        self.source = nil
        self.initializer = initializer
        self.shapes = [:]
        self.isIgnored = { _ in false }
        self.packedSource = nil
        self.record = false
    }

    /// Whether layers may take their tensors from several threads at once: a source that reads concurrently,
    /// never an initialiser (its random draws must come in one order).
    package var readsConcurrently: Bool { initializer == nil && source?.readsConcurrently == true }

    /// The stored shape of `name`, or nil when absent (always nil for an initialiser).
    package func shape(of name: String) -> [Int]? { shapes[name] }

    /// Takes the fp32 tensor `name`, which must have exactly `shape`.
    package func tensor(_ name: String, shape: [Int]) throws(ModelLoadError) -> Tensor {
        if let initializer {
            return initializer(name, shape)
        }
        guard source != nil, let stored = shapes[name] else { throw .missingTensor(name, origin: origin) }
        guard stored == shape else { throw .shapeMismatch(name, expected: shape, found: stored, origin: origin) }
        _ = taken.withLock { $0.insert(name) }
        let cached = packedSource?.tensor(name, shape: shape)
        let tensor: Tensor
        if let cached { tensor = cached } else { tensor = try read(name) }
        if record {
            recording.withLock {
                $0.tensors[name] = (shape, Elements(tensor.scalars))
                if cached == nil && packedSource != nil { $0.tensorMisses += 1 }
            }
        }
        return tensor
    }

    /// The fp32 tensor `name` ([rows, width] tables read a few rows at a time, such as token embeddings) as
    /// elements: mapped from the packed source when it holds them (nothing copied), else read as `tensor` reads.
    package func table(_ name: String, shape: [Int]) throws(ModelLoadError) -> Elements<Float> {
        guard initializer == nil, let mapped = packedSource?.mappedTensor(name, shape: shape) else {
            return Elements(try tensor(name, shape: shape).scalars)
        }
        guard let stored = shapes[name] else { throw .missingTensor(name, origin: origin) }
        guard stored == shape else { throw .shapeMismatch(name, expected: shape, found: stored, origin: origin) }
        _ = taken.withLock { $0.insert(name) }
        if record { recording.withLock { $0.tensors[name] = (shape, mapped) } }
        return mapped
    }

    /// A layer's packed weight `name` ([k, n] as the GEMM's right-hand side) and its bias [n] (when `bias`): from the packed source
    /// when it holds them, else `build` makes them from the checkpoint tensors `consumes` (the reader records the
    /// bias and leaves the consumed tensors out of its recording: the packed form replaces them). Either way the
    /// consumed tensors count as taken.
    package func packed(_ name: String, k: Int, n: Int, bias hasBias: Bool, consumes: [String],
                        build: () throws(ModelLoadError) -> (PackedMatrix, Tensor?)) throws(ModelLoadError) -> (PackedMatrix, Tensor?) {
        if initializer == nil, let (matrix, bias) = packedSource?.packed(name), matrix.k == k, matrix.n == n,
           (bias != nil) == hasBias, bias.map({ $0.shape == [n] }) ?? true {
            for consumed in consumes {
                guard shapes[consumed] != nil else { throw .missingTensor(consumed, origin: origin) }
            }
            taken.withLock { $0.formUnion(consumes) }
            if record { recording.withLock { $0.biases[name] = bias; $0.consumed.formUnion(consumes) } }
            return (matrix, bias)
        }
        var (matrix, bias) = try build()
        matrix.name = name
        if record {
            recording.withLock {
                $0.biases[name] = bias
                $0.consumed.formUnion(consumes)
                for consumed in consumes { $0.tensors[consumed] = nil }
                if packedSource != nil { $0.misses += 1 }
            }
        }
        return (matrix, bias)
    }

    private func read(_ name: String) throws(ModelLoadError) -> Tensor {
        guard let source else { throw .missingTensor(name, origin: origin) }
        let tensor: Tensor
        do throws(WeightFileError) {
            tensor = try source.floatTensor(name)
        } catch {
            throw .weightFile(error)
        }
        // A NaN or infinity in any weight turns every output into NaN; refuse the file instead.
        if let i = tensor.firstNonFiniteIndex {
            throw .nonFinite(name, index: i, value: tensor.scalars[i], origin: origin)
        }
        return tensor
    }

    /// Throws if the source holds tensors that no layer took and that are not ignorable.
    package func finish() throws(ModelLoadError) {
        let used = taken.withLock { $0 }
        let extra = Set(shapes.keys.filter { !used.contains($0) && !isIgnored($0) })
        guard extra.isEmpty else {
            // Report in stored order, as the file lists them.
            let order = source?.tensorInfos.map(\.name) ?? []
            throw .unexpectedTensors(order.filter { extra.contains($0) }, origin: origin)
        }
    }
}

/// Why a model could not be built from a weight source. Every case names the tensor (key) concerned.
public enum ModelLoadError: Error, CustomStringConvertible, Equatable {
    case missingTensor(String, origin: String)
    case unexpectedTensors([String], origin: String)
    case shapeMismatch(String, expected: [Int], found: [Int], origin: String)
    case architecture(String, origin: String)
    case weightFile(WeightFileError)
    /// The CPU cannot run what was asked (`CLIP_CPU` names a level it lacks, or a precision needs an extension).
    case cpu(String)
    /// A weight holds NaN or an infinity (first at element `index`).
    case nonFinite(String, index: Int, value: Float, origin: String)

    public var description: String {
        switch self {
        case .missingTensor(let k, let o): return "\(o): missing tensor '\(k)'"
        case .unexpectedTensors(let ks, let o):
            let shown = ks.prefix(5).map { "'\($0)'" }.joined(separator: ", ")
            let more = ks.count > 5 ? " and \(ks.count - 5) more" : ""
            return "\(o): unexpected tensor\(ks.count == 1 ? "" : "s") \(shown)\(more) (not part of the inferred architecture)"
        case .shapeMismatch(let k, let e, let f, let o):
            return "\(o): tensor '\(k)' has shape \(f), expected \(e)"
        case .architecture(let m, let o): return "\(o): \(m)"
        case .weightFile(let e): return e.description
        case .cpu(let m): return m
        case .nonFinite(let k, let i, let v, let o):
            let what = v.isNaN ? "NaN" : (v > 0 ? "+infinity" : "-infinity")
            return "\(o): tensor '\(k)' holds \(what) at element \(i); a checkpoint's weights must be finite (corrupt or diverged training?)"
        }
    }
}

/// Values a packed-weight cache file holds for one checkpoint, precision and kernel level: what a `ParameterReader`
/// serves instead of reading and packing. Both return nil for a name the file does not hold.
package protocol PackedWeightSource: Sendable {
    /// The fp32 tensor `name`, which must have `shape`.
    func tensor(_ name: String, shape: [Int]) -> Tensor?
    /// The packed weight `name` and its bias (nil for a layer without one).
    func packed(_ name: String) -> (PackedMatrix, Tensor?)?
    /// The fp32 tensor `name` with `shape`, in place in the file (checked, not copied).
    func mappedTensor(_ name: String, shape: [Int]) -> Elements<Float>?
}
