import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTensor
import Foundation

/// A video's sampled frames through a model: `VideoReader` samples (scene changes, and at least one every
/// `interval` seconds), the next batch is decoded on another core while the model encodes the current one, and
/// only one batch of frames is ever in memory. What `clip embed` writes per video and what `clip index` stores per
/// moment.
package struct VideoFrameEncoder: Sendable {
    package let pipeline: CLIPPipeline
    package var batchSize = 16
    /// The longest gap between sampled frames, in seconds.
    package var interval = 2.0
    /// Mean absolute difference (0–255) of 32×32 gray thumbnails that counts as a scene change; 0 turns it off.
    package var sceneThreshold = 12.0
    /// Moments one video may have (a day at a 2 s interval): their vectors are held until the video is whole.
    package var maxMoments = 50_000

    package init(pipeline: CLIPPipeline) { self.pipeline = pipeline }

    /// The embedded frames of one video.
    package struct Result: Sendable {
        package var info: VideoReader.Info
        /// Seconds from the start of the stream, ascending, one per row.
        package var times: [Double]
        /// [times.count, dimension], each row L2-normalised.
        package var rows: [Float]
        package var dimension: Int
    }

    /// Why a video was not embedded.
    package enum Failure: Error, CustomStringConvertible, Sendable {
        /// The file could not be read, decoded or encoded; the message names it.
        case video(String)
        /// `shouldStop` said yes between batches: nothing of this video is kept.
        case stopped

        package var description: String {
            switch self {
            case .video(let message): message
            case .stopped: "stopped on request"
            }
        }
    }

    /// Embeds every sampled frame of `path`. `shouldStop` is asked between batches. A decoding error anywhere
    /// fails the whole video: a shorter video is never presented as whole.
    package func embed(_ path: String, shouldStop: @Sendable () -> Bool = { false }) throws(Failure) -> Result {
        let reader: VideoReader
        do {
            reader = try VideoReader(path: path, interval: interval, sceneThreshold: sceneThreshold,
                                     maxPixels: pipeline.preprocessor.maxPixels)
        } catch {
            throw .video(error.description)
        }
        let source = FrameSource(reader: reader, preprocessor: pipeline.preprocessor, batchSize: max(batchSize, 1))
        let encoder = ImageBatchEncoder(pipeline: pipeline)
        var rows: [Float] = []
        var times: [Double] = []
        var pending = BackgroundWork { source.nextBatch() }
        while true {
            let batch: FrameBatch
            do { batch = try pending.wait().get() } catch { throw .video(error.description) }
            guard !batch.times.isEmpty else { break }
            if shouldStop() { throw .stopped }
            pending = BackgroundWork { source.nextBatch() }
            do {
                for row in try encoder.embeddings(pixels: batch.pixels) { rows += row }
            } catch {
                _ = pending.wait()  // the background decode must not outlive the call
                throw .video("\(path): \(error)")
            }
            times += batch.times
            guard times.count <= maxMoments else {
                _ = pending.wait()
                throw .video("\(path): more than \(maxMoments) moments at a \(interval) s interval with scene threshold \(sceneThreshold); sample fewer (a longer --video-interval, a higher --scene-threshold)")
            }
        }
        return Result(info: reader.info, times: times, rows: rows, dimension: pipeline.model.configuration.embedDim)
    }
}

/// Preprocessed frames of a batch.
struct FrameBatch: Sendable {
    /// One [3, R, R] row per frame.
    var pixels: [[Float]] = []
    var times: [Double] = []
}

/// The reader behind a background decode. Only one `nextBatch` runs at a time (the encoder waits for one before it
/// starts the next), which is what makes handing the non-Sendable reader to another thread sound.
final class FrameSource: @unchecked Sendable {
    private let reader: VideoReader
    private let preprocessor: ImagePreprocessor
    private let batchSize: Int

    init(reader: VideoReader, preprocessor: ImagePreprocessor, batchSize: Int) {
        (self.reader, self.preprocessor, self.batchSize) = (reader, preprocessor, batchSize)
    }

    /// Up to `batchSize` frames; none at the end of the video.
    func nextBatch() -> Swift.Result<FrameBatch, ImageError> {
        Swift.Result { () throws(ImageError) -> FrameBatch in
            var batch = FrameBatch()
            while batch.times.count < batchSize, let frame = try reader.next() {
                batch.pixels.append(try preprocessor.pixels(frame.image, name: "\(reader.path) at \(frame.time) s"))
                batch.times.append(frame.time)
            }
            return batch
        }
    }
}
