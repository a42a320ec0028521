import CLIPData
import CLIPFiles
import CLIPTestSupport
import Foundation
import Testing

// The one walk and the one caption rule every dataset reader uses (the index, clip embed, training, evaluation).

private func scratch(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "clipdata-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

private func write(_ path: String, _ text: String = "x") throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

@Suite("datasets: the folder walk, captions, webdataset shards")
struct DataTests {
    @Test("the walk is sorted and skips hidden files and folders, @eaDir, excluded names and links to folders")
    func walkRules() throws {
        let root = try scratch("walk")
        defer { try? FileManager.default.removeItem(atPath: root) }
        for p in ["b.jpg", "a/z.png", "a/c.JPG", "notes.txt", ".hidden.jpg", "._b.jpg", ".git/x.jpg", "@eaDir/t.jpg",
                  "raw/skip.jpg", "deep/er/d.webp"] {
            try write("\(root)/\(p)")
        }
        try FileManager.default.createSymbolicLink(atPath: "\(root)/loop", withDestinationPath: root)
        var walk = FolderWalk(excluded: ["raw"])
        let found = walk.images(under: root).map { String($0.path.dropFirst(root.count + 1)) }
        #expect(found == ["a/c.JPG", "a/z.png", "b.jpg", "deep/er/d.webp"])
        #expect(walk.unreadable.isEmpty)
        #expect(walk.files(under: root) { $0.hasSuffix(".txt") }.map(\.path) == ["\(root)/notes.txt"])
    }

    @Test("a link to a file is followed unless the policy refuses its real path; then it carries the reason")
    func linkPolicy() throws {
        let root = try scratch("links"), outside = try scratch("outside")
        defer { try? FileManager.default.removeItem(atPath: root); try? FileManager.default.removeItem(atPath: outside) }
        try write("\(outside)/o.jpg")
        try write("\(root)/in.jpg")
        try FileManager.default.createSymbolicLink(atPath: "\(root)/out.jpg", withDestinationPath: "\(outside)/o.jpg")
        try FileManager.default.createSymbolicLink(atPath: "\(root)/dangling.jpg", withDestinationPath: "\(outside)/none.jpg")
        var follow = FolderWalk()
        #expect(follow.images(under: root).map { ($0.path as NSString).lastPathComponent } == ["in.jpg", "out.jpg"])
        #expect(follow.images(under: root).allSatisfy { $0.problem == nil })
        let realRoot = URL(fileURLWithPath: root).resolvingSymlinksInPath().path
        var strict = FolderWalk { $0.hasPrefix(realRoot + "/") }
        let found = strict.images(under: root)
        #expect(found.map { ($0.path as NSString).lastPathComponent } == ["in.jpg", "out.jpg"])
        #expect(found[0].problem == nil)
        #expect(found[1].problem == strict.refusedLinkProblem)
    }

    @Test("a folder that cannot be listed is reported, not fatal")
    func unreadableFolder() throws {
        var walk = FolderWalk()
        #expect(walk.images(under: "/nonexistent/folder").isEmpty)
        #expect(walk.unreadable.map(\.path) == ["/nonexistent/folder"])
    }

    @Test("captions: absent is nil, text is trimmed, too long or not UTF-8 is an error naming the file")
    func captionRule() throws {
        let root = try scratch("captions")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("\(root)/a.txt", "  a red square \n")
        try write("\(root)/long.txt", String(repeating: "x", count: Captions.maximumBytes + 1))
        try Data([0x61, 0xff, 0x62]).write(to: URL(fileURLWithPath: "\(root)/latin1.txt"))
        #expect(try Captions.read(forImage: "\(root)/a.jpg").get() == "a red square")
        #expect(try Captions.read(forImage: "\(root)/none.png").get() == nil)
        for name in ["long", "latin1"] {
            guard case .failure(let error) = Captions.read(forImage: "\(root)/\(name).jpg") else {
                Issue.record("\(name).txt was accepted"); continue
            }
            #expect(error.description.contains("\(name).txt"), "\(error)")
        }
    }

    @Test("a shard's image members in stored order, each with the caption under its key; lone captions counted")
    func shardPairs() throws {
        let root = try scratch("shard")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let tar = tarArchive([("k2.jpg", [1]), ("k2.txt", Array(" two ".utf8)), ("k1.png", [2]), ("k1.json", Array("{}".utf8)),
                              ("k3.txt", Array("lone".utf8)), ("k4.webp", [3]), ("k4.txt", [0xff])])
        try Data(tar).write(to: URL(fileURLWithPath: "\(root)/s.tar"))
        let shard = try WebDatasetShard(path: "\(root)/s.tar")
        #expect(shard.samples.map(\.image.name) == ["k2.jpg", "k1.png", "k4.webp"])
        #expect(shard.loneCaptions == 1)
        #expect(try shard.caption(shard.samples[0]).get() == "two")
        #expect(try shard.caption(shard.samples[1]).get() == nil)
        guard case .failure(let error) = shard.caption(shard.samples[2]) else { Issue.record("a non-UTF-8 caption was read"); return }
        #expect(error.description.contains("s.tar:k4.txt"), "\(error)")
    }

    @Test("a key stored twice is one sample in the key's first place: open_clip's preferred extension, its last copy")
    func shardDuplicateKeys() throws {
        let root = try scratch("shard-dup")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let tar = tarArchive([("a.jpg", [1]), ("b.jpg", [2]), ("a.txt", Array("first".utf8)), ("a.png", [3]),
                              ("b.jpg", [4, 4]), ("a.txt", Array("second".utf8)), (".jpg", [5]), ("c.jpeg", [6]),
                              ("c.png", [7]), ("c.webp", [8]), ("d.tif", [9]), ("d.webp", [10])])
        try Data(tar).write(to: URL(fileURLWithPath: "\(root)/s.tar"))
        let shard = try WebDatasetShard(path: "\(root)/s.tar")
        // open_clip reads to_tuple("jpg;png;jpeg;webp"): jpg before png before jpeg before webp, then the rest; a
        // member without a name before its extension is no sample.
        #expect(shard.samples.map(\.key) == ["/a", "/b", "/c", "/d"])
        #expect(shard.samples.map(\.image.name) == ["a.jpg", "b.jpg", "c.png", "d.webp"])
        #expect(shard.samples[1].image.size == 2)
        #expect(try shard.caption(shard.samples[0]).get() == "second")
    }
}
