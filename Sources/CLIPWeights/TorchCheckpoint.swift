import CLIPTensor

/// A PyTorch zip checkpoint read without Python: a `torch.save` state dict (optionally wrapped as
/// `{"state_dict": …}` by training code, keys optionally prefixed `module.`), or a TorchScript archive
/// (`torch.jit.save`, as OpenAI's `.pt` files), whose module tree is walked for its tensors without interpreting
/// its code. Storages of any float type, storage offsets, strides and either byte order are honoured.
public struct TorchCheckpoint: WeightSource {
    public enum Kind: String, Sendable { case stateDict = "torch.save state dict", torchScript = "TorchScript archive" }

    public let origin: String
    public let kind: Kind
    public let tensorInfos: [TensorInfo]
    private let tensors: [String: TensorRef]
    private let archive: ZipArchive
    private let prefix: String
    private let bigEndian: Bool

    public init(path: String) throws(WeightFileError) {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws(WeightFileError) {
        let path = file.path
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: "checkpoint", message: m)) }
        let archive = try ZipArchive(file: file)
        let pickles = archive.entries.filter { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 }
        guard pickles.count == 1, let pkl = pickles.first else {
            throw fail(pickles.isEmpty ? "no <archive>/data.pkl entry: not a PyTorch checkpoint" : "several data.pkl entries")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        var bigEndian = false
        if let bo = archive.entry(prefix + "byteorder") {
            let text = String(decoding: try archive.contents(bo), as: UTF8.self)
            guard text == "little" || text == "big" else { throw fail("byteorder '\(text)' is neither 'little' nor 'big'") }
            bigEndian = text == "big"
        }
        let root: PickleValue
        let pickleBytes = try archive.contents(pkl)
        do {
            root = try Unpickler.load(pickleBytes)
        } catch {
            throw WeightFileError(file: path, .invalidEntry(tensor: pkl.name, message: "\(error.message) (pickle offset \(error.offset))"))
        }
        var found: [(String, TensorRef)] = []
        let kind: Kind
        switch root {
        case .object(let o):
            kind = .torchScript
            try Self.walk(o, prefix: "", into: &found, depth: 0, path: path)
        case .dict(var d):
            kind = .stateDict
            // Training checkpoints wrap the weights: {"state_dict": {...}, "epoch": ..., "optimizer": ...}.
            if let inner = d.items.first(where: { if case .string("state_dict") = $0.key { true } else { false } }),
               case .dict(let sd) = inner.value {
                d = sd
            }
            for (k, v) in d.items {
                guard case .string(let key) = k else { continue }
                if case .tensor(let t) = v { found.append((key, t)) }
            }
            // Distributed training prefixes every key with "module.".
            if !found.isEmpty, found.allSatisfy({ $0.0.hasPrefix("module.") }) {
                found = found.map { (String($0.0.dropFirst("module.".count)), $0.1) }
            }
        default:
            throw fail("data.pkl holds neither a state dict nor a TorchScript module")
        }
        var byName: [String: TensorRef] = [:]
        for (k, t) in found {
            guard byName[k] == nil else { throw fail("tensor '\(k)' appears twice") }
            byName[k] = t
        }
        // Every storage must exist with exactly the bytes its element count needs.
        for (name, t) in found {
            guard let e = archive.entry(prefix + "data/" + t.storage.key) else {
                throw WeightFileError(file: path, .invalidEntry(tensor: name, message: "storage '\(prefix)data/\(t.storage.key)' is missing from the archive"))
            }
            let need = t.storage.count.multipliedReportingOverflow(by: Self.dtype(t.storage.dtype).size)
            guard !need.overflow, e.uncompressedSize >= need.partialValue else {
                throw WeightFileError(file: path, .invalidEntry(tensor: name, message: "storage '\(t.storage.key)' declares \(t.storage.count) elements but holds \(e.uncompressedSize) bytes"))
            }
        }
        self.origin = path
        self.kind = kind
        self.archive = archive
        self.prefix = prefix
        self.bigEndian = bigEndian
        self.tensors = byName
        self.tensorInfos = found.map { TensorInfo(name: $0.0, dtype: Self.dtype($0.1.storage.dtype), shape: $0.1.shape) }
    }

    private static func walk(_ o: PickleObject, prefix: String, into out: inout [(String, TensorRef)], depth: Int,
                             path: String) throws(WeightFileError) {
        guard depth < 64 else {
            throw WeightFileError(file: path, .invalidEntry(tensor: prefix, message: "module tree nested deeper than 64"))
        }
        guard case .dict(let d) = o.state else { return }
        for (k, v) in d.items {
            guard case .string(let name) = k else { continue }
            switch v {
            case .tensor(let t): out.append((prefix + name, t))
            case .object(let child): try walk(child, prefix: prefix + name + ".", into: &out, depth: depth + 1, path: path)
            default: continue
            }
        }
    }

    static func dtype(_ d: DTypeName) -> DType {
        switch d {
        case .float: return .float32
        case .half: return .float16
        case .bfloat16: return .bfloat16
        case .double: return .float64
        case .long: return .int64
        case .int: return .int32
        case .short: return .int16
        case .char: return .int8
        case .byte: return .uint8
        case .bool: return .bool
        }
    }

    /// Copies the tensor's elements (following its offset and strides) into contiguous little-endian bytes.
    private func elementBytes(_ name: String) throws(WeightFileError) -> (TensorRef, DType, [UInt8]) {
        guard let t = tensors[name], let e = archive.entry(prefix + "data/" + t.storage.key) else {
            throw WeightFileError(file: origin, .missingTensor(name))
        }
        let dt = Self.dtype(t.storage.dtype)
        let size = dt.size
        let count = t.shape.reduce(1, *)
        var out = [UInt8](repeating: 0, count: count * size)
        func copy(_ src: UnsafeRawBufferPointer) {
            guard count > 0 else { return }
            var index = [Int](repeating: 0, count: t.shape.count)
            out.withUnsafeMutableBytes { dst in
                for n in 0..<count {
                    var element = t.offset
                    for (i, st) in zip(index, t.stride) { element += i * st }
                    let from = element * size, to = n * size
                    for b in 0..<size { dst[to + b] = src[from + (bigEndian ? size - 1 - b : b)] }
                    var d = t.shape.count - 1
                    while d >= 0 {
                        index[d] += 1
                        if index[d] < t.shape[d] { break }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        if let stored = archive.storedBytes(e) {
            copy(stored)
        } else {
            let bytes = try archive.contents(e)
            bytes.withUnsafeBytes { copy($0) }
        }
        return (t, dt, out)
    }

    public func floatTensor(_ name: String) throws(WeightFileError) -> Tensor {
        let (t, dt, bytes) = try elementBytes(name)
        let count = t.shape.reduce(1, *)
        guard let values = bytes.withUnsafeBytes({ decodeFloats($0, dtype: dt, count: count) }) else {
            throw WeightFileError(file: origin, .notFloatingPoint(tensor: name, dtype: dt))
        }
        return try Tensor(decoded: name, in: origin, shape: t.shape, scalars: values)
    }

    public func integerTensor(_ name: String) throws(WeightFileError) -> (shape: [Int], values: [Int]) {
        let (t, dt, bytes) = try elementBytes(name)
        guard let values = bytes.withUnsafeBytes({ decodeIntegers($0, dtype: dt, count: t.shape.reduce(1, *)) }) else {
            throw WeightFileError(file: origin, .notInteger(tensor: name, dtype: dt))
        }
        return (t.shape, values)
    }
}
