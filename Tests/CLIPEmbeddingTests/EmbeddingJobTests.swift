import CLIPEmbedding
import CLIPImage
import CLIPKit
import CLIPTestSupport
import Foundation
import Testing

private func writeImage(_ path: String, seed: Int) throws {
    let (w, h) = (23, 31)
    var rgb = [UInt8](repeating: 0, count: w * h * 3)
    for i in rgb.indices { rgb[i] = UInt8(truncatingIfNeeded: i &* (seed + 3) &+ seed * 41) }
    try Data(PNGEncoder.encode(rgb: rgb, width: w, height: h)).write(to: URL(fileURLWithPath: path))
}

/// The rows of a float32 .npy written by the job.
func npyRows(_ path: String) throws -> (rows: Int, dim: Int, values: [Float]) {
    let d = try Data(contentsOf: URL(fileURLWithPath: path))
    let headerLength = Int(d[8]) | Int(d[9]) << 8
    let header = String(decoding: d[10..<(10 + headerLength)], as: UTF8.self)
    let shape = header.components(separatedBy: "'shape': (")[1].components(separatedBy: ")")[0]
        .split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
    let values = d[(10 + headerLength)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    #expect(header.contains("'descr': '<f4'") && (10 + headerLength) % 64 == 0)
    return (shape[0], shape[1], values)
}

let pipeline: CLIPPipeline = { try! CLIPPipeline.load("default", showProgress: false) }()

@Suite("embedding at scale")
struct EmbeddingJobTests {
    @Test("shards: I/N counted from 1, and from Slurm's or Kubernetes' variables", arguments: [
        (["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"], "1/4"),
        (["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"], "4/4"),
        (["JOB_COMPLETION_INDEX": "2", "CLIP_SHARD_COUNT": "3"], "3/3"),
        ([:], "none"),
    ])
    func shardFromEnvironment(env: [String: String], expected: String) throws {
        #expect(try Shard.fromEnvironment(env)?.description ?? "none" == expected)
    }

    @Test("bad shards are refused", arguments: ["0/3", "4/3", "1/0", "x", "1/2/3"])
    func badShard(text: String) {
        #expect(throws: EmbeddingJobError.self) { try Shard(parsing: text) }
    }

    @Test("an input list: paths and path<TAB>caption, blank and CRLF lines; an endless line is an error")
    func inputList() throws {
        let dir = try scratchDirectory("list")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "a.jpg\n\n b c.png\tsome caption\r\nlast.webp".write(toFile: "\(dir)/list.txt", atomically: true, encoding: .utf8)
        let inputs = try EmbeddingInputs.list("\(dir)/list.txt")
        var got: [EmbeddingInput] = []
        while let i = try inputs.read() { got.append(i) }
        #expect(got == [EmbeddingInput(path: "a.jpg"), EmbeddingInput(path: " b c.png", caption: "some caption"),
                        EmbeddingInput(path: "last.webp")])
        try String(repeating: "x", count: 70_000).write(toFile: "\(dir)/long.txt", atomically: true, encoding: .utf8)
        let long = try EmbeddingInputs.list("\(dir)/long.txt")
        #expect { _ = try long.read() } throws: { "\($0)".contains("line 1") }
    }

    @Test("the shards of a folder together embed every image once, rows aligned with metadata; a bad image is recorded, not fatal",
          arguments: [1, 3])
    func shardsCoverEverything(shards: Int) throws {
        let dir = try scratchDirectory("folder")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/in/sub", withIntermediateDirectories: true)
        for i in 0..<10 { try writeImage("\(dir)/in/\(i < 5 ? "" : "sub/")\(i).png", seed: i) }
        try Data("broken".utf8).write(to: URL(fileURLWithPath: "\(dir)/in/broken.jpg"))
        try "a caption".write(toFile: "\(dir)/in/3.txt", atomically: true, encoding: .utf8)
        var seen: [String: [Float]] = [:]
        var failed = 0
        for s in 1...shards {
            var job = EmbeddingJob(pipeline: pipeline)
            job.batchSize = 3
            let report = try job.run(try EmbeddingInputs.folder("\(dir)/in"), shard: try Shard(index: s, count: shards),
                                     directory: "\(dir)/out", part: s - 1, withText: true)
            failed += report.failed.count
            let img = try npyRows("\(dir)/out/img_emb/img_emb_\(s - 1).npy")
            let txt = try npyRows("\(dir)/out/text_emb/text_emb_\(s - 1).npy")
            let meta = try String(contentsOfFile: "\(dir)/out/metadata/metadata_\(s - 1).jsonl", encoding: .utf8)
                .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            #expect(img.rows == meta.count && txt.rows == meta.count && img.dim == 64)
            for (r, m) in meta.enumerated() {
                let path = m["image_path"] as! String
                #expect(seen[path] == nil, "\(path) embedded twice")
                seen[path] = Array(img.values[(r * 64)..<((r + 1) * 64)])
                if path.hasSuffix("/3.png") { #expect(m["caption"] as? String == "a caption") }
            }
        }
        #expect(seen.count == 10 && failed == 1)
        // The same image gives the same vector as the pipeline's own embedding.
        let direct = try pipeline.imageEmbeddings(files: ["\(dir)/in/sub/7.png"]).scalars
        #expect(zip(direct, seen["\(dir)/in/sub/7.png"]!).allSatisfy { abs($0 - $1) <= 1e-6 })
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: "\(dir)/out").filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty)
    }

    @Test("an unfinished partition leaves nothing behind: no final files, temporaries removed")
    func unfinishedPartition() throws {
        let dir = try scratchDirectory("unfinished")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let writer = try RetrievalPartWriter(directory: dir, part: 7, dimension: 4, withText: false)
            try writer.append(imageEmbeddings: [1, 0, 0, 0], textEmbeddings: nil, metadata: [RetrievalMetadata(imagePath: "a")])
        }
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir).filter { !["img_emb", "metadata"].contains($0) }
        #expect(files.isEmpty, "\(files)")
    }
}

@Suite("webdataset shards")
struct TarShardTests {
    @Test("the images of tar shards, with their .txt captions, in stored order; a broken member is recorded, not fatal")
    func tarInputs() throws {
        let dir = try scratchDirectory("tar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func png(_ seed: Int) throws -> [UInt8] {
            try writeImage("\(dir)/x.png", seed: seed)
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/x.png")))
        }
        try Data(tarArchive([("000/a.png", try png(1)), ("000/a.txt", Array("a red circle".utf8)), ("000/a.json", Array("{}".utf8)),
                             ("000/b.png", try png(2)), ("000/c.jpg", Array("broken".utf8))]))
            .write(to: URL(fileURLWithPath: "\(dir)/s0.tar"))
        try Data(tarArchive([("d.webp", [0x52]), ("e.png", try png(3)), ("e.txt", Array("an e".utf8))]))
            .write(to: URL(fileURLWithPath: "\(dir)/s1.tar"))
        let inputs = try EmbeddingInputs.tars(["\(dir)/s0.tar", "\(dir)/s1.tar"])
        var got: [(String, String?)] = []
        while let i = try inputs.read() { got.append((i.path, i.caption)) }
        #expect(got.map(\.0) == ["\(dir)/s0.tar:000/a.png", "\(dir)/s0.tar:000/b.png", "\(dir)/s0.tar:000/c.jpg",
                                 "\(dir)/s1.tar:d.webp", "\(dir)/s1.tar:e.png"])
        #expect(got.map(\.1) == ["a red circle", nil, nil, nil, "an e"])

        let report = try EmbeddingJob(pipeline: pipeline).run(try EmbeddingInputs.tars(["\(dir)/s0.tar", "\(dir)/s1.tar"]),
                                                              shard: nil, directory: "\(dir)/out", part: 0, withText: true)
        #expect(report.embedded == 3 && report.failed.count == 2)
        let img = try npyRows("\(dir)/out/img_emb/img_emb_0.npy")
        #expect(img.rows == 3)
        // The member's embedding equals the same image's from a file.
        try Data(try png(3)).write(to: URL(fileURLWithPath: "\(dir)/e.png"))
        let direct = try pipeline.imageEmbeddings(files: ["\(dir)/e.png"]).scalars
        #expect(zip(direct, img.values[(2 * 64)...]).allSatisfy { abs($0 - $1) <= 1e-6 })
    }

    /// A caption past the limit fails its input, named, instead of being embedded as an empty caption.
    @Test("a caption member past the caption limit fails its input")
    func oversizedTarCaption() throws {
        let dir = try scratchDirectory("tar-caption")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeImage("\(dir)/x.png", seed: 4)
        let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/x.png")))
        try Data(tarArchive([("k1.png", image), ("k1.txt", [UInt8](repeating: 0x61, count: 70_000)),
                             ("k2.png", image), ("k2.txt", Array("a cat".utf8))]))
            .write(to: URL(fileURLWithPath: "\(dir)/s.tar"))
        let report = try EmbeddingJob(pipeline: pipeline).run(try EmbeddingInputs.tars(["\(dir)/s.tar"]),
                                                              shard: nil, directory: "\(dir)/out", part: 0, withText: true)
        #expect(report.embedded == 1 && report.failed.count == 1)
        #expect(report.failed.first?.reason.contains("k1.txt: a caption of 70000 bytes") == true, "\(report.failed)")
    }

    @Test("a tar whose header lies is refused with the shard and offset named", arguments: ["size", "past end"])
    func hostileTar(kind: String) throws {
        let dir = try scratchDirectory("badtar")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var tar = tarArchive([("a.png", [UInt8](repeating: 1, count: 10))])
        if kind == "size" { tar.replaceSubrange(124..<130, with: Array("9x9x9x".utf8)) } else {
            tar.replaceSubrange(124..<135, with: Array(String(format: "%011o", 1 << 30).utf8))
        }
        try Data(tar).write(to: URL(fileURLWithPath: "\(dir)/bad.tar"))
        #expect {
            _ = try EmbeddingInputs.tars(["\(dir)/bad.tar"]).read()
        } throws: { error in
            "\(error)".contains("bad.tar") && "\(error)".contains("offset 0")
        }
    }
}
