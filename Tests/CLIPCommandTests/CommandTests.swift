import Foundation
import Testing

/// The `clip` executable SwiftPM built into the products directory: the test bundle's directory on Linux,
/// the one above it on macOS.
let clipBinary: URL = {
    let bundle = Bundle.main.bundleURL
    let candidates = [bundle.appendingPathComponent("clip"), bundle.deletingLastPathComponent().appendingPathComponent("clip")]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[1]
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

func runClip(_ arguments: [String]) throws -> RunResult {
    let p = Process()
    p.executableURL = clipBinary
    p.arguments = arguments
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                     stderr: String(decoding: e, as: UTF8.self))
}

@Test func tokenizePrintsOneRowPerText() throws {
    let r = try runClip(["tokenize", "a diagram", "a dog", "a cat"])
    #expect(r.status == 0, "\(r.stderr)")
    let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[Int]])
    #expect(rows.count == 3 && rows.allSatisfy { $0.count == 77 })
    #expect(Array(rows[0].prefix(5)) == [49406, 320, 22697, 49407, 0])
}

@Test func tokenizeHonoursContextLengthAndTruncation() throws {
    let r = try runClip(["tokenize", "--context-length", "4", "--truncate", "a photo of a dog"])
    #expect(r.status == 0)
    #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[[49406,320,1125,49407]]")
}

@Test func tooLongTextFailsWithOneLine() throws {
    let r = try runClip(["tokenize", "--context-length", "4", "ok", "a photo of a dog"])
    #expect(r.status == 1)
    #expect(r.stderr == "clip: text 1 is 7 tokens long (with start and end tokens), more than the context length 4; shorten it or enable truncation\n")
    #expect(r.stdout.isEmpty)
}

@Test func infoOnMissingFileNamesIt() throws {
    let r = try runClip(["info", "/nonexistent/model.safetensors"])
    #expect(r.status == 1)
    #expect(r.stderr.hasPrefix("clip: /nonexistent/model.safetensors: cannot open"))
}
