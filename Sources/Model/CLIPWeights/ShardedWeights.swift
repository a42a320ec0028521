import CLIPFiles
import CLIPTensor

/// A checkpoint split into shards the way Hugging Face saves large models: `model.safetensors.index.json` (or
/// `pytorch_model.bin.index.json`) maps every tensor name to the shard file that holds it:
/// `{"metadata": {...}, "weight_map": {"text_model.embeddings...": "model-00001-of-00002.safetensors", ...}}`.
///
/// The index is hostile like any weight file: shard names must be plain file names beside it (no folders, no
/// `..`), every tensor the index names must be in its shard, no tensor may be in two shards, and a shard may not
/// hold tensors the index does not name.
public struct ShardedWeights: WeightSource {
    public let origin: String
    public let tensorInfos: [TensorInfo]
    /// The shard names in the order the index first names them.
    public let shardNames: [String]
    private let shards: [any WeightSource]
    private let shardOf: [String: Int]

    /// The largest index read (real ones are tens of kilobytes).
    static let indexLimit = 64 << 20
    /// More shards than any published model has.
    static let shardLimit = 10_000

    /// The shard files `indexPath` names, in order, without opening them (for a downloader to fetch them).
    public static func shardNames(indexPath: String) throws(WeightFileError) -> [String] {
        try readIndex(indexPath).map(\.file).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    }

    /// Opens the index and every shard it names (`.safetensors` shards, else PyTorch checkpoints).
    public init(indexPath: String) throws(WeightFileError) {
        let map = try Self.readIndex(indexPath)
        let folder = indexPath.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        var names: [String] = []
        var index: [String: Int] = [:]
        for (_, file) in map where index[file] == nil {
            index[file] = names.count
            names.append(file)
        }
        var opened: [any WeightSource] = []
        for name in names {
            let path = folder.isEmpty ? name : "\(folder)/\(name)"
            opened.append(name.hasSuffix(".safetensors") ? try SafeTensorsFile(path: path) : try TorchCheckpoint(path: path))
        }
        var shardOf: [String: Int] = [:]
        for (tensor, file) in map {
            guard shardOf[tensor] == nil else {
                throw WeightFileError(file: indexPath, .invalidEntry(tensor: tensor, message: "named twice in weight_map"))
            }
            shardOf[tensor] = index[file]
        }
        var infos: [TensorInfo] = []
        for (i, shard) in opened.enumerated() {
            for t in shard.tensorInfos {
                guard let owner = shardOf[t.name] else {
                    throw WeightFileError(file: shard.origin, .invalidEntry(tensor: t.name, message: "is in this shard but not in \(indexPath)'s weight_map"))
                }
                guard owner == i else {
                    throw WeightFileError(file: shard.origin, .invalidEntry(tensor: t.name, message: "is in this shard, but the index places it in \(names[owner])"))
                }
                infos.append(t)
            }
        }
        let present = Set(infos.map(\.name))
        if let missing = map.first(where: { !present.contains($0.tensor) }) {
            throw WeightFileError(file: "\(folder.isEmpty ? "" : folder + "/")\(missing.file)",
                                  .invalidEntry(tensor: missing.tensor, message: "the index places it in this shard, which does not hold it"))
        }
        origin = indexPath
        tensorInfos = infos
        shardNames = names
        shards = opened
        self.shardOf = shardOf
    }

    public func floatTensor(_ name: String) throws(WeightFileError) -> Tensor {
        guard let i = shardOf[name] else { throw WeightFileError(file: origin, .missingTensor(name)) }
        return try shards[i].floatTensor(name)
    }

    public var readsConcurrently: Bool { shards.allSatisfy(\.readsConcurrently) }

    /// `weight_map` as (tensor, shard file) pairs in the index's order.
    private static func readIndex(_ path: String) throws(WeightFileError) -> [(tensor: String, file: String)] {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: indexLimit) } catch {
            throw WeightFileError(file: path, .cannotOpen(reason: error.reason))
        }
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch {
            throw WeightFileError(file: path, .invalidJSON(offset: error.offset, message: error.message))
        }
        guard case .object(let top) = json, case .object(let map)? = top.first(where: { $0.key == "weight_map" })?.value else {
            throw WeightFileError(file: path, .invalidEntry(tensor: "weight_map", message: "the index has no weight_map object"))
        }
        var out: [(tensor: String, file: String)] = []
        var files = Set<String>()
        for (tensor, value) in map {
            guard case .string(let file) = value else {
                throw WeightFileError(file: path, .invalidEntry(tensor: tensor, message: "its shard is not a file name string"))
            }
            let plain = !file.isEmpty && file != "." && file != ".." && !file.contains("/") && !file.contains("\\")
                && !file.unicodeScalars.contains { $0.value < 0x20 }
            guard plain else {
                throw WeightFileError(file: path, .invalidEntry(tensor: tensor, message: "its shard '\(file)' is not a plain file name beside the index"))
            }
            files.insert(file)
            guard files.count <= shardLimit else {
                throw WeightFileError(file: path, .invalidEntry(tensor: tensor, message: "the index names more than \(shardLimit) shards"))
            }
            out.append((tensor, file))
        }
        guard !out.isEmpty else {
            throw WeightFileError(file: path, .invalidEntry(tensor: "weight_map", message: "the weight_map is empty"))
        }
        return out
    }
}
