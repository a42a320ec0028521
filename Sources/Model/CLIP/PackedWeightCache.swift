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
        // GiB, fractions allowed; anything not a number from 0 to 1 PiB keeps the default.
        let limit = env["CLIP_WEIGHT_CACHE_LIMIT"].flatMap(Double.init).flatMap {
            Checked.int(($0 * Double(1 << 30)).rounded(.down), in: 0...(1 << 50))
        } ?? (8 << 30)
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
    /// The folder of remembered checkpoint digests, one small file per checkpoint path.
    static let digestFolder = ".clip-checkpoint-digests"
    /// A remembered digest's file name: 32 hex digits.
    static func isDigestFileName(_ name: String) -> Bool { name.count == 32 && name.allSatisfy(\.isHexDigit) }
    /// Temporaries older than this are left by a killed writer (a live one finishes a model in seconds).
    static let abandonedAfter: TimeInterval = 3600

    /// The cache files, most recently used first (unreadable ones are listed with an empty source).
    public func entries() -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(Self.suffix) || $0.hasSuffix(Self.labelSuffix) }.compactMap { name -> Entry? in
            let path = directory + "/" + name
            guard let a = try? FileManager.default.attributesOfItem(atPath: path),
                  a[.type] as? FileAttributeType == .typeRegular else { return nil }
            let (source, precision): (String?, String?)
            if name.hasSuffix(Self.labelSuffix) {
                let header = Self.labelHeader(path)
                (source, precision) = (header.map { "\($0.source) (label embeddings: \($0.rows) labels)" }, header?.precision)
            } else {
                let header = (try? MappedFile(path: path)).flatMap { try? PackedWeightFile.header(of: $0, path: path) }
                (source, precision) = (header?.source, header?.precision)
            }
            return Entry(path: path, source: source ?? "", precision: precision ?? "",
                         bytes: (a[.size] as? Int) ?? 0, lastUsed: (a[.modificationDate] as? Date) ?? .distantPast)
        }.sorted { $0.lastUsed > $1.lastUsed }
    }

    /// Removes every cache file, temporary and remembered checkpoint digest (only files this cache names: nothing
    /// else in the directory is touched); returns the bytes freed.
    @discardableResult
    public func clear() throws(PackedWeightFileError) -> Int {
        var freed = 0
        for entry in entries() {
            guard unlink(entry.path) == 0 || errno == ENOENT else {
                throw PackedWeightFileError(path: entry.path, message: "cannot remove: \(String(cString: strerror(errno)))",
                                            damaged: false)
            }
            freed += entry.bytes
        }
        freed += removeTemporaries(olderThan: 0)
        let digests = directory + "/" + Self.digestFolder
        for name in (try? FileManager.default.contentsOfDirectory(atPath: digests)) ?? [] where Self.isDigestFileName(name) {
            unlink(digests + "/" + name)
        }
        rmdir(digests)  // only when empty
        return freed
    }

    /// Removes temporaries (`NAME.clippack.partial-…`) last modified more than `age` seconds ago; returns their bytes.
    @discardableResult
    func removeTemporaries(olderThan age: TimeInterval) -> Int {
        var freed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where name.contains(Self.suffix + PackedWeightFile.partialMarker) || name.contains(Self.labelSuffix + PackedWeightFile.partialMarker) {
            let path = directory + "/" + name
            guard let a = try? FileManager.default.attributesOfItem(atPath: path), a[.type] as? FileAttributeType == .typeRegular,
                  let modified = a[.modificationDate] as? Date, Date().timeIntervalSince(modified) >= age else { continue }
            if unlink(path) == 0 { freed += (a[.size] as? Int) ?? 0 }
        }
        return freed
    }

    // MARK: Keys

    /// A regular file's identity: device, inode, size, modification and change times. Any rewrite, rename over it
    /// or `touch` changes it. Nil when `path` is not a regular file.
    package static func identity(of path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        #if canImport(Darwin)
        let (mtime, ctime) = (st.st_mtimespec, st.st_ctimespec)
        #else
        let (mtime, ctime) = (st.st_mtim, st.st_ctim)
        #endif
        return "\(st.st_dev) \(st.st_ino) \(st.st_size) \(mtime.tv_sec).\(mtime.tv_nsec) \(ctime.tv_sec).\(ctime.tv_nsec)"
    }

    /// The SHA-256 of the checkpoint at `path`, whose identity is `identity`, read once per content: remembered
    /// under the identity. Nil when the file changed while it was hashed. An identity younger than two seconds is
    /// not remembered (a rewrite within the file system's timestamp granularity would keep it).
    package func digest(of path: String, identity: String) -> String? {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let folder = directory + "/" + Self.digestFolder
        let memo = folder + "/" + SHA256.hex(Array(absolute.utf8)).prefix(32)
        if let text = try? String(contentsOfFile: memo, encoding: .utf8) {
            let lines = text.split(separator: "\n").map(String.init)
            if lines.count == 2, lines[0] == identity, lines[1].count == 64, lines[1].allSatisfy(\.isHexDigit) {
                return lines[1]
            }
        }
        guard let digest = try? SHA256.file(path), Self.identity(of: path) == identity else { return nil }
        // The later of the modification and change times: a copy that kept an old mtime (cp -p, tar, rsync -t) is
        // still new.
        var st = stat()
        #if canImport(Darwin)
        let changed = stat(path, &st) == 0 ? max(st.st_mtimespec.tv_sec, st.st_ctimespec.tv_sec) : Int.max
        #else
        let changed = stat(path, &st) == 0 ? max(st.st_mtim.tv_sec, st.st_ctim.tv_sec) : Int.max
        #endif
        if Int(time(nil)) - changed >= 2 {
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try? Data((identity + "\n" + digest).utf8).write(to: URL(fileURLWithPath: memo), options: .atomic)
        }
        return digest
    }

    /// The key of the cache file for a checkpoint's content, loaded as `configuration` in `precision` with `towers`.
    package static func key(digest: String, configuration: CLIPConfiguration, precision: Precision,
                    towers: CLIPModel.Towers) -> String {
        ["swift-clip packed weights, file format \(PackedWeightFile.format)", "checkpoint sha256 \(digest)", "configuration \(configuration)",
         "precision \(precision.rawValue)", "towers \(towers == .both ? "both" : towers == .textOnly ? "text" : "image")",
         PackedMatrix.layoutDescription].joined(separator: "\n")
    }

    package func path(forKey key: String) -> String { directory + "/" + SHA256.hex(Array(key.utf8)) + Self.suffix }

    /// The valid cache file for `key`, marked as used; a file found damaged or foreign is deleted (and rebuilt by
    /// the load), one that cannot be opened (not a regular file, no permission) is left alone.
    package func open(key: String, precision: Precision) -> PackedWeightFile? {
        let path = path(forKey: key)
        guard Self.isCacheFile(path) else { return nil }
        do {
            let file = try PackedWeightFile(path: path, key: key, precision: precision)
            utimes(path, nil)  // last used, for the size bound
            return file
        } catch {
            if error.damaged { unlink(path) }
            return nil
        }
    }

    /// Whether a regular file is at `path`. A symbolic link there is removed: never ours, since writers rename
    /// regular files into place. Anything else (a FIFO, a directory) is left alone and not read.
    static func isCacheFile(_ path: String) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else { return false }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            if (st.st_mode & S_IFMT) == S_IFLNK { unlink(path) }
            return false
        }
        return true
    }

    /// Writes the cache file for `key` from a model just built, then trims the directory to `sizeLimit`.
    package func store(_ model: CLIPModel, recording: ParameterReader.Recording, key: String, source: String) throws(PackedWeightFileError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PackedWeightFileError(path: directory, message: "cannot create the cache directory (\(error.localizedDescription))",
                                        damaged: false)
        }
        var st = stat()
        if lstat(path(forKey: key), &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
            // Something else holds the name (a directory, a FIFO): writing would fail at the rename every time.
            throw PackedWeightFileError(path: path(forKey: key), message: "not a regular file; remove it", damaged: false)
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
                                   tensors: tensors.map { ($0.key, $0.value.shape, $0.value.values) }, packs: layers)
        trim(keeping: path)
    }

    /// Removes the least recently used files until the rest fit `sizeLimit` (never `kept`), and temporaries a
    /// killed writer left.
    func trim(keeping kept: String) {
        removeTemporaries(olderThan: Self.abandonedAfter)
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
