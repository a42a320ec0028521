import CLIPTensor
import CLIPWeights

/// Hands each layer the tensors it names, checking every shape, and remembers which tensors were taken so
/// that loading can fail on any the model did not use.
///
/// Used only while a model is being built; the built model holds plain `Tensor`s.
public final class ParameterReader {
    public let source: any WeightSource
    private let shapes: [String: [Int]]
    private var taken = Set<String>()
    private let isIgnored: (String) -> Bool

    /// - Parameter ignoring: names that may be present without being used (BatchNorm's
    ///   `num_batches_tracked`, the TorchScript extras the reference deletes).
    public init(source: any WeightSource, ignoring: @escaping (String) -> Bool = { _ in false }) {
        self.source = source
        self.shapes = Dictionary(source.tensorInfos.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        self.isIgnored = ignoring
    }

    /// Every tensor name in the source.
    public var names: [String] { source.tensorInfos.map(\.name) }

    /// The stored shape of `name`, or nil when absent.
    public func shape(of name: String) -> [Int]? { shapes[name] }

    /// The stored shape of `name`; throws when absent.
    public func requireShape(of name: String) throws(ModelLoadError) -> [Int] {
        guard let s = shapes[name] else { throw .missingTensor(name, origin: source.origin) }
        return s
    }

    /// Takes the fp32 tensor `name`, which must have exactly `shape`.
    public func tensor(_ name: String, shape: [Int]) throws(ModelLoadError) -> Tensor {
        guard let stored = shapes[name] else { throw .missingTensor(name, origin: source.origin) }
        guard stored == shape else { throw .shapeMismatch(name, expected: shape, found: stored, origin: source.origin) }
        taken.insert(name)
        do {
            return try source.floatTensor(name)
        } catch {
            throw .weightFile(error)
        }
    }

    /// Throws if the source holds tensors that no layer took and that are not ignorable.
    public func finish() throws(ModelLoadError) {
        let extra = names.filter { !taken.contains($0) && !isIgnored($0) }
        guard extra.isEmpty else { throw .unexpectedTensors(extra, origin: source.origin) }
    }
}

/// Why a model could not be built from a weight source. Every case names the tensor (key) concerned.
public enum ModelLoadError: Error, CustomStringConvertible, Equatable {
    case missingTensor(String, origin: String)
    case unexpectedTensors([String], origin: String)
    case shapeMismatch(String, expected: [Int], found: [Int], origin: String)
    case architecture(String, origin: String)
    case weightFile(WeightFileError)

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
        }
    }
}
