#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPEmbedding
import CLIPFiles
import CLIPImage
import CLIPTensor
import Foundation
import GRDB

/// The layout clip-retrieval writes and autofaiss, Milvus and pgvector take: `img_emb/img_emb_{N}.npy` (float32
/// [rows, dim], L2-normalised) with row-aligned metadata `metadata/metadata_{N}` whose `image_path` column names each
/// row's file. clip-retrieval writes the metadata as Parquet; without a Parquet library here, swift-clip writes and
/// reads JSON lines (`metadata_{N}.jsonl`, one object per row), which pandas, DuckDB and Spark read as they are.
package enum RetrievalLayout {
    /// Rows per part: bounds the memory an export or import holds at once.
    package static let rowsPerPart = 100_000

    /// Writes the live files' embeddings of `model` to `directory`; returns the number of rows. Each part is
    /// written atomically (`RetrievalPartWriter`, as `clip embed` writes them); the metadata rows carry
    /// `image_path` (absolute), `width` and `height`. A video is one row, the mean of its moments (the layout has
    /// no times; `clip embed` writes a video's moments in `videos/`).
    package static func export(_ index: PhotoIndex, model: IndexedModel, to directory: String) throws(IndexError) -> Int {
        let store = try VectorStore.load(index: index, model: model)
        var files: [Int64: (String, Int?, Int?)] = [:]
        var means: [Int64: [Float]] = [:]
        try index.read { db in
            let rows = try Row.fetchCursor(db, sql: "SELECT id, path, width, height FROM files WHERE deleted = 0")
            while let r = try rows.next() { files[r[0]] = (r[1], r[2], r[3]) }
            let videos = try Row.fetchCursor(db, sql: """
                SELECT f.id, e.vector FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = ?
                WHERE f.deleted = 0 AND EXISTS (SELECT 1 FROM frames fr WHERE fr.hash = e.hash AND fr.model = e.model)
                """, arguments: [model.id])
            while let r = try videos.next() {
                if let v = VectorCacheWriter.floats(r[1], dimension: model.dimension) { means[r[0]] = v }
            }
        }
        var seenVideos = Set<Int64>()
        let live = store.liveRowsByID().filter { store.time($0) == nil || seenVideos.insert(store.fileID($0)).inserted }
        do throws(EmbeddingJobError) {
            var part = 0, start = 0
            repeat {
                let end = min(start + rowsPerPart, live.count)
                let writer = try RetrievalPartWriter(directory: directory, part: part, dimension: store.dimension, withText: false)
                var values: [Float] = []
                values.reserveCapacity((end - start) * store.dimension)
                var objects: [RetrievalMetadata] = []
                for row in live[start..<end] {
                    values += store.time(row) != nil ? means[store.fileID(row)] ?? store.vector(row) : store.vector(row)
                    let (path, w, h) = files[store.fileID(row)] ?? ("", nil, nil)
                    objects.append(RetrievalMetadata(imagePath: index.absolutePath(path), width: h == nil ? nil : w, height: w == nil ? nil : h))
                }
                try writer.append(imageEmbeddings: values, textEmbeddings: nil, metadata: objects)
                try writer.finish()
                part += 1
                start = end
            } while start < live.count
        } catch {
            throw IndexError.export(error)
        }
        return live.count
    }

    /// Reads `img_emb/img_emb_{N}.npy` with `metadata/metadata_{N}.jsonl` for N = 0, 1, … from `directory` into
    /// the index as embeddings of `model`. A row whose file exists here is keyed by the file's content hash (so
    /// a later `clip index` of it reuses the embedding); one whose file does not is recorded by path. Returns
    /// the rows imported. A row naming a video file here records the file without its vector: `clip index` embeds
    /// its moments (one vector cannot stand for them). Each part is one transaction.
    /// Whether the embeddings in `directory` were made from images turned by their EXIF orientation, as the
    /// `metadata/preprocessing_{N}.json` files `clip embed` writes say; nil when none says (clip-retrieval's own
    /// output), an error when partitions disagree.
    package static func recordedOrientation(in directory: String) throws(IndexError) -> Bool? {
        let folder = "\(directory)/metadata"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasPrefix("preprocessing_") && $0.hasSuffix(".json") }.sorted()
        var seen = Set<Bool>()
        for name in names {
            let path = "\(folder)/\(name)"
            guard let bytes = try? RegularFile.contents(of: path, limit: 1 << 16),
                  let flag = try? JSONDecoder().decode(PreprocessingRecord.self, from: Data(bytes)).exif_orientation else {
                throw IndexError.unusable(path: path, reason: "not {\"exif_orientation\": true|false}")
            }
            seen.insert(flag)
        }
        guard seen.count <= 1 else {
            throw IndexError.unusable(path: folder, reason: "some partitions were embedded with EXIF orientation and some without; import them separately")
        }
        return seen.first
    }

    package static func importEmbeddings(from directory: String, into index: PhotoIndex,
                                        model: IndexedModel) throws(IndexError) -> Int {
        var part = 0, total = 0
        while true {
            let npy = "\(directory)/img_emb/img_emb_\(part).npy"
            guard FileManager.default.fileExists(atPath: npy) else { break }
            let (rows, dim, values) = try readNPY(npy)
            guard dim == model.dimension else {
                throw IndexError.mismatch(subject: npy, reason: "rows have \(dim) dimensions; model \(model.name) has \(model.dimension)")
            }
            let metaPath = "\(directory)/metadata/metadata_\(part).jsonl"
            if !FileManager.default.fileExists(atPath: metaPath),
               FileManager.default.fileExists(atPath: "\(directory)/metadata/metadata_\(part).parquet") {
                throw IndexError.unusable(path: "\(directory)/metadata/metadata_\(part).parquet", reason: "Parquet metadata is not read; convert it to JSON lines first: python -c \"import pandas as p; p.read_parquet('metadata_\(part).parquet').to_json('metadata_\(part).jsonl', orient='records', lines=True)\"")
            }
            let paths = try readMetadata(metaPath, rows: rows)
            var records: [(stored: String, size: Int64, modified: Int64, hash: String, vector: [Float]?)] = []
            for r in 0..<rows {
                var v = Array(values[(r * dim)..<((r + 1) * dim)])
                let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                guard norm.isFinite, norm > 0 else { throw IndexError.unusable(path: npy, reason: "row \(r) is zero or not finite") }
                v = v.map { $0 / norm }
                let absolute = paths[r].hasPrefix("/") ? paths[r] : PhotoIndex.absolute(directory + "/" + paths[r])
                var st = stat()
                if stat(absolute, &st) == 0, st.st_mode & S_IFMT == S_IFREG, let hash = try? SHA256.file(absolute) {
                    let video = VideoReader.hasVideoExtension(absolute)
                    records.append((index.storedPath(absolute), Int64(st.st_size), modificationNanoseconds(st), hash, video ? nil : v))
                } else {
                    records.append((index.storedPath(absolute), 0, 0, "path:" + SHA256.hex(Array(absolute.utf8)), v))
                }
            }
            try index.write { db in
                let generation = try PhotoIndex.bumpGeneration(db)
                for rec in records {
                    try db.execute(sql: """
                        INSERT INTO files (path, size, modified, hash, error, deleted, changed) VALUES (?, ?, ?, ?, NULL, 0, ?)
                        ON CONFLICT (path) DO UPDATE SET size = excluded.size, modified = excluded.modified,
                            hash = excluded.hash, error = NULL, deleted = 0, changed = excluded.changed
                        """, arguments: [rec.stored, rec.size, rec.modified, rec.hash, generation])
                    guard let vector = rec.vector else { continue }
                    try db.execute(sql: "INSERT OR REPLACE INTO embeddings (hash, model, vector) VALUES (?, ?, ?)",
                                   arguments: [rec.hash, model.id, vector.withUnsafeBufferPointer { vectorBlob($0) }])
                    try PhotoIndex.filesChanged(hash: rec.hash, generation: generation, db)
                }
            }
            total += records.filter { $0.vector != nil }.count
            part += 1
        }
        guard part > 0 else { throw IndexError.unusable(path: directory, reason: "no img_emb/img_emb_0.npy (clip-retrieval's layout)") }
        return total
    }

    /// One metadata line as the index reads it: only `image_path` is required, so other writers' fields (a caption
    /// that is null or a number, widths as floats, columns of their own) never make a line unreadable.
    private struct ImagePathOnly: Decodable { let image_path: String }

    /// The `image_path` of each line of a JSON-lines metadata file, which must have exactly `rows` lines.
    static func readMetadata(_ path: String, rows: Int) throws(IndexError) -> [String] {
        let bytes: [UInt8]
        do { bytes = try RegularFile.contents(of: path, limit: 1 << 30) } catch { throw IndexError.file(error) }
        var out: [String] = []
        for (i, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true).enumerated() {
            guard let p = try? JSONDecoder().decode(ImagePathOnly.self, from: Data(line)).image_path, !p.isEmpty else {
                throw IndexError.unusable(path: path, reason: "line \(i + 1) is not a JSON object with an image_path string")
            }
            out.append(p)
        }
        guard out.count == rows else {
            throw IndexError.mismatch(subject: path, reason: "it has \(out.count) rows but its embeddings file has \(rows); the two must be row-aligned")
        }
        return out
    }

    /// A 2-D little-endian float32 or float16 C-order `.npy` → (rows, columns, values as fp32).
    static func readNPY(_ path: String) throws(IndexError) -> (Int, Int, [Float]) {
        let file: RegularFile
        do { file = try RegularFile(path: path) } catch { throw IndexError.file(error) }
        func fail(_ why: String) -> IndexError { .unusable(path: path, reason: "not an embeddings .npy: \(why)") }
        let head: [UInt8]
        do { head = try file.read(at: 0, count: min(file.size, 12)) } catch { throw IndexError.file(error) }
        guard head.count >= 10, head[0] == 0x93, Array(head[1..<6]) == Array("NUMPY".utf8) else { throw fail("bad magic") }
        let major = head[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1: (headerLength, headerStart) = (Int(head[8]) | Int(head[9]) << 8, 10)
        case 2, 3:
            guard head.count >= 12 else { throw fail("truncated header") }
            (headerLength, headerStart) = (Int(head[8]) | Int(head[9]) << 8 | Int(head[10]) << 16 | Int(head[11]) << 24, 12)
        default: throw fail("format version \(major)")
        }
        guard headerLength <= 1 << 16, headerStart + headerLength <= file.size else { throw fail("header of \(headerLength) bytes") }
        let headerBytes: [UInt8]
        do { headerBytes = try file.read(at: headerStart, count: headerLength) } catch { throw IndexError.file(error) }
        let header = String(decoding: headerBytes, as: UTF8.self).replacingOccurrences(of: " ", with: "")
        let half: Bool
        if header.contains("'descr':'<f4'") { half = false } else if header.contains("'descr':'<f2'") { half = true } else {
            throw fail("dtype must be little-endian float32 or float16 (header \(header.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        guard header.contains("'fortran_order':False") else { throw fail("Fortran order") }
        guard let open = header.range(of: "'shape':("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw fail("no shape")
        }
        let dims = header[open.upperBound..<close].split(separator: ",").map { Int($0) }
        guard dims.count == 2, let rows = dims[0], let cols = dims[1], rows >= 0, cols > 0, cols <= 1 << 16 else {
            throw fail("shape must be (rows, dim)")
        }
        let width = half ? 2 : 4
        guard let bytes = Checked.product([rows, cols, width]), headerStart + headerLength + bytes == file.size else {
            throw fail("\(file.size) bytes do not hold \(rows) x \(cols) values after the header")
        }
        let raw: [UInt8]
        do { raw = try file.read(at: headerStart + headerLength, count: bytes) } catch { throw IndexError.file(error) }
        let values: [Float] = raw.withUnsafeBytes { p in
            (0..<(rows * cols)).map { i in
                half ? halfToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                    : Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            }
        }
        return (rows, cols, values)
    }
}

/// `metadata/preprocessing_{N}.json`, which `clip embed` writes beside a partition.
private struct PreprocessingRecord: Decodable {
    var exif_orientation: Bool
}
