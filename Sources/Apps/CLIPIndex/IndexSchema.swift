import CSQLiteGuard
import Foundation
import GRDB
import GRDBSQLite

/// The index's schema, and how a database file is checked against it before anything is written.
///
/// An index path may name any file: another application's database (`clip search --db other.sqlite`), or one made
/// to attack (a `files` view over an endless recursive query, a trigger that runs on insert). So a file is opened
/// read-only first and its whole schema (`sqlite_master`) must equal what this program's migrations write, table by
/// table and index by index, word for word; anything else is refused as "not a clip index" and the file is left as
/// it was (opening it for writing would switch it to WAL and add tables). Every connection then runs defensively:
/// SQLite's defensive mode, triggers and views disabled (the index has none), untrusted schema functions off.
enum IndexSchema {
    /// SQLite's application id for clip indexes ('CLIP'), set by the migration that added the folders table.
    static let applicationID: Int32 = 0x434C_4950

    static var migrator: DatabaseMigrator { migrator(root: nil) }

    /// The migrations; `root` (the index's folder) lets the one that adds the folders table record an older index's
    /// folders in the same transaction.
    static func migrator(root: String?) -> DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                INSERT INTO meta (key, value) VALUES ('generation', '0');
                CREATE TABLE models (
                    id INTEGER PRIMARY KEY,
                    fingerprint TEXT NOT NULL UNIQUE,
                    name TEXT NOT NULL,
                    dimension INTEGER NOT NULL CHECK (dimension > 0));
                CREATE TABLE files (
                    id INTEGER PRIMARY KEY,
                    path TEXT NOT NULL UNIQUE,
                    size INTEGER NOT NULL,
                    modified INTEGER NOT NULL,
                    hash TEXT,
                    width INTEGER,
                    height INTEGER,
                    error TEXT,
                    deleted INTEGER NOT NULL DEFAULT 0);
                CREATE INDEX files_hash ON files (hash);
                CREATE TABLE embeddings (
                    id INTEGER PRIMARY KEY,
                    hash TEXT NOT NULL,
                    model INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
                    vector BLOB NOT NULL,
                    UNIQUE (hash, model));
                CREATE TABLE checkpoints (
                    path TEXT PRIMARY KEY NOT NULL,
                    size INTEGER NOT NULL,
                    modified INTEGER NOT NULL,
                    sha256 TEXT NOT NULL);
                """)
        }
        // The folders `clip index` was given (real paths): the server serves only files inside them.
        m.registerMigration("v2") { db in
            try db.execute(sql: "CREATE TABLE folders (path TEXT PRIMARY KEY NOT NULL)")
            try db.execute(sql: "PRAGMA application_id = \(applicationID)")
            if let root { try PhotoIndex.recordFoldersOfOlderIndex(db, root: root) }
        }
        // The generation at which each file row last changed what a search sees (its vector, or whether it is
        // live): the vector cache takes in only the rows changed since its own generation, not the whole table.
        // Rows of an older index start at 0, below any cache this program writes.
        // And a random nonce per recent generation: a cache appends only onto the state it was written from, not
        // onto a recreated database or a restored copy that reached the same generation by another history.
        m.registerMigration("v3") { db in
            try db.execute(sql: """
                ALTER TABLE files ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
                CREATE INDEX files_changed ON files (changed);
                CREATE TABLE generations (generation INTEGER PRIMARY KEY, nonce INTEGER NOT NULL);
                """)
            try db.execute(sql: "INSERT INTO generations (generation, nonce) VALUES (?, ?)",
                           arguments: [try PhotoIndex.generationValue(db), Int64.random(in: .min ... .max)])
        }
        // Videos: one vector per sampled moment (the embeddings row of a video's contents holds the mean of its
        // frames, normalised, and is written in the same transaction: its presence says the frames are whole), and
        // the sampling that chose them (a run with another samples the video again).
        m.registerMigration("v4") { db in
            try db.execute(sql: """
                CREATE TABLE frames (
                    hash TEXT NOT NULL,
                    model INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
                    time REAL NOT NULL,
                    vector BLOB NOT NULL,
                    sampling TEXT NOT NULL,
                    PRIMARY KEY (hash, model, time)) WITHOUT ROWID
                """)
        }
        return m
    }

    /// One `sqlite_master` row.
    struct Entry: Hashable {
        var type: String
        var name: String
        var table: String
        var sql: String?
    }

    /// The schema after each migration, as this program writes it: `sqlite_master` of an in-memory database
    /// migrated step by step, keyed by the last migration applied.
    static let schemas: [String: Set<Entry>] = {
        var out: [String: Set<Entry>] = [:]
        guard let queue = try? DatabaseQueue() else { return out }
        for id in migrator.migrations {
            try? migrator.migrate(queue, upTo: id)
            out[id] = (try? queue.read(entries)) ?? []
        }
        return out
    }()

    static func entries(_ db: Database) throws -> Set<Entry> {
        Set(try Row.fetchAll(db, sql: "SELECT type, name, tbl_name, sql FROM sqlite_master").map {
            Entry(type: $0[0], name: $0[1], table: $0[2], sql: $0[3])
        })
    }

    /// The entries as compared: GRDB's own bookkeeping table by name only (its wording is GRDB's to change).
    static func comparable(_ entries: Set<Entry>) -> Set<Entry> {
        Set(entries.map { $0.name == "grdb_migrations" ? Entry(type: $0.type, name: $0.name, table: $0.table, sql: nil) : $0 })
    }

    /// Refuses a file that is not a clip index, without writing to it. A missing or empty file is a new index.
    static func check(_ path: String, shownAs name: String) throws(IndexError) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        // The kind first: a FIFO or a device has no size, and opening one would wait for ever.
        guard st.st_mode & S_IFMT == S_IFREG else { throw IndexError.notAnIndex(path: name, reason: "not a regular file") }
        guard st.st_size > 0 else { return }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.label = "clip-index-check"
        configuration.prepareDatabase { db in try harden(db) }
        let problem: String?
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            problem = try withDeadline(queue, seconds: 5, path: name) {
                try queue.read { db -> String? in
                    let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                    guard id == 0 || id == applicationID else { return "another application's database (application id \(id))" }
                    let found = try entries(db)
                    guard found.contains(where: { $0.name == "grdb_migrations" }) else {
                        return found.isEmpty ? nil : "its tables are another application's"
                    }
                    let applied = try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
                    let known = migrator.migrations
                    guard let last = known.lastIndex(where: applied.contains), applied.count == last + 1,
                          Set(applied) == Set(known[...last]) else {
                        return "its migrations (\(applied.joined(separator: ", "))) are not this program's"
                    }
                    let expected = schemas[known[last]] ?? []
                    guard comparable(found) == comparable(expected) else {
                        let extra = found.subtracting(expected).map { "\($0.type) \($0.name)" }.sorted()
                        return "its schema differs from a clip index's" + (extra.isEmpty ? "" : " (it has \(extra.joined(separator: ", ")))")
                    }
                    return nil
                }
            }
        } catch {
            throw IndexError.database(path, error)
        }
        if let problem { throw IndexError.notAnIndex(path: name, reason: "\(problem); nothing was written to it") }
    }

    /// Defensive settings for a connection to a file that may be hostile.
    static func harden(_ db: Database) throws {
        guard clip_sqlite_harden(db.sqliteConnection) == SQLITE_OK else {
            throw IndexError.internal("cannot configure SQLite defensively: \(String(cString: sqlite3_errmsg(db.sqliteConnection)))")
        }
        // SQLite's advice for files from elsewhere: check cell sizes as pages are read, and read pages with read()
        // rather than a mapping that a truncated file turns into SIGBUS.
        try db.execute(sql: "PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON; PRAGMA mmap_size = 0")
    }

    /// Runs `body`, interrupting SQLite if it takes longer than `seconds` (a schema check reads a few rows).
    static func withDeadline<T>(_ queue: DatabaseQueue, seconds: Double, path: String, _ body: () throws -> T) throws -> T {
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + seconds)
        timer.setEventHandler { queue.interrupt() }
        timer.resume()
        defer { timer.cancel() }
        do { return try body() } catch let error as DatabaseError where error.resultCode == .SQLITE_INTERRUPT {
            throw IndexError.notAnIndex(path: path, reason: "reading its schema took more than \(Int(seconds)) s")
        }
    }
}
