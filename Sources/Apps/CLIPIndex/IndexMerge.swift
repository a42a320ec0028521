import CLIPFiles
import Foundation
import GRDB

extension PhotoIndex {
    /// Copies another index's models (matched by fingerprint), embeddings and files into this one, in one
    /// transaction. Paths are rewritten from the other index's root to this one's; a path both hold keeps the
    /// record with the newer modification time. Returns how many rows of each kind were added or updated.
    package func merge(from source: String) throws(IndexError) -> (files: Int, embeddings: Int, models: Int) {
        let other = PhotoIndex.absolute(source)
        guard other != path else { throw IndexError.unusable(path: source, reason: "cannot merge an index into itself") }
        guard FileManager.default.fileExists(atPath: other) else { throw IndexError.unusable(path: source, reason: "no such index") }
        // Opening it runs the migrations, so an index written by an older version is read in this schema.
        let otherRoot = try PhotoIndex(path: other).root
        do {
            return try pool.writeWithoutTransaction { db in
                try db.execute(sql: "ATTACH DATABASE ? AS src", arguments: [other])
                defer { try? db.execute(sql: "DETACH DATABASE src") }
                var counts = (files: 0, embeddings: 0, models: 0)
                try db.inTransaction {
                    let generation = try PhotoIndex.bumpGeneration(db)
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO models (fingerprint, name, dimension)
                        SELECT fingerprint, name, dimension FROM src.models
                        """)
                    counts.models = db.changesCount
                    // A model both hold must agree on the dimension, or the vectors would be misread.
                    if let clash = try String.fetchOne(db, sql: """
                        SELECT m.name FROM models m JOIN src.models s ON s.fingerprint = m.fingerprint
                        WHERE s.dimension != m.dimension
                        """) {
                        throw IndexError.mismatch(subject: source, reason: "model \(clash) has another dimension there; not merged")
                    }
                    // A video's moments come with its embedding, and only then: contents both indexes hold keep
                    // this one's moments and mean, not a mix of two samplings.
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO frames (hash, model, time, vector, sampling)
                        SELECT f.hash, m.id, f.time, f.vector, f.sampling FROM src.frames f
                        JOIN src.models sm ON sm.id = f.model JOIN models m ON m.fingerprint = sm.fingerprint
                        WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.hash = f.hash AND e.model = m.id)
                        """)
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO embeddings (hash, model, vector)
                        SELECT e.hash, m.id, e.vector FROM src.embeddings e
                        JOIN src.models sm ON sm.id = e.model JOIN models m ON m.fingerprint = sm.fingerprint
                        """)
                    counts.embeddings = db.changesCount
                    let prefix = root == "/" ? "" : root + "/"
                    try db.execute(sql: """
                        INSERT INTO files (path, size, modified, hash, width, height, error, deleted, changed)
                        SELECT CASE WHEN ? != '' AND substr(a, 1, length(?)) = ? THEN substr(a, length(?) + 1) ELSE a END,
                               size, modified, hash, width, height, error, deleted, ?
                        FROM (SELECT CASE WHEN path LIKE '/%' THEN path ELSE ? || '/' || path END AS a, *
                              FROM src.files) WHERE true
                        ON CONFLICT (path) DO UPDATE SET size = excluded.size, modified = excluded.modified,
                            hash = excluded.hash, width = excluded.width, height = excluded.height,
                            error = excluded.error, deleted = excluded.deleted, changed = excluded.changed
                        WHERE excluded.modified > files.modified
                        """, arguments: [prefix, prefix, prefix, prefix, generation, otherRoot])
                    counts.files = db.changesCount
                    // Files here whose content just gained an embedding of some model show it now.
                    try db.execute(sql: "UPDATE files SET changed = ? WHERE changed != ? AND hash IN (SELECT hash FROM src.embeddings)",
                                   arguments: [generation, generation])
                    // The other index's folders come along, so its files are served from here too. An older index
                    // recorded none: its own folder is its files' place.
                    // Only folders that exist here as directories: a merged index cannot claim more than is there.
                    for f in try String.fetchAll(db, sql: "SELECT path FROM src.folders") where f.hasPrefix("/") && f != "/" {
                        var st = stat()
                        guard stat(f, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
                        try db.execute(sql: "INSERT OR IGNORE INTO folders (path) VALUES (?)", arguments: [f])
                    }
                    return .commit
                }
                return counts
            }
        } catch {
            throw IndexError.database(path, error)
        }
    }
}
