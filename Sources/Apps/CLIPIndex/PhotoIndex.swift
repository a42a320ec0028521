#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPEmbedding
import CLIPFiles
import Foundation
import GRDB

/// Why the index could not be opened, written or searched, by what a user does about it; every case but a query's
/// names the database or the file.
package enum IndexError: Error, CustomStringConvertible, Sendable {
    /// The search query is not one (empty, a weight out of range, an operator out of place): rewrite it.
    case query(String)
    /// The file is not a clip index (another application's database, not SQLite, not a regular file); nothing was
    /// written to it.
    case notAnIndex(path: String, reason: String)
    /// The database or its vector cache was altered or damaged: re-index.
    case corrupt(path: String, reason: String)
    /// Another clip process is writing to the index.
    case busy(path: String)
    /// The disk filled up; what was committed before stays.
    case diskFull(path: String)
    /// A model and the index, a query or imported embeddings disagree (dimension, fingerprint, a model not in the
    /// index).
    case mismatch(subject: String, reason: String)
    /// A file the operation reads or writes.
    case file(FileError)
    /// A file or folder the operation uses, with what is wrong with it.
    case unusable(path: String, reason: String)
    /// Writing the index out in clip-retrieval's layout failed.
    case export(EmbeddingJobError)
    /// A failure of this program rather than of its input.
    case `internal`(String)

    package var description: String {
        switch self {
        case .query(let reason), .internal(let reason): return reason
        case .notAnIndex(let path, let reason): return "\(path): not a clip index (\(reason))"
        case .corrupt(let path, let reason), .unusable(let path, let reason): return path.isEmpty ? reason : "\(path): \(reason)"
        case .busy(let path): return "\(path): another clip process is writing to this index; wait for it to finish"
        case .diskFull(let path): return "\(path): the disk is full; nothing after the last committed batch was written"
        case .mismatch(let subject, let reason): return "\(subject): \(reason)"
        case .file(let error): return error.description
        case .export(let error): return error.description
        }
    }

    /// A database error of the index at `path` as the case a user acts on.
    static func database(_ path: String, _ error: any Error) -> IndexError {
        if let e = error as? IndexError {
            // Raised inside a transaction, where the path is not at hand.
            if case .corrupt(let unnamed, let reason) = e, unnamed.isEmpty { return .corrupt(path: path, reason: reason) }
            return e
        }
        if let e = error as? DatabaseError {
            let message = e.message ?? "\(e.resultCode)"
            if e.resultCode == .SQLITE_NOTADB { return .notAnIndex(path: path, reason: "not an SQLite database") }
            if e.resultCode == .SQLITE_CORRUPT { return .corrupt(path: path, reason: "the database is corrupt (\(message))") }
            if e.resultCode == .SQLITE_FULL { return .diskFull(path: path) }
            if e.resultCode == .SQLITE_READONLY || e.resultCode == .SQLITE_CANTOPEN {
                return .unusable(path: path, reason: "cannot open the database for writing (\(message))")
            }
            return .unusable(path: path, reason: message)
        }
        return .unusable(path: path, reason: "\(error)")
    }
}

/// One file as the index records it.
package struct IndexedFile: Sendable, Equatable {
    /// Row id, stable while the file keeps its path.
    package var id: Int64
    /// The path as stored: relative to the index root when under it, absolute otherwise.
    package var path: String
    package var size: Int64
    /// Modification time in nanoseconds since 1970.
    package var modified: Int64
    /// SHA-256 of the contents (hex), nil until read.
    package var hash: String?
    package var width: Int?
    package var height: Int?
    /// Why the file could not be embedded, when it could not.
    package var error: String?
    /// The file was gone at the last index run of its folder.
    package var deleted: Bool
}

/// A model whose embeddings the index holds.
package struct IndexedModel: Sendable, Equatable {
    package var id: Int64
    /// Hash of the checkpoint's bytes, the preprocessing and the precision: embeddings from another fingerprint
    /// are not comparable.
    package var fingerprint: String
    /// What the user called it when it was first indexed (`default`, `ViT-B/32`, a path).
    package var name: String
    package var dimension: Int
}

/// The SQLite database of a photo index (through GRDB): files by path with size, modification time, content hash,
/// dimensions and decode errors; embeddings by content hash and model, so a moved, renamed or copied file is never
/// embedded twice and several models live side by side. WAL journal: readers never wait for the writer, and a
/// killed writer loses at most its open transaction.
package final class PhotoIndex: Sendable {
    /// The database file.
    package let path: String
    /// The folder stored paths are relative to: the database's own folder, so an index kept inside a photo folder
    /// moves with it. Files outside it are stored with absolute paths.
    package let root: String
    let pool: DatabasePool

    /// Opens (creating when missing) the index at `path`.
    package init(path: String) throws(IndexError) {
        let absolute = PhotoIndex.absolute(path)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: absolute, isDirectory: &isDir), isDir.boolValue {
            throw IndexError.unusable(path: path, reason: "is a directory; --db takes the database file (for example \(path)/.clip-index.sqlite)")
        }
        let folder = (absolute as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw IndexError.unusable(path: folder, reason: "cannot create the index's folder (\(error.localizedDescription))")
        }
        self.path = absolute
        // The real folder: scanned folders are real paths, so a database reached through a symbolic link must
        // compare its root with them as it is on disk.
        if let real = realpath(folder, nil) {
            self.root = String(cString: real)
            free(real)
        } else {
            self.root = folder
        }
        // Before anything can write to it: another application's database, or a hostile one, is refused as it is.
        try IndexSchema.check(absolute, shownAs: path)
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.label = "clip-index"
        configuration.prepareDatabase { db in
            try IndexSchema.harden(db)
            // 16 KiB pages hold seven 2 KiB embeddings each; 4 KiB pages hold one and waste half the file. Only a
            // new, empty database takes the setting (before WAL is turned on); an existing one keeps its size.
            try db.execute(sql: "PRAGMA page_size = 16384")
        }
        do {
            pool = try DatabasePool(path: absolute, configuration: configuration)
            try IndexSchema.migrator(root: folder).migrate(pool)
        } catch {
            throw IndexError.database(absolute, error)
        }
    }

    /// The per-user index: `$XDG_DATA_HOME/swift-clip/index.sqlite`, else `~/.local/share/swift-clip/index.sqlite`.
    package static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let data = environment["XDG_DATA_HOME"], data.hasPrefix("/") {
            return data + "/swift-clip/index.sqlite"
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.local/share/swift-clip/index.sqlite"
    }

    static func absolute(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return (joined as NSString).standardizingPath
    }

    /// The index's one writer: a second process that asks while this lock is held is refused at once, naming the
    /// database, rather than waiting on SQLite's lock. An flock on `<db>.lock`, released by `release()` or by the
    /// kernel when the process dies.
    package final class WriterLock: Sendable {
        private let fd: Int32

        init(database: String) throws(IndexError) {
            let path = database + ".lock"
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw IndexError.unusable(path: path, reason: "cannot create the index's lock file: \(String(cString: strerror(errno)))")
            }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                throw IndexError.busy(path: database)
            }
        }

        package func release() {
            flock(fd, LOCK_UN)
            close(fd)
        }
    }

    /// Takes the writer lock (indexing, merging, importing).
    package func lockForWriting() throws(IndexError) -> WriterLock { try WriterLock(database: path) }

    // MARK: Reading

    /// Runs `body` in a read transaction (a consistent snapshot while the writer goes on).
    func read<T>(_ body: (Database) throws -> T) throws(IndexError) -> T {
        do { return try pool.read(body) } catch { throw IndexError.database(path, error) }
    }

    /// Runs `body` in one write transaction: all of it lands or none of it.
    func write<T>(_ body: (Database) throws -> T) throws(IndexError) -> T {
        do { return try pool.write(body) } catch { throw IndexError.database(path, error) }
    }

    /// Every model in the index.
    package func models() throws(IndexError) -> [IndexedModel] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, fingerprint, name, dimension FROM models ORDER BY id").map {
                IndexedModel(id: $0[0], fingerprint: $0[1], name: $0[2], dimension: $0[3])
            }
        }
    }

    /// The model with this fingerprint, registered when new (indexing). A dimension that differs from the one
    /// stored means the fingerprint collided or the database was edited: an error.
    package func model(fingerprint: String, name: String, dimension: Int) throws(IndexError) -> IndexedModel {
        let found = try write { db -> IndexedModel in
            if let row = try Row.fetchOne(db, sql: "SELECT id, name, dimension FROM models WHERE fingerprint = ?",
                                          arguments: [fingerprint]) {
                return IndexedModel(id: row[0], fingerprint: fingerprint, name: row[1], dimension: row[2])
            }
            try db.execute(sql: "INSERT INTO models (fingerprint, name, dimension) VALUES (?, ?, ?)",
                           arguments: [fingerprint, name, dimension])
            return IndexedModel(id: db.lastInsertedRowID, fingerprint: fingerprint, name: name, dimension: dimension)
        }
        guard found.dimension == dimension else {
            throw IndexError.mismatch(subject: path, reason: "model \(found.name) is stored with \(found.dimension)-dimensional embeddings, but \(name) gives \(dimension)")
        }
        return found
    }

    /// The model with this fingerprint when the index has it (searching), else an error naming both the model
    /// asked for and those the index holds.
    package func existingModel(fingerprint: String, name: String) throws(IndexError) -> IndexedModel {
        let all = try models()
        if let m = all.first(where: { $0.fingerprint == fingerprint }) { return m }
        let held = all.isEmpty ? "none (index some folders first: clip index FOLDER)"
            : all.map { "\($0.name) (\($0.fingerprint.prefix(12)))" }.joined(separator: ", ")
        throw IndexError.mismatch(subject: path, reason: "the index has no embeddings from model \(name) (\(fingerprint.prefix(12))); it holds: \(held). Search with one of those (--model), or index with this one")
    }

    /// The file rows under `folders` (absolute real paths), deleted ones included, by the bytes of their stored
    /// path (two names Swift calls equal are two files on disk): read by ranges of the path index, so an index
    /// run's start-up does not grow with the files in other folders.
    func files(under folders: [String]) throws(IndexError) -> [[UInt8]: IndexedFile] {
        try read { db in
            var out: [[UInt8]: IndexedFile] = [:]
            for (where_, arguments) in pathRanges(folders) {
                let rows = try Row.fetchCursor(db, sql: """
                    SELECT id, path, size, modified, hash, width, height, error, deleted FROM files WHERE \(where_)
                    """, arguments: arguments)
                while let r = try rows.next() {
                    let f = IndexedFile(id: r[0], path: r[1], size: r[2], modified: r[3], hash: r[4], width: r[5],
                                        height: r[6], error: r[7], deleted: r[8])
                    let absolute = absolutePath(f.path)
                    guard folders.contains(where: { isPath(absolute, inside: $0) }) else { continue }
                    out[Array(f.path.utf8)] = f
                }
            }
            return out
        }
    }

    /// SQL conditions on `path` (with their arguments) that together cover every stored path under `folders`
    /// (and possibly more, which the caller filters).
    func pathRanges(_ folders: [String]) -> [(String, StatementArguments)] {
        func range(_ prefix: String) -> (String, StatementArguments) {
            // Every string starting with `prefix` (ending in "/") sorts at or after it and before it with "0" for
            // the "/" (the next byte): a range of the unique index on path.
            ("path >= ? AND path < ?", [prefix, String(prefix.dropLast()) + "0"])
        }
        var out: [(String, StatementArguments)] = []
        // Deduplicated by bytes: a Set of Strings would merge two folders whose names differ only in Unicode form.
        var seen = Set<[UInt8]>()
        for folder in folders where seen.insert(Array(folder.utf8)).inserted {
            if folder == "/" { return [("1", [])] }
            if root != "/" && isSamePath(folder, root) {
                // Relative paths are all under the root; an absolute one there too, in case one was stored so.
                out.append(("(path < '/' OR path >= '0')", []))
                out.append(range(folder + "/"))
            } else if root != "/" && isPath(root, inside: folder) {
                // The index's folder is inside this one: its relative paths are all under it.
                out.append(("(path < '/' OR path >= '0')", []))
                out.append(range(folder + "/"))
            } else if root != "/" && isPath(folder, inside: root) {
                out.append(range(storedPath(folder) + "/"))
                out.append(range(folder + "/"))
            } else {
                out.append(range(folder + "/"))
            }
        }
        return out
    }

    /// Content hashes of the files under `folders` that have an embedding from `model`.
    func embeddedHashes(model: IndexedModel, under folders: [String]) throws(IndexError) -> Set<String> {
        try read { db in
            var out = Set<String>()
            for (where_, arguments) in pathRanges(folders) {
                var all: StatementArguments = [model.id]
                all += arguments
                out.formUnion(try String.fetchAll(db, sql: """
                    SELECT e.hash FROM files JOIN embeddings e ON e.hash = files.hash AND e.model = ? WHERE \(where_)
                    """, arguments: all))
            }
            return out
        }
    }

    /// Whether content `hash` has an embedding from `model`.
    func hasEmbedding(_ hash: String, model: IndexedModel) -> Bool {
        (try? read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM embeddings WHERE hash = ? AND model = ?", arguments: [hash, model.id])
        }) == true
    }

    /// Whether `model`'s moments of the video `hash` were sampled as `sampling` says.
    func hasMoments(_ hash: String, model: IndexedModel, sampling: String) -> Bool {
        (try? read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM frames WHERE hash = ? AND model = ? AND sampling = ? LIMIT 1",
                              arguments: [hash, model.id, sampling])
        }) == true
    }

    /// The embedding `model` holds for the content `hash`, when it holds one of the model's dimension.
    func storedEmbedding(_ hash: String, model: IndexedModel) -> [Float]? {
        let blob = try? read { db in
            try Data.fetchOne(db, sql: "SELECT vector FROM embeddings WHERE hash = ? AND model = ?", arguments: [hash, model.id])
        }
        return blob.flatMap { $0 }.flatMap { VectorCacheWriter.floats($0, dimension: model.dimension) }
    }

    /// Counts for `clip index --stats` and summaries.
    package func statistics() throws(IndexError) -> (files: Int, deleted: Int, failed: Int, embeddings: [String: Int]) {
        try read { db in
            let files = try Int.fetchOne(db, sql: "SELECT count(*) FROM files WHERE deleted = 0 AND error IS NULL") ?? 0
            let deleted = try Int.fetchOne(db, sql: "SELECT count(*) FROM files WHERE deleted = 1") ?? 0
            let failed = try Int.fetchOne(db, sql: "SELECT count(*) FROM files WHERE deleted = 0 AND error IS NOT NULL") ?? 0
            var embeddings: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT m.name, count(e.hash) FROM models m LEFT JOIN embeddings e ON e.model = m.id GROUP BY m.id") {
                embeddings[r[0]] = r[1]
            }
            return (files, deleted, failed, embeddings)
        }
    }

    /// SQLite's `PRAGMA integrity_check`: "ok", or what is wrong.
    package func integrityCheck() throws(IndexError) -> String {
        try read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ") }
    }

    /// The generation counter: bumped by every transaction that changes which vectors a search sees.
    func generation(_ db: Database) throws -> Int64 { try Self.generationValue(db) }

    /// The current generation and its nonce; nil when the database holds none for it (an altered database: no
    /// cache matches it then, see `VectorStore.isCurrent`).
    func state(_ db: Database) throws -> (generation: Int64, nonce: Int64?) {
        let generation = try generation(db)
        return (generation, try Self.nonce(of: generation, db))
    }

    /// Starts a change: bumps the generation and returns the new one, which every file row the transaction
    /// changes must carry in `changed` (see `filesChanged`), so the vector cache finds it.
    @discardableResult
    static func bumpGeneration(_ db: Database) throws -> Int64 {
        let previous = try generationValue(db)
        // Only an altered database holds a counter this far from where every index starts.
        guard previous >= 0, previous < Int64.max - historyKept else {
            throw IndexError.corrupt(path: "", reason: "the index's generation counter reads \(previous); the database was altered (make a new index)")
        }
        let generation = previous + 1
        try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'generation'", arguments: [String(generation)])
        try db.execute(sql: "INSERT OR REPLACE INTO generations (generation, nonce) VALUES (?, ?)",
                       arguments: [generation, Int64.random(in: .min ... .max)])
        // The recent history is enough: a cache older than that is rebuilt.
        try db.execute(sql: "DELETE FROM generations WHERE generation < ? OR generation > ?",
                       arguments: [generation - historyKept, generation])
        return generation
    }

    /// Generations whose nonces are kept.
    static let historyKept: Int64 = 10_000

    /// The nonce of `generation`, when the database still holds it.
    static func nonce(of generation: Int64, _ db: Database) throws -> Int64? {
        try Int64.fetchOne(db, sql: "SELECT nonce FROM generations WHERE generation = ?", arguments: [generation])
    }

    static func generationValue(_ db: Database) throws -> Int64 {
        Int64(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'generation'") ?? "0") ?? 0
    }

    /// Marks the files holding `hash` as changed at `generation`: a new or replaced embedding of a hash changes
    /// what every file with that content shows, not only the file being indexed.
    static func filesChanged(hash: String, generation: Int64, _ db: Database) throws {
        try db.execute(sql: "UPDATE files SET changed = ? WHERE hash = ? AND changed != ?", arguments: [generation, hash, generation])
    }

    // MARK: Paths

    /// The folders indexed into this index (real paths), the only places the server serves files from: absolute,
    /// and never the root of the file system (a hostile index could claim it).
    package func indexedFolders() throws(IndexError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT path FROM folders ORDER BY path") }
            .filter { $0.hasPrefix("/") && $0 != "/" && !$0.hasSuffix("/") }
    }

    /// Records folders (real paths) as indexed.
    func recordFolders(_ folders: [String]) throws(IndexError) {
        try write { db in
            for f in folders { try db.execute(sql: "INSERT OR IGNORE INTO folders (path) VALUES (?)", arguments: [f]) }
        }
    }

    /// Whether a real path lies inside one of `folders` (absolute real paths; "/" contains nothing here).
    package static func isInside(_ path: String, folders: [String]) -> Bool {
        folders.contains { $0.hasPrefix("/") && $0 != "/" && isPath(path, inside: $0) }
    }

    /// An index written before the folders table records none: its folders are taken to be those its images are
    /// in (their real parent folders, or as stored when a disk is not mounted now), so the server serves what it
    /// served before, and nothing more. Run inside the migration that adds the table.
    static func recordFoldersOfOlderIndex(_ db: Database, root: String) throws {
        let paths = try String.fetchAll(db, sql: "SELECT path FROM files WHERE error IS NULL AND deleted = 0")
        var parents = Set<String>()
        for stored in paths {
            let absolute = stored.hasPrefix("/") ? stored : root + "/" + stored
            parents.insert((absolute as NSString).deletingLastPathComponent)
        }
        for parent in parents {
            var folder = parent
            if let real = realpath(parent, nil) {
                folder = String(cString: real)
                free(real)
            }
            guard folder.hasPrefix("/"), folder != "/" else { continue }
            try db.execute(sql: "INSERT OR IGNORE INTO folders (path) VALUES (?)", arguments: [folder])
        }
    }

    /// The stored form of an absolute path: relative when under the root.
    package func storedPath(_ absolute: String) -> String {
        guard root != "/", isPath(absolute, inside: root),
              let relative = String(absolute.utf8.dropFirst(root.utf8.count + 1)) else { return absolute }
        return relative
    }

    /// The absolute path of a stored one.
    package func absolutePath(_ stored: String) -> String {
        stored.hasPrefix("/") ? stored : root + "/" + stored
    }

    // MARK: Checkpoint hashes

    /// SHA-256 of a checkpoint, from the cache when its size and modification time are unchanged.
    func cachedCheckpointHash(path: String, size: Int64, modified: Int64) throws(IndexError) -> String? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT sha256 FROM checkpoints WHERE path = ? AND size = ? AND modified = ?",
                                arguments: [path, size, modified])
        }
    }

    func rememberCheckpointHash(path: String, size: Int64, modified: Int64, sha256: String) throws(IndexError) {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO checkpoints (path, size, modified, sha256) VALUES (?, ?, ?, ?)",
                           arguments: [path, size, modified, sha256])
        }
    }
}

/// An embedding as stored: little-endian float32.
func vectorBlob(_ v: UnsafeBufferPointer<Float>) -> Data {
    var d = Data(capacity: v.count * 4)
    for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
    return d
}
