import CCLIPImage
import CLIPFiles
import Foundation

/// A video's frames as a photo library wants them: one at every scene change and at least one every `interval`
/// seconds, decoded by FFmpeg one at a time (memory stays flat however long the video is), as 8-bit RGB turned by
/// the stream's rotation as players turn it.
///
/// Not thread-safe: one reader, one consumer.
public final class VideoReader {
    /// File-name extensions (lowercase) of the containers read: MP4/MOV (phones), Matroska/WebM, AVI.
    public static let fileExtensions: Set<String> = ["mp4", "m4v", "mov", "qt", "mkv", "webm", "avi", "3gp"]

    /// Whether a path's extension names a video container this reader opens (case-insensitive).
    public static func hasVideoExtension(_ path: String) -> Bool {
        ImageFormat.lowercasedExtension(path).map(fileExtensions.contains) ?? false
    }

    /// The media type of a video container from its first bytes (at least 64 for Matroska's doctype), for serving
    /// it to a browser; nil when they are not one of the containers read.
    public static func mediaType(_ head: [UInt8]) -> String? {
        func at(_ offset: Int, _ ascii: String) -> Bool {
            let b = Array(ascii.utf8)
            return head.count >= offset + b.count && Array(head[offset..<(offset + b.count)]) == b
        }
        if at(4, "ftyp") {
            if at(8, "qt  ") { return "video/quicktime" }
            if at(8, "3gp") { return "video/3gpp" }
            return "video/mp4"
        }
        // QuickTime files from before ftyp start with their movie or data atom.
        if at(4, "moov") || at(4, "mdat") || at(4, "wide") || at(4, "free") { return "video/quicktime" }
        if head.starts(with: [0x1A, 0x45, 0xDF, 0xA3]) {
            // The EBML header's DocType element (0x4282) says webm or matroska.
            let prefix = head.prefix(64)
            if let i = prefix.indices.dropLast(6).first(where: { prefix[$0] == 0x42 && prefix[$0 + 1] == 0x82 }),
               Array(prefix[(i + 3)..<min(i + 7, prefix.endIndex)]) == Array("webm".utf8) {
                return "video/webm"
            }
            return "video/x-matroska"
        }
        if at(0, "RIFF") && at(8, "AVI ") { return "video/x-msvideo" }
        return nil
    }

    /// What the container says before any frame is decoded.
    public struct Info: Sendable, Equatable {
        /// Frame size as shown (rotation applied).
        public let width: Int
        public let height: Int
        /// Seconds, when the container says.
        public let duration: Double?
        /// FFmpeg's name of the decoder ("h264", "hevc", "vp9", …).
        public let codec: String
        /// Whether the key frames alone are decoded: they are never more than the interval apart, so they carry the
        /// sampling (a moment is then a key frame's time; a cut between two is seen at the next).
        public let keyFramesOnly: Bool
    }

    /// One sampled frame.
    public struct Frame: Sendable {
        /// Seconds from the start of the stream.
        public let time: Double
        /// `.rgb`, turned as shown.
        public let image: DecodedImage
    }

    public let path: String
    public let info: Info
    private let file: RegularFile
    private let handle: OpaquePointer
    private var finished = false

    /// Opens `path`. `interval`: the longest gap between sampled frames, in seconds; `sceneThreshold`: the mean
    /// absolute difference (0–255) between 32×32 gray thumbnails of a frame and the last sampled one that counts as a
    /// scene change (0 turns scene detection off); `secondsPerFrame`: how long finding one sampled frame may take
    /// before the file is given up as hostile; `everyFrame`: decode every frame even when the key frames are close
    /// enough to sample by (exact moments, at 30–60 times the work for a phone's video).
    public init(path: String, interval: Double = 2, sceneThreshold: Double = 12, maxPixels: Int = 178_956_970,
                secondsPerFrame: Double = 60, everyFrame: Bool = false) throws(ImageError) {
        guard interval > 0, interval.isFinite, sceneThreshold >= 0, secondsPerFrame >= 0 else {
            throw ImageError(file: path, .unsupported("video sampling needs an interval > 0 s and a threshold ≥ 0"))
        }
        do { file = try RegularFile(path: path) } catch { throw ImageError(file: path, .unreadable(error.reason)) }
        guard file.size > 0 else { throw ImageError(file: path, .empty) }
        var err = [CChar](repeating: 0, count: 512)
        var handle: OpaquePointer?
        var raw = clip_video_info()
        let code = clip_video_open(file.descriptor, UInt64(max(maxPixels, 0)), interval, sceneThreshold, secondsPerFrame,
                                   everyFrame ? 1 : 0, &handle, &raw, &err, err.count)
        if let error = decodeError(code, err, name: path) { throw error }
        guard let handle else { throw ImageError(file: path, .corrupt("the video reader did not open")) }
        self.path = path
        self.handle = handle
        let turned = raw.orientation >= 5
        let codec = withUnsafeBytes(of: raw.codec) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        info = Info(width: Int(turned ? raw.height : raw.width), height: Int(turned ? raw.width : raw.height),
                    duration: raw.duration >= 0 ? raw.duration : nil, codec: codec, keyFramesOnly: raw.key_frames_only != 0)
    }

    deinit { clip_video_close(handle) }

    /// Moves on to `time` (seconds from the start): the next frame is the first at or after it, and sampling goes
    /// on from there.
    public func seek(to time: Double) throws(ImageError) {
        var err = [CChar](repeating: 0, count: 512)
        if let error = decodeError(clip_video_seek(handle, time, &err, err.count), err, name: path) { throw error }
        finished = false
    }

    /// The frame shown at `time` seconds (the first at or after it): a poster for a video, or the picture of a
    /// moment a search found. Past the end, or in a file that cannot seek (an AVI without an index), the first frame.
    public static func frame(of path: String, at time: Double = 0, maxPixels: Int = 178_956_970,
                             secondsPerFrame: Double = 60) throws(ImageError) -> Frame {
        if time > 0 {
            let reader = try VideoReader(path: path, interval: 1e9, sceneThreshold: 0, maxPixels: maxPixels,
                                         secondsPerFrame: secondsPerFrame, everyFrame: true)
            if (try? reader.seek(to: time)) != nil, let frame = try? reader.next() { return frame }
        }
        let reader = try VideoReader(path: path, interval: 1e9, sceneThreshold: 0, maxPixels: maxPixels,
                                     secondsPerFrame: secondsPerFrame, everyFrame: true)
        guard let frame = try reader.next() else { throw ImageError(file: path, .corrupt("the video has no frames")) }
        return frame
    }

    /// The next sampled frame, or nil at the end of the video. A damaged or truncated stream is an error naming the
    /// file and the time reached, never a shorter video presented as whole.
    public func next() throws(ImageError) -> Frame? {
        guard !finished else { return nil }
        var img = clip_image()
        defer { clip_image_free(&img) }
        var err = [CChar](repeating: 0, count: 512)
        var time = 0.0
        let result = clip_video_next(handle, &img, &time, &err, err.count)
        if result < 0 {
            finished = true
            throw decodeError(-result, err, name: path) ?? ImageError(file: path, .corrupt("video decoding failed"))
        }
        guard result == 1 else {
            finished = true
            return nil
        }
        let count = Int(img.width) * Int(img.height) * 3
        let pixels = Array(UnsafeBufferPointer(start: img.pixels, count: count))
        var image = DecodedImage(width: Int(img.width), height: Int(img.height), mode: .rgb, pixels: pixels)
        if (2...8).contains(Int(img.orientation)) {
            image = DecodedImage.transposed(image, orientation: Int(img.orientation))
            image.exifOrientation = nil
        }
        return Frame(time: time, image: image)
    }
}
