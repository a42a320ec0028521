import CLIPFiles
import CLIPTensor
import Synchronization

/// A PyTorch zip checkpoint read without Python: a `torch.save` state dict (optionally wrapped as
/// `{"state_dict": …}` by training code, keys optionally prefixed `module.`), or a TorchScript archive
/// (`torch.jit.save`, as OpenAI's `.pt` files), whose module tree is walked for its tensors without interpreting
/// its code. Storages of any float type, storage offsets, strides and either byte order are honoured.
public struct TorchCheckpoint: WeightSource {
    /// What `torch.save` or `torch.jit.save` wrote.
    public enum Kind: String, Sendable { case stateDict = "torch.save state dict", torchScript = "TorchScript archive" }

    /// The file's path.
    public let origin: String
    /// Whether the file is a state dict or a TorchScript archive.
    public let kind: Kind
    /// Every tensor, in the pickle's order.
    public let tensorInfos: [TensorInfo]
    private let tensors: [String: TensorRef]
    private let archive: ZipArchive
    private let prefix: String
    private let bigEndian: Bool
    private let storages: StorageReader

    /// The largest `data.pkl` read: a state dict of 200,000 tensors pickles to about 30 MB.
    public static let maxPickleSize = 128 << 20
    /// The most submodules a TorchScript module tree may have.
    public static let maxModules = 100_000

    /// Opens and validates the checkpoint at `path`.
    public init(path: String) throws(WeightFileError) {
        try self.init(file: RegularFile(opening: path))
    }

    /// Validates an opened checkpoint: the zip archive, its `data.pkl` (restricted unpickling), and every storage its
    /// tensors reference.
    package init(file: RegularFile) throws(WeightFileError) {
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
        let pickleBytes = try archive.contents(pkl, limit: Self.maxPickleSize)
        do {
            root = try Unpickler.load(pickleBytes)
        } catch {
            throw WeightFileError(file: path, .invalidEntry(tensor: pkl.name, message: "\(error.message) (pickle offset \(error.offset))"))
        }
        let (kind, found) = try Self.tensors(in: root, path: path)
        var byName: [String: TensorRef] = [:]
        for (k, t) in found {
            guard byName[k] == nil else { throw fail("tensor '\(k)' appears twice") }
            byName[k] = t
        }
        try Self.checkStorages(of: found, in: archive, prefix: prefix, path: path)
        self.origin = path
        self.kind = kind
        self.archive = archive
        self.prefix = prefix
        self.bigEndian = bigEndian
        self.tensors = byName
        self.tensorInfos = found.map { TensorInfo(name: $0.0, dtype: $0.1.storage.dtype, shape: $0.1.shape) }
        // Reading may inflate or re-read storages; twice what the referenced entries hold is the most a legitimate
        // file needs (each storage once, with room for tensors interleaving two).
        let entryBytes = Set(found.map(\.1.storage.key)).reduce(0) { total, key in
            Checked.sum(total, archive.entry(prefix + "data/" + key)?.uncompressedSize ?? 0) ?? Int.max
        }
        self.storages = StorageReader(budget: Checked.sum(Checked.product(2, entryBytes) ?? Int.max, 64 << 20) ?? Int.max)
        PickleValue.dismantle([root])
    }

    /// The named tensors of an unpickled `data.pkl`: a TorchScript module tree, or a state dict (unwrapped from
    /// `{"state_dict": …}` and stripped of a `module.` prefix on every key).
    private static func tensors(in root: PickleValue, path: String) throws(WeightFileError) -> (Kind, [(String, TensorRef)]) {
        var found: [(String, TensorRef)] = []
        switch root {
        case .object(let o):
            var modules = 0
            try walk(o, prefix: "", into: &found, depth: 0, modules: &modules, path: path)
            return (.torchScript, found)
        case .dict(var d):
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
            return (.stateDict, found)
        default:
            throw WeightFileError(file: path, .invalidEntry(tensor: "checkpoint", message: "data.pkl holds neither a state dict nor a TorchScript module"))
        }
    }

    /// Every storage must exist with the bytes its element count needs, and the tensors may not materialise much
    /// more than the storages hold: stride-0 views can describe gigabytes over a few bytes.
    private static func checkStorages(of found: [(String, TensorRef)], in archive: ZipArchive, prefix: String,
                                      path: String) throws(WeightFileError) {
        var storageElements: [String: Int] = [:]
        var materialised = 0
        for (name, t) in found {
            guard let e = archive.entry(prefix + "data/" + t.storage.key) else {
                throw WeightFileError(file: path, .invalidEntry(tensor: name, message: "storage '\(prefix)data/\(t.storage.key)' is missing from the archive"))
            }
            guard let need = Checked.product(t.storage.count, t.storage.dtype.size),
                  e.uncompressedSize >= need else {
                throw WeightFileError(file: path, .invalidEntry(tensor: name, message: "storage '\(t.storage.key)' declares \(t.storage.count) elements but holds \(e.uncompressedSize) bytes"))
            }
            storageElements[t.storage.key] = t.storage.count
            // Element counts fit Int (checked by the unpickler); their sum might not.
            materialised = Checked.sum(materialised, t.shape.reduce(1, *)) ?? Int.max
        }
        let held = storageElements.values.reduce(0) { Checked.sum($0, $1) ?? Int.max }
        let allowed = Checked.sum(Checked.product(2, held) ?? Int.max, 1 << 24) ?? Int.max
        guard materialised <= allowed else {
            throw WeightFileError(file: path, .invalidEntry(tensor: "checkpoint", message: "its tensors describe \(materialised) elements over storages holding \(held): views that repeat data (stride 0, or one storage shared by many tensors) would materialise more than \(allowed)"))
        }
    }

    private static func walk(_ o: PickleObject, prefix: String, into out: inout [(String, TensorRef)], depth: Int,
                             modules: inout Int, path: String) throws(WeightFileError) {
        guard depth < 64 else {
            throw WeightFileError(file: path, .invalidEntry(tensor: prefix, message: "module tree nested deeper than 64"))
        }
        // A module reachable along many paths (a DAG) would otherwise be walked once per path.
        modules += 1
        guard modules <= maxModules else {
            throw WeightFileError(file: path, .invalidEntry(tensor: prefix, message: "module tree has more than \(maxModules) modules (shared submodules reached along many paths?)"))
        }
        guard case .dict(let d) = o.state else { return }
        for (k, v) in d.items {
            guard case .string(let name) = k else { continue }
            switch v {
            case .tensor(let t): out.append((prefix + name, t))
            case .object(let child):
                try walk(child, prefix: prefix + name + ".", into: &out, depth: depth + 1, modules: &modules, path: path)
            default: continue
            }
        }
    }


    /// Copies the tensor's elements (following its offset and strides) into contiguous little-endian bytes.
    private func elementBytes(_ name: String) throws(WeightFileError) -> (TensorRef, DType, [UInt8]) {
        guard let t = tensors[name], let e = archive.entry(prefix + "data/" + t.storage.key) else {
            throw WeightFileError(file: origin, .missingTensor(name))
        }
        let dt = t.storage.dtype
        let size = dt.size
        // Counts and the reachable extent were checked against the storage when the pickle was read.
        let count = t.shape.reduce(1, *)
        let storage = try storages.contents(of: e, in: archive)
        var out = [UInt8](repeating: 0, count: count * size)
        guard count > 0 else { return (t, dt, out) }
        var index = [Int](repeating: 0, count: t.shape.count)
        storage.withUnsafeBytes { src in
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
        return (t, dt, out)
    }

    /// Whether `t` is laid out row-major without gaps (as `torch.save` writes nearly every weight).
    private static func isContiguous(_ t: TensorRef) -> Bool {
        var expected = 1
        for (extent, stride) in zip(t.shape, t.stride).reversed() where extent != 1 {
            guard stride == expected else { return false }
            expected *= extent
        }
        return true
    }

    /// The tensor `name` in fp32, honouring its storage offset, strides and the archive's byte order.
    public func floatTensor(_ name: String) throws(WeightFileError) -> Tensor {
        let count: Int
        if !bigEndian, let t = tensors[name], Self.isContiguous(t), let e = archive.entry(prefix + "data/" + t.storage.key) {
            // Row-major little-endian elements decode straight from the storage: the general gather below walks
            // every byte through an index vector, a third of the load time of OpenAI's fp16 `.pt` files.
            count = t.shape.reduce(1, *)
            let dt = t.storage.dtype
            let storage = try storages.contents(of: e, in: archive)
            // The reachable extent was checked against the storage when the pickle was read; checked again here
            // because a slice out of bounds would trap.
            let from = t.offset * dt.size, bytes = count * dt.size
            guard t.offset >= 0, from + bytes <= storage.count else {
                throw WeightFileError(file: origin, .invalidEntry(tensor: name, message: "elements past the end of storage '\(t.storage.key)'"))
            }
            let values = storage.withUnsafeBytes { all -> [Float]? in
                decodeFloats(UnsafeRawBufferPointer(rebasing: all[from..<(from + bytes)]), dtype: dt, count: count)
            }
            guard let values else { throw WeightFileError(file: origin, .notFloatingPoint(tensor: name, dtype: dt)) }
            return try Tensor(decoded: name, in: origin, shape: t.shape, scalars: values)
        }
        let (t, dt, bytes) = try elementBytes(name)
        count = t.shape.reduce(1, *)
        guard let values = bytes.withUnsafeBytes({ decodeFloats($0, dtype: dt, count: count) }) else {
            throw WeightFileError(file: origin, .notFloatingPoint(tensor: name, dtype: dt))
        }
        return try Tensor(decoded: name, in: origin, shape: t.shape, scalars: values)
    }
}

/// Reads storages for a checkpoint: the last one read is kept (views of one storage follow each other), and the
/// bytes read or inflated in all are bounded, so views re-reading a shared deflated storage cannot cost more than
/// a small multiple of the archive.
final class StorageReader: Sendable {
    private struct State {
        var lastName: String?
        var last: [UInt8] = []
        var spent = 0
    }
    private let state = Mutex(State())
    private let budget: Int

    init(budget: Int) { self.budget = budget }

    func contents(of entry: ZipArchive.Entry, in archive: ZipArchive) throws(WeightFileError) -> [UInt8] {
        let cached: [UInt8]? = state.withLock { s in s.lastName == entry.name ? s.last : nil }
        if let cached { return cached }
        let allowed = state.withLock { s -> Bool in
            let next = Checked.sum(s.spent, entry.uncompressedSize) ?? Int.max
            guard next <= budget else { return false }
            s.spent = next
            return true
        }
        guard allowed else {
            throw WeightFileError(file: archive.file.path, .invalidEntry(tensor: entry.name, message: "reading the checkpoint's storages would take more than \(budget) bytes (tensors alternate between shared storages)"))
        }
        let bytes = try archive.contents(entry)
        state.withLock { s in
            s.lastName = entry.name
            s.last = bytes
        }
        return bytes
    }
}
