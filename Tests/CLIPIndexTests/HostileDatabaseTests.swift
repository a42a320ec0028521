@testable import CLIPIndex
import CLIPTestSupport
import Foundation
import GRDB
import Testing

/// Files given as an index that are not one: refused by their schema, read-only, before anything is written.
@Suite("the index: databases that are not clip indexes")
struct HostileDatabaseTests {
    func database(_ name: String, _ make: (Database) throws -> Void) throws -> String {
        let path = try scratchDirectory("hostile-db") + "/\(name).sqlite"
        let queue = try DatabaseQueue(path: path)
        try queue.writeWithoutTransaction { db in try make(db) }
        try queue.close()
        return path
    }

    /// A clip index's tables as version 1 wrote them, then `extra` on top.
    func clipIndex(_ name: String, extra: String) throws -> String {
        let path = try scratchDirectory("hostile-db") + "/\(name).sqlite"
        let queue = try DatabaseQueue(path: path)
        try IndexSchema.migrator.migrate(queue, upTo: "v1")
        try queue.writeWithoutTransaction { db in try db.execute(sql: extra) }
        try queue.close()
        return path
    }

    func files(beside path: String) -> Set<String> {
        let folder = (path as NSString).deletingLastPathComponent, name = (path as NSString).lastPathComponent
        return Set(((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasPrefix(name) })
    }

    @Test("another application's database is refused and left byte for byte as it was", arguments: [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada'), ('grace');",
        "PRAGMA application_id = 1234; CREATE TABLE notes (body TEXT);",
        // Our table names, another program's columns.
        "CREATE TABLE files (path TEXT); CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY); INSERT INTO grdb_migrations VALUES ('v1');",
    ])
    func foreignDatabase(_ schema: String) throws {
        let path = try database("other-app", { try $0.execute(sql: schema) })
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let siblings = files(beside: path)
        do {
            _ = try PhotoIndex(path: path)
            Issue.record("opened another application's database as an index")
        } catch {
            #expect(error.description.contains("not a clip index") && error.description.contains("nothing was written"), "\(error)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(files(beside: path) == siblings, "no -wal or -shm file left beside it")
    }

    @Test("an index with a view or trigger it did not create is refused within 5 s", arguments: [
        // `files` as an endless recursive query, and an insert trigger.
        """
        ALTER TABLE files RENAME TO real_files;
        CREATE VIEW files AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)
            SELECT i AS id, 'x' AS path, 0 AS size, 0 AS modified, NULL AS hash, NULL AS width, NULL AS height,
                   NULL AS error, 0 AS deleted FROM n;
        """,
        "CREATE TRIGGER spy AFTER INSERT ON embeddings BEGIN DELETE FROM models; END;",
        "CREATE INDEX spy ON files (abs(size));",
        "CREATE TABLE extra (x);",
    ])
    func hostileSchema(_ extra: String) throws {
        let path = try clipIndex("hostile", extra: extra)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let start = ContinuousClock.now
        #expect(throws: IndexError.self) { _ = try PhotoIndex(path: path) }
        #expect(start.duration(to: .now) < .seconds(5))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test("a served index claims no more than real folders: not the root, not an empty path")
    func claimedFolders() throws {
        let index = try PhotoIndex(path: try scratchDirectory("hostile-db") + "/claims.sqlite")
        try index.write { db in
            for f in ["/", "", "relative/dir", "/tmp/"] { try db.execute(sql: "INSERT INTO folders (path) VALUES (?)", arguments: [f]) }
        }
        #expect(try index.indexedFolders().isEmpty)
        #expect(!PhotoIndex.isInside("/etc/passwd", folders: ["/", ""]))
        #expect(PhotoIndex.isInside("/photos/a.jpg", folders: ["/photos"]) && !PhotoIndex.isInside("/photos2/a.jpg", folders: ["/photos"]))
    }

    @Test("random bytes, and a folder, are refused by name")
    func notADatabase() throws {
        let dir = try scratchDirectory("hostile-db")
        let path = dir + "/random.sqlite"
        var generator = SystemRandomNumberGenerator()
        try Data((0..<8192).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(to: URL(fileURLWithPath: path))
        #expect { _ = try PhotoIndex(path: path) } throws: { "\($0)".contains("not a clip index") }
    }

    @Test("an index written before the folders table is opened and brought up to date")
    func olderIndex() throws {
        let path = try clipIndex("older", extra: "INSERT INTO files (path, size, modified) VALUES ('a.png', 1, 1);")
        let index = try PhotoIndex(path: path)
        // Its folders are taken to be those its images are in.
        #expect(try index.indexedFolders() == [URL(fileURLWithPath: index.root).resolvingSymlinksInPath().path])
        #expect(try index.read { try Int32.fetchOne($0, sql: "PRAGMA application_id") } == IndexSchema.applicationID)
        // And opened again, now as a current index.
        _ = try PhotoIndex(path: path)
    }
}
