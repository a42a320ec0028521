import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTensor
import Foundation

/// Embeds videos into clip-video-encode's per-video layout: for the video at position K of the sorted input,
/// `videos/K.npy` (float32 [frames, dim], L2-normalised like `img_emb`) and `videos/K.json` (its path, each frame's
/// time in seconds, the sampling, the frame size, the model), K zero-padded to nine digits. The `.json` is written
/// last and atomically: a video with one is done, and a run after an interruption skips it.
///
/// The videos a run could not embed are recorded with why in `videos/failed_{N}.jsonl` (N the partition, as the image
/// job's `metadata/failed_{N}.jsonl`), rewritten atomically by every run: a rerun retries them and leaves the record of
/// what still fails.
///
/// Frames are sampled by `VideoReader` (scene changes, and at least one every `interval` seconds); the next batch is
/// decoded while the model encodes the current one, and a video is never held whole in memory.
package struct VideoEmbeddingJob {
    package let pipeline: CLIPPipeline
    package var batchSize = 16
    package var interval = 2.0
    package var sceneThreshold = 12.0

    package init(pipeline: CLIPPipeline) { self.pipeline = pipeline }

    /// What a run did.
    package struct Report: Sendable {
        /// Videos this shard took.
        package var taken = 0
        /// Videos embedded now (not counting those a previous run finished).
        package var embedded = 0
        /// Videos a previous run finished.
        package var skipped = 0
        /// Frames embedded.
        package var frames = 0
        package var failed: [(path: String, reason: String)] = []
        package var seconds = 0.0
    }

    /// Embeds the `shard`'s share of `videos` (positions counted in the whole list, so shards agree on keys); the
    /// failures go to `videos/failed_{part}.jsonl`.
    package func run(_ videos: [String], shard: Shard?, directory: String, part: Int = 0) throws(EmbeddingJobError) -> Report {
        let start = Date()
        var report = Report()
        let folder = directory + "/videos"
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw EmbeddingJobError.output(path: folder, reason: "cannot create the output folder: \(error.localizedDescription)")
        }
        let model = modelFingerprint
        for (position, path) in videos.enumerated() where shard?.takes(position) ?? true {
            report.taken += 1
            let key = String(format: "%09d", position)
            if Self.finished(json: "\(folder)/\(key).json", path: path, model: model) {
                report.skipped += 1
                continue
            }
            do {
                let frames = try embed(path, key: key, folder: folder, model: model)
                report.embedded += 1
                report.frames += frames
            } catch {
                report.failed.append((path, error.description))
            }
        }
        try Self.writeFailures(report.failed, to: "\(folder)/failed_\(part).jsonl")
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// One JSON line per failed video: `{"path", "error"}`; written even when empty, so the file says this run's
    /// failures and no earlier run's.
    static func writeFailures(_ failed: [(path: String, reason: String)], to path: String) throws(EmbeddingJobError) {
        struct Failure: Encodable { var path: String, error: String }
        try writeFailureLines(failed.map { Failure(path: $0.path, error: $0.reason) }, to: path)
    }

    /// SHA-256 of what makes two embeddings comparable: the architecture, the checkpoint's bytes, the preprocessing.
    var modelFingerprint: String {
        let parts = [pipeline.model.configuration.fingerprintText, pipeline.loaded?.checkpointDigest ?? "no checkpoint",
                     "\(pipeline.preprocessor)"]
        return SHA256.hex(Array(parts.joined(separator: "\n").utf8))
    }

    /// Whether `json` records `path` embedded by `model` (a damaged or foreign file is not).
    static func finished(json: String, path: String, model: String) -> Bool {
        guard let bytes = try? RegularFile.contents(of: json, limit: 64 << 20),
              let record = try? JSONDecoder().decode(VideoRecord.self, from: Data(bytes)) else { return false }
        return record.path == path && record.model == model
    }

    /// Embeds one video; the number of frames.
    private func embed(_ path: String, key: String, folder: String, model: String) throws(EmbeddingJobError) -> Int {
        var frames = VideoFrameEncoder(pipeline: pipeline)
        (frames.batchSize, frames.interval, frames.sceneThreshold) = (batchSize, interval, sceneThreshold)
        let video: VideoFrameEncoder.Result
        do { video = try frames.embed(path) } catch { throw .video(error) }
        let (times, rows, info) = (video.times, video.rows, video.info)
        let dimension = pipeline.model.configuration.embedDim
        let record = VideoRecord(path: path, timestamps: times, interval: interval, sceneThreshold: sceneThreshold,
                                 width: info.width, height: info.height, duration: info.duration,
                                 codec: info.codec, keyFramesOnly: info.keyFramesOnly, model: model)
        do {
            let embeddings = try Tensor(shape: [times.count, dimension], scalars: rows)
            try OutputFile.write([UInt8](embeddings.npyData()), to: "\(folder)/\(key).npy")
            try OutputFile.write(try JSONOutput.pretty(record), to: "\(folder)/\(key).json")
        } catch {
            throw EmbeddingJobError.output(path: "\(folder)/\(key)", reason: "cannot write: \(error)")
        }
        return times.count
    }
}

/// `videos/K.json`.
struct VideoRecord: Codable, Equatable {
    var path: String
    /// Seconds from the start of the stream, one per row of `K.npy`.
    var timestamps: [Double]
    var interval: Double
    var sceneThreshold: Double
    var width: Int
    var height: Int
    var duration: Double?
    var codec: String
    /// Whether the key frames alone were decoded (they were never more than the interval apart).
    var keyFramesOnly: Bool?
    /// SHA-256 of the architecture, checkpoint and preprocessing: embeddings of another model are not these.
    var model: String

    enum CodingKeys: String, CodingKey {
        case path, timestamps, interval, width, height, duration, codec
        case sceneThreshold = "scene_threshold"
        case keyFramesOnly = "key_frames_only"
        case model = "model_fingerprint"
    }
}
