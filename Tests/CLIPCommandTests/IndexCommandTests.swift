import CLIPTestSupport
import Foundation
import Testing

/// The search results of an image query over the whole index, as path → score.
private func scores(db: String, query: String) throws -> [String: Double] {
    let r = try runClip(["search", "--db", db, "--top", "1000", "--json", query])
    #expect(r.status == 0, "\(r.stderr)")
    let hits = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
    var out: [String: Double] = [:]
    for h in hits { out[h["path"] as? String ?? ""] = (h["score"] as? NSNumber)?.doubleValue }
    return out
}

@Test("clip index killed (kill -9) or interrupted (Ctrl-C) mid-run keeps a sound database; running it again ends as an uninterrupted run",
      arguments: [SIGKILL, SIGINT])
func indexSurvivesBeingKilled(signal: Int32) throws {
    let dir = try scratchDirectory("kill")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let count = 60
    let made = try runClip(["synthetic", "--count", "\(count)", "--size", "64", "--output", "\(dir)/photos"])
    #expect(made.status == 0, "\(made.stderr)")
    let clean = try runClip(["index", "\(dir)/photos", "--db", "\(dir)/clean.sqlite"])
    #expect(clean.status == 0 && clean.stdout.contains("\(count) embedded"), "\(clean.stdout) \(clean.stderr)")

    let db = "\(dir)/killed.sqlite"
    let p = Process()
    p.executableURL = clipBinary
    p.arguments = ["index", "\(dir)/photos", "--db", db, "--batch-size", "2"]
    p.standardOutput = FileHandle.nullDevice
    let err = Pipe()
    p.standardError = err
    try p.run()
    // Somewhere in the run: after the model has loaded and some batches have been committed.
    let started = Date()
    while p.isRunning, !FileManager.default.fileExists(atPath: db + "-wal"), Date().timeIntervalSince(started) < 60 {
        usleep(20_000)
    }
    usleep(UInt32.random(in: 300_000...1_500_000))
    kill(p.processIdentifier, signal)
    p.waitUntilExit()
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    if signal == SIGINT {
        #expect(p.terminationStatus == 130 || p.terminationStatus == 0, "\(stderr)")
        if p.terminationStatus == 130 { #expect(stderr.contains("interrupted"), "\(stderr)") }
    }

    let stats = try runClip(["index", "stats", "--db", db])
    #expect(stats.status == 0 && stats.stdout.contains("integrity ok"), "\(stats.stdout) \(stats.stderr)")
    let again = try runClip(["index", "\(dir)/photos", "--db", db])
    #expect(again.status == 0, "\(again.stderr)")
    // Every image is embedded exactly once over the two runs: nothing committed was lost or redone.
    let line = again.stdout
    let embedded = Int(line.components(separatedBy: " embedded").first?.split(separator: " ").last ?? "") ?? -1
    let unchanged = Int(line.components(separatedBy: " unchanged").first?.split(separator: " ").last ?? "") ?? -1
    #expect(embedded + unchanged == count, "\(line)")

    let query = "\(dir)/photos/00000007.png"
    let a = try scores(db: "\(dir)/clean.sqlite", query: query), b = try scores(db: db, query: query)
    #expect(a.count == count && Set(a.keys) == Set(b.keys))
    for (path, score) in a { #expect(abs(score - (b[path] ?? .nan)) <= 1e-5, "\(path)") }
}

@Test("clip search: composed queries, --filepath-only for xargs, and clear errors for a missing index or an unknown model")
func searchCommand() throws {
    let dir = try scratchDirectory("search")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let made = try runClip(["synthetic", "--count", "12", "--size", "64", "--output", "\(dir)/photos"])
    #expect(made.status == 0, "\(made.stderr)")
    let db = "\(dir)/photos/.clip-index.sqlite"
    #expect(try runClip(["index", "\(dir)/photos", "--db", db]).status == 0)
    let query = "\(dir)/photos/00000003.png"
    let paths = try runClip(["search", "--db", db, "--filepath-only", "--top", "3", query, "+", "0.5:a red circle"])
    #expect(paths.status == 0, "\(paths.stderr)")
    let lines = paths.stdout.split(separator: "\n")
    #expect(lines.count == 3 && lines[0] == query, "\(paths.stdout)")

    // A contact sheet of the hits (two rows of five 160-px cells with captions), and kitty previews when asked.
    let sheet = try runClip(["search", "--db", db, "--top", "7", "--sheet", "\(dir)/sheet.png", "a red circle"])
    #expect(sheet.status == 0, "\(sheet.stderr)")
    let png = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/sheet.png"))
    let size = png.withUnsafeBytes { ($0.load(fromByteOffset: 16, as: UInt32.self).bigEndian, $0.load(fromByteOffset: 20, as: UInt32.self).bigEndian) }
    #expect(size.0 == 5 * 168 + 8 && size.1 == 2 * 184 + 8, "\(size)")
    let kitty = try runClip(["search", "--db", db, "--top", "2", "--preview", "always", "a red circle"])
    #expect(kitty.stdout.components(separatedBy: "\u{1B}_Ga=T,f=100").count == 3, "\(kitty.stdout.prefix(200))")

    let missing = try runClip(["search", "--db", "\(dir)/none.sqlite", "cat"])
    #expect(missing.status == 1 && missing.stderr.contains("none.sqlite") && missing.stderr.contains("clip index"))
    let other = try runClip(["search", "--db", db, "--model", tinyModel, "cat"])
    #expect(other.status == 1 && other.stderr.contains(tinyModel) && other.stderr.contains("default"), "\(other.stderr)")
    let cancel = try runClip(["search", "--db", db, "cat", "-", "cat"])
    #expect(cancel.status == 1 && cancel.stderr.contains("cancel out"), "\(cancel.stderr)")
}

@Test("clip index turns photos by their EXIF orientation; an index made with --no-apply-orientation is searched and then taken over")
func indexOrientationThroughTheCommand() throws {
    let dir = try scratchDirectory("orientation-command")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fixtures = testsDirectory.appendingPathComponent("CLIPImageTests/Fixtures/orientation").path
    try FileManager.default.createDirectory(atPath: "\(dir)/photos", withIntermediateDirectories: true)
    for (from, to) in [("orientation_6.jpg", "a.jpg"), ("orientation_1.jpg", "b.jpg"), ("orientation_8.png", "c.png")] {
        try FileManager.default.copyItem(atPath: "\(fixtures)/\(from)", toPath: "\(dir)/photos/\(to)")
    }
    let db = "\(dir)/index.sqlite"
    let old = try runClip(["index", "\(dir)/photos", "--db", db, "--no-apply-orientation"])
    #expect(old.status == 0 && old.stdout.contains("3 embedded"), "\(old.stdout) \(old.stderr)")
    let search = try runClip(["search", "--db", db, "a picture"])
    #expect(search.status == 0 && search.stderr.contains("without EXIF orientation"), "\(search.stderr)")
    let taken = try runClip(["index", "\(dir)/photos", "--db", db])
    #expect(taken.status == 0 && taken.stdout.contains("2 embedded") && taken.stdout.contains("1 not rotated"), "\(taken.stdout) \(taken.stderr)")
    let after = try runClip(["search", "--db", db, "a picture"])
    #expect(after.status == 0 && !after.stderr.contains("without EXIF orientation"), "\(after.stderr)")

    // clip embed --input-dir turns photos and records it; clip index import files them accordingly.
    let embedded = try runClip(["embed", "--input-dir", "\(dir)/photos", "--output-dir", "\(dir)/out"])
    #expect(embedded.status == 0, "\(embedded.stderr)")
    let recorded = try String(contentsOfFile: "\(dir)/out/metadata/preprocessing_0.json", encoding: .utf8)
    #expect(recorded.contains("\"exif_orientation\": true"), "\(recorded)")
    for (flags, note) in [([String](), false), (["--no-apply-orientation"], true)] {
        let imported = "\(dir)/imported\(flags.count).sqlite"
        let r = try runClip(["index", "import", "\(dir)/out", "--db", imported] + flags)
        #expect(r.status == 0 && r.stdout.contains("3 embeddings imported"), "\(r.stdout) \(r.stderr)")
        let s = try runClip(["search", "--db", imported, "a picture"])
        #expect(s.status == 0 && s.stderr.contains("without EXIF orientation") == note, "\(flags): \(s.stderr)")
    }
}
