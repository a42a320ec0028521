import CLIPFiles
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory for one test.
func scratchDirectory(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swift-clip-files-\(getpid())-\(name)").path
    try? FileManager.default.removeItem(atPath: dir)
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

@Test func regularFileReadsRangesAndRefusesOthers() throws {
    let dir = scratchDirectory("read")
    let path = dir + "/data.bin"
    _ = FileManager.default.createFile(atPath: path, contents: Data((0..<100).map { UInt8($0) }))
    let file = try RegularFile(path: path)
    #expect(file.size == 100)
    #expect(try file.read(at: 10, count: 3) == [10, 11, 12])
    #expect(try file.read(at: 96, count: 1, as: UInt32.self) == [UInt32(littleEndian: 0x6362_6160)])
    // Past the end, and offsets whose sum overflows: errors, not traps.
    #expect(throws: FileError.self) { try file.read(at: 99, count: 2) }
    #expect(throws: FileError.self) { try file.read(at: Int.max - 1, count: 4) }
    #expect(throws: FileError.self) { try file.read(at: 0, count: Int.max / 2, as: UInt64.self) }
    #expect(throws: FileError(path: path, .tooLarge(size: 100, limit: 10))) { try file.readAll(limit: 10) }
    #expect(throws: FileError(path: dir + "/missing", .noSuchFile)) { try RegularFile(path: dir + "/missing") }
    #expect(throws: FileError(path: dir, .isDirectory)) { try RegularFile(path: dir) }
}

@Test func fifoIsRefusedWithoutBlocking() throws {
    let dir = scratchDirectory("fifo")
    let fifo = dir + "/pipe"
    #expect(mkfifo(fifo, 0o600) == 0)
    let start = Date()
    #expect(throws: FileError(path: fifo, .notRegular(kind: "a FIFO"))) { try RegularFile(path: fifo) }
    #expect(Date().timeIntervalSince(start) < 1)
    #expect(throws: FileError(path: "/dev/null", .notRegular(kind: "a character device"))) { try RegularFile(path: "/dev/null") }
}

/// A file that shrinks after it was opened gives an error at the read (through a mapping it would be SIGBUS).
@Test func fileTruncatedWhileOpenIsAnError() throws {
    let dir = scratchDirectory("shrink")
    let path = dir + "/weights.bin"
    _ = FileManager.default.createFile(atPath: path, contents: Data(count: 1 << 20))
    let file = try RegularFile(path: path)
    #expect(truncate(path, 4096) == 0)
    #expect(try file.read(at: 0, count: 4096).count == 4096)
    #expect(throws: FileError(path: path, .truncated(needed: 1 << 20, size: 4096))) {
        try file.read(at: 0, count: 1 << 20)
    }
}

@Test func outputReplacesRegularFilesAtomicallyAndFollowsLinks() throws {
    let dir = scratchDirectory("output")
    let target = dir + "/out.json"
    try OutputFile.write(Array("first".utf8), to: target)
    #expect(FileManager.default.contents(atPath: target) == Data("first".utf8))
    // The old contents are replaced whole; no temporary is left behind.
    try OutputFile.write(Array("second".utf8), to: target)
    #expect(FileManager.default.contents(atPath: target) == Data("second".utf8))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.json"])
    // A symbolic link: its target is written and the link stays a link.
    let link = dir + "/link.json"
    #expect(symlink("out.json", link) == 0)
    try OutputFile.write(Array("third".utf8), to: link)
    #expect(FileManager.default.contents(atPath: target) == Data("third".utf8))
    var st = stat()
    #expect(lstat(link, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK)
}

@Test func outputNeverReplacesDevicesFIFOsOrDirectories() throws {
    let dir = scratchDirectory("special")
    // A device is written in place: /dev/null stays a character device.
    try OutputFile.write(Array("discarded".utf8), to: "/dev/null")
    var st = stat()
    #expect(stat("/dev/null", &st) == 0 && st.st_mode & S_IFMT == S_IFCHR)
    // A FIFO without a reader is an error at once, and it stays a FIFO.
    let fifo = dir + "/pipe"
    #expect(mkfifo(fifo, 0o600) == 0)
    #expect(throws: FileError.self) { try OutputFile.write([1, 2, 3], to: fifo) }
    #expect(lstat(fifo, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO)
    #expect(throws: FileError(path: dir, .isDirectory)) { try OutputFile.write([1], to: dir) }
    #expect(throws: FileError(path: dir + "/no/such/file", .noSuchDirectory(dir + "/no/such"))) {
        try OutputFile.write([1], to: dir + "/no/such/file")
    }
}

@Test("SHA-256 gives FIPS 180-4's digests, whatever the pieces the message arrives in", arguments: [1, 3, 63, 64, 65, 1000])
func sha256MatchesKnownVectors(piece: Int) {
    #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    let message = Array(String(repeating: "a", count: 1000).utf8)
    var hasher = SHA256()
    var offset = 0
    while offset < message.count {
        let end = min(offset + piece, message.count)
        message[offset..<end].withUnsafeBytes { hasher.update($0) }
        offset = end
    }
    #expect(hasher.finish() == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
}

@Test("SHA-1 gives FIPS 180-4's digests in any pieces; git blob ids equal `git hash-object`'s", arguments: [1, 3, 63, 64, 65, 1000])
func sha1MatchesKnownVectors(piece: Int) throws {
    func digest(_ message: [UInt8]) -> String {
        var hasher = SHA1()
        var offset = 0
        repeat {
            let end = min(offset + piece, message.count)
            message[offset..<end].withUnsafeBytes { hasher.update($0) }
            offset = end
        } while offset < message.count
        return hasher.finish()
    }
    #expect(digest([]) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    #expect(digest(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
    #expect(digest(Array(String(repeating: "a", count: 1000).utf8)) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sha1-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    for (content, id) in [("hello\n", "ce013625030ba8dba906f756967f9e9ca394464a"), ("", "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391")] {
        let path = dir.appendingPathComponent("f").path
        try Data(content.utf8).write(to: URL(fileURLWithPath: path))
        #expect(try SHA1.gitBlobID(path) == id)
    }
}

@Test("tar headers: octal sizes with NUL or space ends; garbage is refused", arguments: [
    ("00000001750\0", 1000), ("1750 \0\0\0\0\0\0\0", 1000), ("          7 ", 7), ("1234567", 0o1234567),
])
func tarOctalSizes(field: String, value: Int) {
    #expect(TarArchive.octal(ArraySlice(Array(field.utf8))) == value)
}

@Test func tarGarbageSizeIsRefused() {
    #expect(TarArchive.octal(ArraySlice(Array("12x4".utf8))) == nil)
    #expect(TarArchive.octal(ArraySlice(Array("\0\0\0".utf8))) == nil)
}


@Test("paths are inside a folder by their bytes, not by Swift's canonical equivalence", arguments: [
    ("/a/b/c.jpg", "/a/b", true), ("/a/b", "/a/b", false), ("/a/bc/d", "/a/b", false), ("/a/b/", "/a/b", false),
    ("/x", "/", true), ("/", "/", false), ("rel/x", "/", false),
    ("/p/caf\u{E9}/x.jpg", "/p/caf\u{E9}", true), ("/p/cafe\u{301}/x.jpg", "/p/caf\u{E9}", false),
    ("/p/caf\u{E9}/x.jpg", "/p/cafe\u{301}", false),
])
func pathInsideFolder(path: String, folder: String, inside: Bool) {
    #expect(isPath(path, inside: folder) == inside)
}

@Test func samePathComparesBytes() {
    #expect("caf\u{E9}" == "cafe\u{301}")
    #expect(!isSamePath("caf\u{E9}", "cafe\u{301}"))
    #expect(isSamePath("/a/b", "/a/b"))
}
