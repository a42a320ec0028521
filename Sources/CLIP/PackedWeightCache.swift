import CLIPFiles
import CLIPLayers
import CLIPTensor
import CLIPWeights
import Foundation

/// Where loads keep checkpoints' weights in the layout the kernels use, so that the second load of a checkpoint
/// maps a file instead of decoding, converting, quantising and packing (`CLIPModel.load(path:…, cache:)`).
///
/// A file is keyed by the checkpoint's content (SHA-256, remembered per path, size and modification time so that an
/// unchanged checkpoint is not read again), the architecture, the precision, the towers and everything the packed
/// layout depends on (CPU level, extensions, kernel block and panel sizes). A file that fails validation is
/// deleted and rebuilt. The directory is kept under `sizeLimit` by removing the least recently used files.
public struct PackedWeightCache: Sendable {
    /// The directory holding the cache files (created when first written).
    public let directory: String
    /// The most bytes the cache files may take together; the least recently used go first.
    public let sizeLimit: Int

    /// A cache in `directory`, at most `sizeLimit` bytes (default 8 GiB).
    public init(directory: String, sizeLimit: Int = 8 << 30) {
        self.directory = directory
        self.sizeLimit = max(sizeLimit, 0)
    }

    /// The user's cache: `$CLIP_WEIGHT_CACHE` (a directory; `off` disables it), else
    /// `$XDG_CACHE_HOME/swift-clip/packed`, else `~/.cache/swift-clip/packed`; bounded by
    /// `$CLIP_WEIGHT_CACHE_LIMIT` (GiB, default 8). Nil when disabled or no home directory is known.
    public static var user: PackedWeightCache? {
        let env = ProcessInfo.processInfo.environment
        let limit = env["CLIP_WEIGHT_CACHE_LIMIT"].flatMap(Double.init).flatMap { Checked.int($0 * Double(1 << 30), in: 0...(1 << 50)) }
            ?? (8 << 30)
        if let dir = env["CLIP_WEIGHT_CACHE"], !dir.isEmpty {
            return dir == "off" ? nil : PackedWeightCache(directory: dir, sizeLimit: limit)
        }
        if let xdg = env["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            return PackedWeightCache(directory: xdg + "/swift-clip/packed", sizeLimit: limit)
        }
        guard let home = env["HOME"], home.hasPrefix("/") else { return nil }
        return PackedWeightCache(directory: home + "/.cache/swift-clip/packed", sizeLimit: limit)
    }

    /// One cache file, as `clip cache list` shows it.
    public struct Entry: Sendable {
        /// The cache file.
        public let path: String
        /// The checkpoint it was written from.
        public let source: String
        /// The precision its layer weights are packed in.
        public let precision: String
        /// Its size in bytes.
        public let bytes: Int
        /// When a load last used it.
        public let lastUsed: Date
    }

    static let suffix = ".clippack"

    /// The cache files, most recently used first (unreadable ones are listed with an empty source).
    public func entries() -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(Self.suffix) }.compactMap { name -> Entry? in
            let path = directory + "/" + name
            guard let a = try? FileManager.default.attributesOfItem(atPath: path),
                  a[.type] as? FileAttributeType == .typeRegular else { return nil }
            let header = (try? MappedFile(path: path)).flatMap { try? PackedWeightFile.header(of: $0, path: path) }
            return Entry(path: path, source: header?.source ?? "", precision: header?.precision ?? "",
                         bytes: (a[.size] as? Int) ?? 0, lastUsed: (a[.modificationDate] as? Date) ?? .distantPast)
        }.sorted { $0.lastUsed > $1.lastUsed }
    }

    /// Removes every cache file and remembered checkpoint digest; returns the bytes freed.
    @discardableResult
    public func clear() throws(PackedWeightFileError) -> Int {
        var freed = 0
        for entry in entries() {
            guard unlink(entry.path) == 0 || errno == ENOENT else {
                throw PackedWeightFileError(path: entry.path, message: "cannot remove: \(String(cString: strerror(errno)))")
            }
            freed += entry.bytes
        }
        try? FileManager.default.removeItem(atPath: directory + "/checkpoints")
        return freed
    }

    // MARK: Keys

    /// The SHA-256 of the checkpoint at `path`, read once per content: remembered under the file's identity (device,
    /// inode, size, modification and change times), which any rewrite changes.
    func digest(of path: String) throws(FileError) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        #if canImport(Darwin)
        let (mtime, ctime) = (st.st_mtimespec, st.st_ctimespec)
        #else
        let (mtime, ctime) = (st.st_mtim, st.st_ctim)
        #endif
        let identity = "\(st.st_dev) \(st.st_ino) \(st.st_size) \(mtime.tv_sec).\(mtime.tv_nsec) \(ctime.tv_sec).\(ctime.tv_nsec)"
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let memo = directory + "/checkpoints/" + SHA256.hex(Array(absolute.utf8)).prefix(32)
        if let text = try? String(contentsOfFile: memo, encoding: .utf8) {
            let lines = text.split(separator: "\n").map(String.init)
            if lines.count == 2, lines[0] == identity, lines[1].count == 64, lines[1].allSatisfy(\.isHexDigit) {
                return lines[1]
            }
        }
        let digest = try SHA256.file(path)
        try? FileManager.default.createDirectory(atPath: directory + "/checkpoints", withIntermediateDirectories: true)
        try? Data((identity + "\n" + digest).utf8).write(to: URL(fileURLWithPath: memo), options: .atomic)
        return digest
    }

    /// The key of the cache file for a checkpoint's content, loaded as `configuration` in `precision` with `towers`.
    static func key(digest: String, configuration: CLIPConfiguration, precision: Precision,
                    towers: CLIPModel.Towers) -> String {
        ["swift-clip packed weights", "checkpoint sha256 \(digest)", "configuration \(configuration)",
         "precision \(precision.rawValue)", "towers \(towers == .both ? "both" : "text")",
         PackedMatrix.layoutDescription].joined(separator: "\n")
    }

    func path(forKey key: String) -> String { directory + "/" + SHA256.hex(Array(key.utf8)) + Self.suffix }

    /// The valid cache file for `key`, marked as used; a file that fails validation is deleted (and rebuilt by
    /// the load).
    func open(key: String) -> PackedWeightFile? {
        let path = path(forKey: key)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            let file = try PackedWeightFile(path: path, key: key)
            utimes(path, nil)  // last used, for the size bound
            return file
        } catch {
            unlink(path)
            return nil
        }
    }

    /// Writes the cache file for `key` from a model just built, then trims the directory to `sizeLimit`.
    func store(_ model: CLIPModel, recording: ParameterReader.Recording, key: String, source: String) throws(PackedWeightFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PackedWeightFileError(path: directory, message: "cannot create the cache directory (\(error.localizedDescription))")
        }
        var packs: [String: PackedMatrix] = [:]
        Self.collectPackedMatrices(in: model, into: &packs)
        let tensors = recording.tensors.filter { !recording.consumed.contains($0.key) }.sorted { $0.key < $1.key }
        let layers = packs.sorted { $0.key < $1.key }.compactMap { name, matrix -> (PackedMatrix, Tensor?)? in
            guard let bias = recording.biases[name] else { return nil }
            return (matrix, bias)
        }
        let path = path(forKey: key)
        try PackedWeightFile.write(to: path, key: key, source: source, precision: model.precision,
                                   tensors: tensors.map { ($0.key, $0.value) }, packs: layers)
        trim(keeping: path)
    }

    /// Removes the least recently used files until the rest fit `sizeLimit` (never `kept`).
    func trim(keeping kept: String) {
        var total = entries().reduce(0) { $0 + $1.bytes }
        for entry in entries().reversed() where total > sizeLimit && entry.path != kept {
            if unlink(entry.path) == 0 { total -= entry.bytes }
        }
    }

    /// Every named packed matrix in a built model (walked by reflection: the towers' layer types are many, and a
    /// model is a tree of values). Plain arrays and tensors are not descended into.
    static func collectPackedMatrices(in value: Any, into found: inout [String: PackedMatrix]) {
        if let matrix = value as? PackedMatrix {
            if let name = matrix.name { found[name] = matrix }
            return
        }
        if value is Tensor || value is [Float] || value is [Int] || value is [Int32] || value is String { return }
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .collection || mirror.displayStyle == .dictionary || mirror.displayStyle == .set,
           mirror.children.count > 4096 { return }
        for child in mirror.children { collectPackedMatrices(in: child.value, into: &found) }
    }
}
