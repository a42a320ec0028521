import CLIPImage
import CLIPWeights
import Foundation
import Testing

// Videos through Debian's FFmpeg against the frames FFmpeg's CLI decodes (Scripts/fixtures/make_video_fixtures.py): three
// scenes (red 0–2 s, bars 2–4.5 s, blue 4.5–6 s) sampled with a 2 s interval and scene detection.

private let videoFixtures = "\(imageFixtures)/video"
private let videoReference = Result { try SafeTensorsFile(path: "\(videoFixtures)/reference.safetensors") }

struct VideoCase: Sendable, CustomTestStringConvertible {
    let file: String
    let codec: String
    let width: Int
    let height: Int
    var testDescription: String { file }
}

@Suite("Videos")
struct VideoTests {
    static let cases: [VideoCase] = [
        .init(file: "scenes.mp4", codec: "h264", width: 64, height: 48),
        .init(file: "scenes.webm", codec: "vp9", width: 64, height: 48),
        .init(file: "scenes.mkv", codec: "mpeg4", width: 64, height: 48),
        // Recorded with a 90° display matrix: shown upright, as players and FFmpeg's CLI show it.
        .init(file: "rotated.mov", codec: "h264", width: 48, height: 64),
    ]

    @Test("frames at each scene change and every 2 s, equal to FFmpeg's CLI decoding", arguments: cases)
    func sampledFrames(_ c: VideoCase) throws {
        let path = "\(videoFixtures)/\(c.file)"
        #expect(VideoReader.hasVideoExtension(path) && !ImageFormat.hasImageExtension(path))
        let reader = try VideoReader(path: path)
        #expect(reader.info.codec == c.codec && reader.info.width == c.width && reader.info.height == c.height)
        #expect(abs((reader.info.duration ?? 0) - 6) < 0.2)
        var frames: [VideoReader.Frame] = []
        while let f = try reader.next() { frames.append(f) }
        #expect(frames.map { ($0.time * 10).rounded() / 10 } == [0, 2, 4, 4.5])
        #expect(try reader.next() == nil, "the end stays the end")
        for f in frames {
            let (shape, expected) = try videoReference.get().integerTensor(String(format: "\(c.file)/%.1f", f.time))
            #expect([f.image.height, f.image.width, 3] == shape)
            let worst = zip(f.image.pixels, expected).map { abs(Int($0) - $1) }.max() ?? 0
            #expect(f.image.mode == .rgb && f.image.pixels.count == expected.count && worst == 0,
                    "\(c.file) at \(f.time) s: largest difference \(worst)")
        }
    }

    @Test("the frame at a sampled moment, reached by seeking, is the one sampling decoded", arguments: cases)
    func frameAtMoment(_ c: VideoCase) throws {
        let path = "\(videoFixtures)/\(c.file)"
        // Backwards too: each seek starts from the key frame before it.
        for t in [4.5, 2.0, 4.0, 0.0] {
            let f = try VideoReader.frame(of: path, at: t)
            #expect(abs(f.time - t) < 0.05, "\(c.file) at \(t) s: got \(f.time)")
            let (_, expected) = try videoReference.get().integerTensor(String(format: "\(c.file)/%.1f", t))
            let worst = zip(f.image.pixels, expected).map { abs(Int($0) - $1) }.max() ?? 0
            #expect(f.image.pixels.count == expected.count && worst == 0, "\(c.file) at \(t) s: largest difference \(worst)")
        }
        // Past the end: the first frame, not nothing.
        #expect(try VideoReader.frame(of: path, at: 600).time == 0)
        let reader = try VideoReader(path: path)
        try reader.seek(to: 3)
        #expect(try reader.next().map { ($0.time * 10).rounded() / 10 } == 3)
        #expect(throws: ImageError.self) { try reader.seek(to: -1) }
        #expect(throws: ImageError.self) { try reader.seek(to: .nan) }
    }

    @Test("a stream with a key frame every second is sampled at its key frames alone, the frames FFmpeg's CLI decodes")
    func keyFrames() throws {
        let path = "\(videoFixtures)/keyframes.mp4"
        for everyFrame in [false, true] {
            let reader = try VideoReader(path: path, sceneThreshold: 0, everyFrame: everyFrame)
            #expect(reader.info.keyFramesOnly == !everyFrame)
            var frames: [VideoReader.Frame] = []
            while let f = try reader.next() { frames.append(f) }
            #expect(frames.map { ($0.time * 10).rounded() / 10 } == [0, 2, 4, 6, 8], "every frame: \(everyFrame)")
            for f in frames {
                let (_, expected) = try videoReference.get().integerTensor(String(format: "keyframes.mp4/%.1f", f.time))
                let worst = zip(f.image.pixels, expected).map { abs(Int($0) - $1) }.max() ?? 0
                #expect(f.image.pixels.count == expected.count && worst == 0, "at \(f.time) s: largest difference \(worst)")
            }
        }
        // Key frames two seconds apart do not carry a one-second interval: every frame is decoded then.
        #expect(try VideoReader(path: "\(videoFixtures)/scenes.mp4", interval: 1).info.keyFramesOnly == false)
    }

    @Test("one reader seeks back and forth in an hour-long video")
    func seekInHour() throws {
        let reader = try VideoReader(path: "\(videoFixtures)/hour.mp4", interval: 60, sceneThreshold: 0)
        for t in [1800.0, 600, 3599, 0, 2400] {
            try reader.seek(to: t)
            #expect(try reader.next()?.time == t)
        }
        // After the last frame, the end.
        try reader.seek(to: 3599)
        _ = try reader.next()
        #expect(try reader.next() == nil)
    }

    @Test("an hour-long video is sampled to its end, one frame at a time")
    func hour() throws {
        let reader = try VideoReader(path: "\(videoFixtures)/hour.mp4", interval: 60, sceneThreshold: 0)
        var count = 0, last = -1.0
        while let f = try reader.next() {
            #expect(f.time > last)
            last = f.time
            count += 1
        }
        #expect(count == 60 && last == 3540, "\(count) frames, the last at \(last) s")
    }

    @Test("a truncated video is an error, not a shorter video")
    func truncated() throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: "\(videoFixtures)/hour.mp4"))
        let cut = FileManager.default.temporaryDirectory.appendingPathComponent("cut-\(UUID().uuidString).mp4")
        try bytes.prefix(bytes.count / 2).write(to: cut)
        defer { try? FileManager.default.removeItem(at: cut) }
        do {
            let reader = try VideoReader(path: cut.path, interval: 60, sceneThreshold: 0)
            var count = 0
            while try reader.next() != nil { count += 1 }
            Issue.record("read \(count) frames of a video cut in half")
        } catch {
            #expect(error.description.hasPrefix("\(cut.path): "), "\(error)")
        }
    }

    /// Patched copies of scenes.mp4 (moov at 32, stsz at 966, stco at 1226, mdat at 1348): each ends in an error
    /// naming the file within 5 s, never a crash, a hang or a shorter video presented as whole.
    @Test("hostile MP4s end in one clear error", arguments: ["moov 4 GiB", "stsz 2^31 samples", "stco past the end",
                                                             "mdat cut", "sample of 2 GiB", "no video stream"])
    func hostile(_ kind: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(videoFixtures)/scenes.mp4")))
        func put32(_ at: Int, _ v: UInt32) { for k in 0..<4 { bytes[at + k] = UInt8((v >> (24 - 8 * k)) & 0xFF) } }
        let stsz = 966 - 4, stco = 1226 - 4
        switch kind {
        case "moov 4 GiB": put32(32, 0xFFFF_FFFF)
        case "stsz 2^31 samples": put32(stsz + 16, 0x8000_0000)
        case "stco past the end": put32(stco + 16, 0x7FFF_0000)
        case "mdat cut": bytes = Array(bytes.prefix(1348 + 600))
        case "sample of 2 GiB":
            // stsz: version/flags, sample_size 0, count, then the sizes: the first one claims 2 GiB.
            put32(stsz + 20, 0x8000_0000)
        default:
            // The track's handler type "vide" renamed: no video stream left.
            if let at = (0..<(bytes.count - 4)).first(where: { bytes[$0..<($0 + 4)] == [0x76, 0x69, 0x64, 0x65] }) {
                bytes.replaceSubrange(at..<(at + 4), with: Array("soun".utf8))
            }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("hostile-\(UUID().uuidString).mp4")
        try Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let start = Date()
        do {
            let reader = try VideoReader(path: file.path, secondsPerFrame: 5)
            var times: [Double] = []
            while let f = try reader.next() { times.append(f.time) }
            // A moov box claiming more than the file holds, read to the file's end: the whole video, or nothing.
            if kind == "moov 4 GiB" && times == [0, 2, 4, 4.5] { return }
            Issue.record("\(kind): read \(times.count) frames at \(times)")
        } catch {
            #expect(error.description.hasPrefix("\(file.path): "), "\(error)")
        }
        #expect(Date().timeIntervalSince(start) < 5, "\(kind)")
    }

    @Test("what is not a video is refused, naming the file", arguments: ["text", "image", "empty"])
    func notAVideo(_ kind: String) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("not-\(UUID().uuidString).mp4")
        defer { try? FileManager.default.removeItem(at: file) }
        switch kind {
        case "text": try Data("just some text\n".utf8).write(to: file)
        case "image": try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/formats/gif_p.gif")).write(to: file)
        default: try Data().write(to: file)
        }
        #expect(throws: ImageError.self) { _ = try VideoReader(path: file.path) }
    }
}

extension VideoReader.Frame: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.time == b.time && a.image.pixels == b.image.pixels }
}
