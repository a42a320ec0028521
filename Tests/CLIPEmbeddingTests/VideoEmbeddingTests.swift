import CLIPEmbedding
import CLIPImage
import CLIPKit
import CLIPTensor
import CLIPTestSupport
import Foundation
import Testing

private let videoFixtures = videoDirectory

@Suite("videos in clip-video-encode's layout")
struct VideoEmbeddingTests {
    @Test("a folder's videos: K.npy rows are the sampled frames' image embeddings, K.json their times; a rerun skips them")
    func folder() throws {
        let dir = try scratchDirectory("videos")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/in/sub", withIntermediateDirectories: true)
        for name in ["scenes.mp4", "rotated.mov"] {
            try FileManager.default.copyItem(atPath: "\(videoFixtures)/\(name)", toPath: "\(dir)/in/sub/\(name)")
        }
        try Data("not a video".utf8).write(to: URL(fileURLWithPath: "\(dir)/in/broken.webm"))
        let inputs = try EmbeddingInputs.folder("\(dir)/in")
        #expect(try inputs.read() == nil, "videos are not image inputs")
        #expect(inputs.videos == ["\(dir)/in/broken.webm", "\(dir)/in/sub/rotated.mov", "\(dir)/in/sub/scenes.mp4"])

        let job = VideoEmbeddingJob(pipeline: pipeline)
        let report = try job.run(inputs.videos, shard: nil, directory: "\(dir)/out")
        #expect(report.taken == 3 && report.embedded == 2 && report.frames == 8 && report.failed.count == 1)
        #expect(report.failed.first?.path == "\(dir)/in/broken.webm")
        // The failure is recorded beside the videos, as the image job records its own.
        let failures = try String(contentsOfFile: "\(dir)/out/videos/failed_0.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(failures.count == 1)
        let record = try JSONSerialization.jsonObject(with: Data(failures[0].utf8)) as? [String: String]
        #expect(record?["path"] == "\(dir)/in/broken.webm" && record?["error"]?.isEmpty == false, "\(failures)")

        // Row by row the image tower's embedding of the frame the reader samples at that time.
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/videos/000000002.json"))) as? [String: Any]
        #expect(json?["path"] as? String == "\(dir)/in/sub/scenes.mp4")
        #expect(json?["timestamps"] as? [Double] == [0, 2, 4, 4.5])
        #expect(json?["codec"] as? String == "h264" && json?["scene_threshold"] as? Double == 12)
        let rows = try npyRows("\(dir)/out/videos/000000002.npy")
        #expect(rows.rows == 4 && rows.dim == pipeline.model.configuration.embedDim)
        let reader = try VideoReader(path: "\(dir)/in/sub/scenes.mp4")
        var i = 0
        while let frame = try reader.next() {
            let pixels = try pipeline.preprocessor.pixels(frame.image)
            let r = pipeline.preprocessor.resolution
            let expected = l2Normalized(try pipeline.model.encodeImage(try Tensor(shape: [1, 3, r, r], scalars: pixels))).scalars
            let got = Array(rows.values[(i * rows.dim)..<((i + 1) * rows.dim)])
            #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-5 }, "frame \(i)")
            i += 1
        }
        #expect(i == 4)

        // Done before: skipped. The failed one is tried again.
        let again = try job.run(inputs.videos, shard: nil, directory: "\(dir)/out")
        #expect(again.skipped == 2 && again.embedded == 0 && again.failed.count == 1)
        // Once the broken video is gone, a rerun's record says nothing failed.
        try FileManager.default.removeItem(atPath: "\(dir)/in/broken.webm")
        let clean = try job.run(Array(inputs.videos.dropFirst()), shard: nil, directory: "\(dir)/out")
        #expect(clean.failed.isEmpty && clean.taken == 2)
        #expect(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/videos/failed_0.jsonl")).isEmpty)
        // Another model's record is not "done".
        var other = job
        other.interval = 1
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/out/videos/000000001.json"))
        try Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\"model_fingerprint\" : \"", with: "\"model_fingerprint\" : \"x").utf8)
            .write(to: URL(fileURLWithPath: "\(dir)/out/videos/000000001.json"))
        let third = try other.run(inputs.videos, shard: nil, directory: "\(dir)/out")
        #expect(third.embedded == 1 && third.skipped == 1)
    }

    @Test("shards split videos by their position in the whole list")
    func shards() throws {
        let dir = try scratchDirectory("video-shards")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let videos = ["scenes.mp4", "scenes.webm", "scenes.mkv"].map { "\(videoFixtures)/\($0)" }
        let job = VideoEmbeddingJob(pipeline: pipeline)
        let first = try job.run(videos, shard: try Shard(index: 1, count: 2), directory: dir, part: 0)
        let second = try job.run(videos, shard: try Shard(index: 2, count: 2), directory: dir, part: 1)
        #expect(first.taken == 2 && second.taken == 1)
        let names = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/videos").sorted()
        #expect(names == ["000000000.json", "000000000.npy", "000000001.json", "000000001.npy", "000000002.json", "000000002.npy",
                          "failed_0.jsonl", "failed_1.jsonl"])
    }

    @Test("an input list's video lines go to the video job")
    func list() throws {
        let dir = try scratchDirectory("video-list")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "a.jpg\n\(videoFixtures)/scenes.mp4\nb.png\tcaption\nclip.MOV\n".write(toFile: "\(dir)/list.txt", atomically: true, encoding: .utf8)
        let inputs = try EmbeddingInputs.list("\(dir)/list.txt")
        var images: [String] = []
        while let i = try inputs.read() { images.append(i.path) }
        #expect(images == ["a.jpg", "b.png"] && inputs.videos == ["\(videoFixtures)/scenes.mp4", "clip.MOV"])
    }
}
