#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPEmbedding
import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTensor
import Foundation
import GRDB

/// How an index run behaves.
package struct IndexingOptions: Sendable {
    /// Images encoded at once, and files per committed transaction.
    package var batchSize = 32
    /// Directory names skipped wherever they occur (hidden directories and `@eaDir` always are).
    package var excludedDirectories: [String] = []
    /// A video's moments: at least one every `videoInterval` seconds, and one at each scene change (the mean
    /// difference of 32×32 gray thumbnails at least `sceneThreshold` of 255; 0 turns it off).
    package var videoInterval = 2.0
    package var sceneThreshold = 12.0

    /// How the moments were chosen, as the index records it beside them.
    var sampling: String { "interval \(videoInterval) s, scene threshold \(sceneThreshold)" }
    package init() {}
}

/// Where an index run is: for progress bars.
package struct IndexingProgress: Sendable {
    /// Files looked at (new and changed ones), of `total`.
    package var done: Int
    package var total: Int
    /// Images and video frames encoded so far.
    package var embedded: Int
    package var elapsed: Double
}

/// What an index run did.
package struct IndexingReport: Sendable {
    /// Image and video files found under the folders.
    package var scanned = 0
    /// Files whose size and modification time were unchanged and whose embedding the index has.
    package var unchanged = 0
    /// Images (and videos) encoded by the model in this run.
    package var embedded = 0
    /// Of `embedded`, videos; and the moments sampled from them, each its own vector.
    package var videos = 0
    package var frames = 0
    /// New or changed paths whose contents the index had already embedded (moved, renamed or copied files).
    package var reused = 0
    /// Photos without an EXIF turn whose embedding made before orientation was applied was taken over (their
    /// pixels are the same either way); photos with one are embedded again.
    package var carriedOver = 0
    /// Files recorded in an earlier run that are gone now.
    package var deleted = 0
    /// Files that could not be read or decoded in this run, with the reason.
    package var failed: [(path: String, reason: String)] = []
    /// Unchanged files that failed in an earlier run (not retried until they change).
    package var failedBefore = 0
    /// Directories that could not be listed.
    package var unreadableDirectories: [(path: String, reason: String)] = []
    /// The run stopped early on request (Ctrl-C); everything up to the last batch is committed.
    package var interrupted = false
    package var seconds = 0.0
}

/// Which contents `model` has embedded: those of the files under the folders being indexed, known at the start,
/// and any other (a file copied from a folder not scanned now, or committed by an earlier batch) asked of the
/// database, rather than every hash of a large index read into memory at each run.
struct EmbeddedContents: Sendable {
    let index: PhotoIndex
    let model: IndexedModel
    let known: Set<String>

    func contains(_ hash: String) -> Bool { known.contains(hash) || index.hasEmbedding(hash, model: model) }
}

/// Brings an index up to date with folders: new and changed files are hashed and (if their contents are new to
/// this model) decoded and encoded in batches, the next batch prepared on other cores while the model encodes
/// the current one; each batch is one transaction. Files gone from the folders are marked deleted.
package struct Indexer: Sendable {
    package let index: PhotoIndex
    package let pipeline: CLIPPipeline
    package let model: IndexedModel
    /// The same weights' entry made without EXIF orientation (an index from before it was applied): contents
    /// embedded there whose files declare no turn keep that embedding instead of being encoded again.
    package let unoriented: IndexedModel?

    package init(index: PhotoIndex, pipeline: CLIPPipeline, model: IndexedModel, unoriented: IndexedModel? = nil) {
        (self.index, self.pipeline, self.model) = (index, pipeline, model)
        self.unoriented = pipeline.preprocessor.applyEXIFOrientation ? unoriented : nil
    }

    /// A file to look at, with the hash the index already knows for it (when only the model is new to it).
    struct Work: Sendable {
        var file: ScannedFile
        var stored: String
        var knownHash: String?
    }

    /// A file after reading (and, when its contents are new, decoding).
    struct Prepared: Sendable {
        var work: Work
        var hash: String?
        var width: Int?
        var height: Int?
        var error: String?
        /// Preprocessed pixels [3, R, R] when the contents need an embedding.
        var pixels: [Float]?
        /// The embedding taken over from the unoriented entry (the file declares no turn).
        var carried: [Float]?
    }

    /// Updates the index for `folders`. `shouldStop` is asked between batches: when it says yes, the current
    /// batch is committed and the run returns with `interrupted` set.
    package func run(folders: [String], options: IndexingOptions = IndexingOptions(),
                    shouldStop: @Sendable () -> Bool = { false },
                    progress: (@Sendable (IndexingProgress) -> Void)? = nil) throws(IndexError) -> IndexingReport {
        let start = Date()
        var report = IndexingReport()
        let roots = try folders.map { (f) throws(IndexError) -> String in try Self.resolveFolder(f) }
        try index.recordFolders(roots)
        var scan = FolderScan(excluded: options.excludedDirectories)
        scan.folders = roots
        var found: [ScannedFile] = []
        for root in roots { scan.files(under: root, into: &found) }
        report.scanned = found.count
        report.unreadableDirectories = scan.unreadable

        // Only the rows under the folders scanned: the other folders' millions of files cost nothing here.
        let known = try index.files(under: roots)
        let embedded = EmbeddedContents(index: index, model: model, known: try index.embeddedHashes(model: model, under: roots))
        var work: [Work] = []
        // Paths as bytes, as the file system tells them apart.
        var seen = Set<[UInt8]>()
        for file in found {
            let stored = index.storedPath(file.path)
            guard seen.insert(Array(stored.utf8)).inserted else { continue }  // the same folder given twice
            // A file now refused unread (a link that leads out) is recorded again even when it looks unchanged.
            if let old = known[Array(stored.utf8)], !old.deleted, old.size == file.size, old.modified == file.modified,
               file.problem == nil || old.error != nil {
                if old.error != nil { report.failedBefore += 1; continue }
                // A video sampled otherwise than this run asks is sampled again.
                if let h = old.hash, embedded.contains(h),
                   !file.isVideo || index.hasMoments(h, model: model, sampling: options.sampling) {
                    report.unchanged += 1
                    continue
                }
                work.append(Work(file: file, stored: stored, knownHash: old.hash))
            } else {
                work.append(Work(file: file, stored: stored, knownHash: nil))
            }
        }

        // Images first, in batches; then videos one at a time (each is a batch of its own moments).
        let videos = work.filter(\.file.isVideo)
        let images = work.filter { !$0.file.isVideo }
        let size = max(options.batchSize, 1)
        let batches = stride(from: 0, to: images.count, by: size).map { Array(images[$0..<min($0 + size, images.count)]) }
        var next = batches.first.map { prepareInBackground($0, embedded: embedded) }
        var done = 0
        for i in batches.indices {
            guard let pending = next else { break }
            let prepared = pending.wait()
            if shouldStop() {
                report.interrupted = true
                break
            }
            next = i + 1 < batches.count ? prepareInBackground(batches[i + 1], embedded: embedded) : nil
            let vectors = encode(prepared, report: &report)
            try commit(prepared, vectors: vectors)
            for p in prepared where p.error == nil && p.pixels == nil {
                if p.carried != nil { report.carriedOver += 1 } else { report.reused += 1 }
            }
            done += prepared.count
            progress?(IndexingProgress(done: done, total: work.count, embedded: report.embedded,
                                       elapsed: Date().timeIntervalSince(start)))
        }
        _ = next?.wait()  // a background preparation must not outlive the run
        var frames = VideoFrameEncoder(pipeline: pipeline)
        (frames.batchSize, frames.interval, frames.sceneThreshold) = (size, options.videoInterval, options.sceneThreshold)
        for w in videos where !report.interrupted {
            if shouldStop() {
                report.interrupted = true
                break
            }
            try indexVideo(w, embedded: embedded, encoder: frames, sampling: options.sampling, report: &report,
                           shouldStop: shouldStop)
            done += 1
            progress?(IndexingProgress(done: done, total: work.count, embedded: report.embedded + report.frames,
                                       elapsed: Date().timeIntervalSince(start)))
        }
        if !report.interrupted {
            report.deleted = try markVanished(known: known, seen: seen, roots: roots)
        }
        report.seconds = Date().timeIntervalSince(start)
        return report
    }

    /// The real absolute path of a folder to index, or an error naming it.
    static func resolveFolder(_ folder: String) throws(IndexError) -> String {
        guard let real = realpath(folder, nil) else {
            throw IndexError.unusable(path: folder, reason: "cannot index: \(String(cString: strerror(errno)))")
        }
        defer { free(real) }
        let path = String(cString: real)
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw IndexError.unusable(path: folder, reason: "not a folder (clip index takes folders; it finds the images inside)")
        }
        return path
    }

    // MARK: Preparing

    private func prepareInBackground(_ batch: [Work], embedded: EmbeddedContents) -> BackgroundWork<[Prepared]> {
        let preprocessor = pipeline.preprocessor
        let (index, unoriented) = (index, unoriented)
        return BackgroundWork { Self.prepare(batch, embedded: embedded, preprocessor: preprocessor, index: index, unoriented: unoriented) }
    }

    /// Reads, hashes and (when the contents are not yet embedded) decodes a batch on all cores.
    static func prepare(_ batch: [Work], embedded: EmbeddedContents, preprocessor: ImagePreprocessor,
                        index: PhotoIndex, unoriented: IndexedModel?) -> [Prepared] {
        var out = batch.map { Prepared(work: $0) }
        out.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            parallelFor(batch.count) { i in
                base[i] = prepareOne(batch[i], embedded: embedded, preprocessor: preprocessor, index: index,
                                     unoriented: unoriented)
            }
        }
        return out
    }

    static func prepareOne(_ w: Work, embedded: EmbeddedContents, preprocessor: ImagePreprocessor,
                           index: PhotoIndex, unoriented: IndexedModel?) -> Prepared {
        var p = Prepared(work: w, hash: w.knownHash)
        if let problem = w.file.problem {
            p.error = problem
            return p
        }
        let bytes: [UInt8]
        do { bytes = try ImagePreprocessor.readImageFile(w.file.path) } catch {
            p.error = error.problemDescription
            return p
        }
        // Hashed again even when the index knows a hash for an unchanged size and time: the bytes are read anyway,
        // and a tag rewritten in place (exiftool -P keeps the time) must not keep the old content's hash.
        let hash = SHA256.hex(bytes)
        p.hash = hash
        let read = preprocessor.applyEXIFOrientation
            ? ImageFormat.orientationRead(encoded: bytes, maxPixels: preprocessor.maxPixels) : .read(nil)
        let orientation: Int? = if case .read(let o) = read { o } else { nil }
        // The size as shown: turned when the preprocessing turns the photo.
        if let d = ImageFormat.dimensions(bytes) {
            (p.width, p.height) = (orientation ?? 1) >= 5 ? (d.height, d.width) : (d.width, d.height)
        }
        guard !embedded.contains(hash) else { return p }
        // A header read that declares no turn: the pixels, and so the embedding, are those the unoriented entry
        // holds. A header that could not be read is decoded like any other (its error, if any, recorded).
        if let unoriented, read == .read(nil) || read == .read(1), let v = index.storedEmbedding(hash, model: unoriented) {
            p.carried = v
            return p
        }
        do { p.pixels = try preprocessor.pixels(encoded: bytes, name: w.file.path) } catch {
            p.error = error.problemDescription
        }
        return p
    }

    // MARK: Encoding and committing

    /// L2-normalised embeddings of the prepared files that carry pixels (nil for the others). A batch the model
    /// refuses (non-finite outputs) is retried file by file, so one bad image fails alone.
    private func encode(_ prepared: [Prepared], report: inout IndexingReport) -> [[Float]?] {
        var out = [[Float]?](repeating: nil, count: prepared.count)
        let which = prepared.indices.filter { prepared[$0].pixels != nil }
        guard !which.isEmpty else { return out }
        let outcomes = ImageBatchEncoder(pipeline: pipeline).embeddingsPerImage(pixels: which.map { prepared[$0].pixels! })
        for (i, outcome) in zip(which, outcomes) {
            switch outcome {
            case .success(let row): out[i] = row; report.embedded += 1
            case .failure(let error): report.failed.append((prepared[i].work.file.path, "\(error)"))
            }
        }
        for i in prepared.indices where prepared[i].error != nil {
            report.failed.append((prepared[i].work.file.path, prepared[i].error!))
        }
        return out
    }

    /// One transaction: the batch's file rows (failures with their reason) and new embeddings; for one video, its
    /// moments and, as the contents' embedding, their mean renormalised.
    private func commit(_ prepared: [Prepared], vectors: [[Float]?],
                        moments: (VideoFrameEncoder.Result, sampling: String)? = nil) throws(IndexError) {
        let modelID = model.id
        try index.write { db in
            let generation = try PhotoIndex.bumpGeneration(db)
            for (i, p) in prepared.enumerated() {
                var error = p.error
                if error == nil, p.pixels != nil, vectors[i] == nil { error = "the model could not encode it" }
                try db.execute(sql: """
                    INSERT INTO files (path, size, modified, hash, width, height, error, deleted, changed)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)
                    ON CONFLICT (path) DO UPDATE SET size = excluded.size, modified = excluded.modified,
                        hash = excluded.hash, width = excluded.width, height = excluded.height,
                        error = excluded.error, deleted = 0, changed = excluded.changed
                    """, arguments: [p.work.stored, p.work.file.size, p.work.file.modified, p.hash, p.width,
                                     p.height, error, generation])
                if let (m, sampling) = moments, let h = p.hash {
                    let d = m.dimension
                    var mean = [Float](repeating: 0, count: d)
                    // Moments of another sampling go; so would an altered database's stray rows.
                    try db.execute(sql: "DELETE FROM frames WHERE hash = ? AND model = ?", arguments: [h, modelID])
                    for (k, t) in m.times.enumerated() {
                        let row = m.rows[(k * d)..<((k + 1) * d)]
                        for (j, x) in row.enumerated() { mean[j] += x }
                        let blob = row.withUnsafeBufferPointer { vectorBlob($0) }
                        try db.execute(sql: "INSERT OR IGNORE INTO frames (hash, model, time, vector, sampling) VALUES (?, ?, ?, ?, ?)",
                                       arguments: [h, modelID, t, blob, sampling])
                    }
                    let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    // Moments that cancel out (never, for unit vectors of one video, but a vector must be a unit one).
                    let unit = norm > 1e-6 ? mean.map { $0 / norm } : Array(m.rows[0..<d])
                    let blob = unit.withUnsafeBufferPointer { vectorBlob($0) }
                    try db.execute(sql: "INSERT OR REPLACE INTO embeddings (hash, model, vector) VALUES (?, ?, ?)",
                                   arguments: [h, modelID, blob])
                    try PhotoIndex.filesChanged(hash: h, generation: generation, db)
                } else if let v = vectors[i] ?? p.carried, let h = p.hash {
                    let blob = v.withUnsafeBufferPointer { vectorBlob($0) }
                    try db.execute(sql: "INSERT OR IGNORE INTO embeddings (hash, model, vector) VALUES (?, ?, ?)",
                                   arguments: [h, modelID, blob])
                    if db.changesCount > 0 { try PhotoIndex.filesChanged(hash: h, generation: generation, db) }
                }
            }
        }
    }

    // MARK: Videos

    /// Hashes a video and, when its contents are new to the model, embeds its moments; commits the file row, the
    /// moments and their mean (the contents' embedding, which says they are whole) in one transaction. A video
    /// stopped on request leaves nothing of itself: the next run embeds it again.
    private func indexVideo(_ w: Work, embedded: EmbeddedContents, encoder: VideoFrameEncoder, sampling: String,
                            report: inout IndexingReport, shouldStop: @Sendable () -> Bool) throws(IndexError) {
        var p = Prepared(work: w, hash: w.knownHash)
        var moments: VideoFrameEncoder.Result?
        defer {
            if let error = p.error { report.failed.append((w.file.path, error)) }
        }
        if let problem = w.file.problem {
            p.error = problem
        } else {
            do {
                // Hashed from the file in chunks: a video may be larger than memory.
                p.hash = try SHA256.file(w.file.path)
                if embedded.contains(p.hash!), index.hasMoments(p.hash!, model: model, sampling: sampling) {
                    // The contents are embedded (a moved or copied video): its size from the header alone.
                    let reader = try VideoReader(path: w.file.path, maxPixels: pipeline.preprocessor.maxPixels)
                    (p.width, p.height) = (reader.info.width, reader.info.height)
                } else {
                    moments = try encoder.embed(w.file.path, shouldStop: shouldStop)
                }
            } catch let error as VideoFrameEncoder.Failure {
                if case .stopped = error {
                    report.interrupted = true
                    return
                }
                p.error = Self.problem(error.description, file: w.file.path)
            } catch let error as ImageError {
                p.error = error.problemDescription
            } catch let error as FileError {
                p.error = Self.problem(error.description, file: w.file.path)
            } catch {
                p.error = "\(error)"
            }
        }
        if let m = moments {
            (p.width, p.height) = (m.info.width, m.info.height)
            if m.times.isEmpty { p.error = "the video has no frames"; moments = nil }
        }
        try commit([p], vectors: [nil], moments: moments.map { ($0, sampling) })
        if let m = moments {
            report.embedded += 1
            report.videos += 1
            report.frames += m.times.count
        } else if p.error == nil {
            report.reused += 1
        }
    }

    /// `message` without the file name in front (the index stores it beside the path).
    static func problem(_ message: String, file: String) -> String {
        message.hasPrefix(file + ": ") ? String(message.dropFirst(file.count + 2)) : message
    }

    /// Marks files under the scanned folders that the scan did not find as deleted; returns how many.
    private func markVanished(known: [[UInt8]: IndexedFile], seen: Set<[UInt8]>, roots: [String]) throws(IndexError) -> Int {
        let gone = known.filter { path, f in
            guard !f.deleted, !seen.contains(path) else { return false }
            let absolute = index.absolutePath(f.path)
            return roots.contains { isPath(absolute, inside: $0) }
        }
        guard !gone.isEmpty else { return 0 }
        try index.write { db in
            let generation = try PhotoIndex.bumpGeneration(db)
            for f in gone.values {
                try db.execute(sql: "UPDATE files SET deleted = 1, changed = ? WHERE id = ?", arguments: [generation, f.id])
            }
        }
        return gone.count
    }
}

extension ImageError {
    /// The problem without the file name (the index stores it beside the path).
    var problemDescription: String { Indexer.problem(description, file: file) }
}
