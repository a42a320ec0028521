import CLIPTensor

/// Named fp32 tensors held in memory, in a fixed order: parameters under training, or a checkpoint about to be
/// written. A `WeightSource`, so a model builds from it as from a file.
public struct NamedTensors: WeightSource {
    /// Every name, in order (a checkpoint stores them in this order).
    public var names: [String]
    /// The tensor of each name.
    public var values: [String: Tensor]
    /// Where the tensors came from, for error messages.
    public let origin: String

    /// `values` must hold a tensor for every name in `names`.
    public init(names: [String], values: [String: Tensor], origin: String) {
        (self.names, self.values, self.origin) = (names, values, origin)
    }

    /// Every tensor of a weight source, converted to fp32.
    public init(_ source: any WeightSource) throws(WeightFileError) {
        var values: [String: Tensor] = [:]
        for info in source.tensorInfos { values[info.name] = try source.floatTensor(info.name) }
        self.init(names: source.tensorInfos.map(\.name), values: values, origin: source.origin)
    }

    public var tensorInfos: [TensorInfo] {
        names.compactMap { name in values[name].map { TensorInfo(name: name, dtype: .float32, shape: $0.shape) } }
    }

    public func floatTensor(_ name: String) throws(WeightFileError) -> Tensor {
        guard let t = values[name] else { throw WeightFileError(file: origin, .missingTensor(name)) }
        return t
    }

    /// The tensors in order, as `SafeTensorsWriter.write` takes them.
    public var ordered: [(name: String, tensor: Tensor)] {
        names.compactMap { name in values[name].map { (name, $0) } }
    }
}
