import CLIPFiles
import CLIPImage
import CLIPKit
import CLIPTensor
import Foundation
import GRDB

/// One term of a composed query: a text or an image, with a signed weight.
package struct QueryTerm: Sendable, Equatable {
    package enum Source: Sendable, Equatable {
        case text(String)
        case image(String)
    }
    package var source: Source
    /// Negative for a subtracted term.
    package var weight: Float

    package init(_ source: Source, weight: Float = 1) { (self.source, self.weight) = (source, weight) }

    /// Parses query words as rclip does: terms joined by `+` and `-` (separate words), each a text or the path of
    /// an image file (an existing file with an image extension), optionally prefixed by a weight: `2:dog`,
    /// `0.5:./cat.jpg`. `["2:golden retriever", "+", "./pool.jpg", "-", "fruit"]` is 2·text + image − text.
    /// Words not separated by an operator are one text (`clip search dog on a beach`).
    package static func parse(_ words: [String], isImageFile: (String) -> Bool = QueryTerm.isImageFile) throws(IndexError) -> [QueryTerm] {
        var groups: [(sign: Float, words: [String], first: Int)] = []
        var sign: Float = 1
        var expectingTerm = true
        for (i, word) in words.enumerated() {
            if word == "+" || word == "-" {
                guard !expectingTerm else {
                    throw IndexError.query("query word \(i + 1) '\(word)': an operator must stand between two terms")
                }
                sign = word == "-" ? -1 : 1
                expectingTerm = true
            } else if expectingTerm {
                groups.append((sign, [word], i))
                expectingTerm = false
            } else {
                groups[groups.count - 1].words.append(word)
            }
        }
        guard !groups.isEmpty else { throw IndexError.query("the query is empty: give a text or an image path") }
        guard !expectingTerm else { throw IndexError.query("the query ends with an operator; a term must follow '+' or '-'") }
        return try groups.map { (g) throws(IndexError) -> QueryTerm in
            var text = g.words.joined(separator: " "), weight: Float = 1
            if let colon = text.firstIndex(of: ":"), let w = Float(text[..<colon]) {
                guard w.isFinite, w > 0, w <= 1000 else {
                    throw IndexError.query("query word \(g.first + 1) '\(g.words[0])': a weight must be a positive number, at most 1000 (use '-' to subtract)")
                }
                weight = w
                text = String(text[text.index(after: colon)...])
            }
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw IndexError.query("query word \(g.first + 1) '\(g.words[0])' leaves an empty term")
            }
            return QueryTerm(isImageFile(text) ? .image(text) : .text(text), weight: g.sign * weight)
        }
    }

    /// An existing regular file named like an image.
    package static func isImageFile(_ path: String) -> Bool {
        guard ImageFormat.hasImageExtension(path) else { return false }
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && !isDir.boolValue
    }
}

/// A file a search found: an image, or a video at one of its moments.
package struct SearchHit: Sendable, Equatable, Encodable {
    /// The file's id in the index (stable while the file stays; `PhotoSearch.file(id:)`, `vector(fileID:)`).
    package var id: Int64
    /// Absolute path.
    package var path: String
    /// Cosine similarity with the query.
    package var score: Float
    package var width: Int?
    package var height: Int?
    /// For a video, the moment that matched, in seconds from its start; nil for an image.
    package var time: Double?
    /// The file's modification time, seconds since 1970.
    package var modified: Double?

    // `clip search --json` prints path, score, size and a video's time; the id is for programs that keep the index
    // open.
    enum CodingKeys: String, CodingKey { case path, score, width, height, time }
}

/// Searches one model's embeddings in an index.
package struct PhotoSearch: Sendable {
    package let index: PhotoIndex
    package let model: IndexedModel
    package let vectors: VectorStore
    /// Whether the int8 codes are scanned for candidates (the index is large enough for it to pay, or asked).
    package let compressed: Bool

    /// How the vectors are scanned.
    package enum ScanMode: Sendable {
        /// Every fp32 row: the exact ranking.
        case exact
        /// The int8 rows for `candidates` candidates, re-scored exactly (scores exact, ranking at the recall
        /// `clip bench --search-vectors` measures).
        case compressed(candidates: Int)
        /// Compressed from `compressedFrom` vectors up, exact below.
        case automatic
    }

    /// Below this many vectors the exact scan takes a few milliseconds and compression buys nothing.
    package static let compressedFrom = 200_000
    /// Candidates the compressed scan re-ranks: with 100, recall@10 was 1.0 on 1,000,000 random 512-d vectors.
    package static let defaultCandidates = 100

    let candidates: Int
    /// As asked, for `current()`.
    let mode: ScanMode

    /// Opens the vectors of `model` (mapping the caches, or building them when stale).
    package init(index: PhotoIndex, model: IndexedModel, mode: ScanMode = .automatic) throws(IndexError) {
        self.index = index
        self.model = model
        self.mode = mode
        let vectors = try VectorStore.load(index: index, model: model)
        self.vectors = vectors
        switch mode {
        case .exact:
            (compressed, candidates) = (false, 0)
        case .compressed(let c):
            (compressed, candidates) = (true, c)
        case .automatic:
            (compressed, candidates) = (vectors.count >= Self.compressedFrom, Self.defaultCandidates)
        }
    }

    /// This search while the index shows what its vectors hold; after an index run (another process) changed
    /// the index, the search reopened over it as it is now (the vector cache takes in the changed rows). One
    /// SQLite read when nothing changed: what a long-running server asks before a query.
    package func current() throws(IndexError) -> PhotoSearch {
        let state = try index.read { db in try index.state(db) }
        if VectorStore.isCurrent(vectors, state) { return self }
        return try PhotoSearch(index: index, model: model, mode: mode)
    }

    /// The unit-length query vector: the weighted sum of the terms' unit embeddings, renormalised.
    package static func queryVector(_ terms: [QueryTerm], pipeline: CLIPPipeline) throws(IndexError) -> [Float] {
        let texts = terms.compactMap { if case .text(let t) = $0.source { return t } else { return nil } }
        let images = terms.compactMap { if case .image(let p) = $0.source { return p } else { return nil } }
        let textVectors: Tensor?, imageVectors: Tensor?
        do {
            textVectors = texts.isEmpty ? nil : try pipeline.textEmbeddings(texts, truncate: true)
            imageVectors = images.isEmpty ? nil : try pipeline.imageEmbeddings(files: images)
        } catch {
            throw IndexError.query("cannot embed the query: \(error)")
        }
        let d = pipeline.model.configuration.embedDim
        var weighted: [(weight: Float, vector: ArraySlice<Float>)] = []
        var (ti, ii) = (0, 0)
        for term in terms {
            let source: Tensor, row: Int
            switch term.source {
            case .text: (source, row) = (textVectors!, ti); ti += 1
            case .image: (source, row) = (imageVectors!, ii); ii += 1
            }
            weighted.append((term.weight, source.scalars[row * d..<(row + 1) * d]))
        }
        return try combine(weighted)
    }

    /// The weighted sum of unit embeddings, renormalised: how terms make one query.
    package static func combine(_ terms: [(weight: Float, vector: ArraySlice<Float>)]) throws(IndexError) -> [Float] {
        guard let d = terms.first?.vector.count else { throw IndexError.query("the query is empty") }
        // In double precision: weights near Float's largest (3e38) would overflow the sum and leave NaN scores.
        var sum = [Double](repeating: 0, count: d)
        for (weight, vector) in terms {
            guard weight.isFinite else { throw IndexError.query("a query weight is not a finite number") }
            for (j, x) in vector.enumerated() { sum[j] += Double(weight) * Double(x) }
        }
        let largest = terms.map { abs(Double($0.weight)) }.max() ?? 1
        let norm = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard norm.isFinite, norm > 1e-6 * largest else { throw IndexError.query("the query's terms cancel out; nothing is left to search for") }
        return sum.map { Float($0 / norm) }
    }

    /// Which files a search may return: those under a folder, modified within a time range.
    package struct Filter: Sendable, Equatable {
        /// An absolute folder: only files under it.
        package var folder: String?
        /// Modification times, seconds since 1970, inclusive.
        package var modified: ClosedRange<Double>?
        package init(folder: String? = nil, modified: ClosedRange<Double>? = nil) { (self.folder, self.modified) = (folder, modified) }
    }

    /// Files the filter admits this many or fewer are scored row by row; more, by the scan with the others skipped.
    static let filteredExactly = 50_000

    /// The live files `filter` admits, from the path index and the modification times.
    func admitted(_ filter: Filter) throws(IndexError) -> Set<Int64> {
        var clauses: [String] = ["deleted = 0", "error IS NULL"]
        var arguments: StatementArguments = []
        if let folder = filter.folder {
            let ranges = index.pathRanges([folder])
            clauses.append("(" + ranges.map { "(\($0.0))" }.joined(separator: " OR ") + ")")
            for r in ranges { arguments += r.1 }
        }
        if let m = filter.modified {
            func ns(_ s: Double) -> Int64 { s <= -9.2e9 ? .min : s >= 9.2e9 ? .max : Int64(s * 1e9) }
            clauses.append("modified BETWEEN ? AND ?")
            arguments += [ns(m.lowerBound), ns(m.upperBound)]
        }
        let sql = "SELECT id FROM files WHERE " + clauses.joined(separator: " AND ")
        return try index.read { db in Set(try Int64.fetchAll(db, sql: sql, arguments: arguments)) }
    }

    /// The `top` files most similar to `query` (unit length, from `queryVector`), best first. A video is one hit,
    /// at its best-matching moment; with `everyMoment`, each of its moments is a hit of its own. With a `filter`,
    /// the best `top` of the files it admits.
    package func search(_ query: [Float], top: Int, everyMoment: Bool = false, filter: Filter? = nil) throws(IndexError) -> [SearchHit] {
        try search(query, top: top, everyMoment: everyMoment, filter: filter, scoredOneByOne: Self.filteredExactly)
    }

    /// `scoredOneByOne`: at most how many admitted files are scored row by row (tests take the scan's path with 0).
    package func search(_ query: [Float], top: Int, everyMoment: Bool, filter: Filter?, scoredOneByOne: Int) throws(IndexError) -> [SearchHit] {
        guard query.count == model.dimension else {
            throw IndexError.mismatch(subject: "the query", reason: "\(query.count) dimensions, but model \(model.name) has \(model.dimension)")
        }
        guard top > 0 else { return [] }
        let allowed = try filter.map { (f) throws(IndexError) -> Set<Int64> in try admitted(f) }
        let oneRowPerFile = !everyMoment && vectors.hasMoments
        if let allowed, allowed.count <= scoredOneByOne {
            // Few files: their rows alone are scored.
            let rows = allowed.flatMap { vectors.liveRows(of: $0) }
            let scores = vectors.scores(rows: rows, query: query)
            var files = Set<Int64>()
            let found = zip(rows, scores).filter { $0.1.isFinite }.map { (row: $0.0, score: $0.1) }
                .sorted { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }
                .filter { !oneRowPerFile || files.insert(vectors.fileID($0.row)).inserted }
            return try hits(Array(found.prefix(top)))
        }
        // A video's moments, or files the filter leaves out, may crowd the best rows: more rows until `top` hits
        // are among them, or every row is.
        var k = top
        while true {
            var found: [(row: Int, score: Float)] = []
            var files = Set<Int64>()
            for hit in vectors.nearest(to: query, k: k, compressed: compressed, candidates: max(candidates, k)) {
                let id = vectors.fileID(hit.row)
                if let allowed, !allowed.contains(id) { continue }
                if oneRowPerFile, !files.insert(id).inserted { continue }
                found.append(hit)
            }
            if found.count >= top || k >= vectors.count || (allowed == nil && !oneRowPerFile) {
                return try hits(Array(found.prefix(top)))
            }
            k = min(k.multipliedReportingOverflow(by: 4).overflow ? .max : k * 4, vectors.count)
        }
    }

    /// The files of rows found, with their paths and sizes (a row whose file is gone is left out).
    private func hits(_ found: [(row: Int, score: Float)]) throws(IndexError) -> [SearchHit] {
        guard !found.isEmpty else { return [] }
        let ids = found.map { vectors.fileID($0.row) }
        var byID: [Int64: (String, Int?, Int?, Int64)] = [:]
        // In groups: SQLite takes at most 32,766 parameters a statement.
        for start in stride(from: 0, to: ids.count, by: 10_000) {
            let group = Array(ids[start..<min(start + 10_000, ids.count)])
            let rows = try index.read { db in
                try Row.fetchAll(db, sql: "SELECT id, path, width, height, modified FROM files WHERE id IN (\(group.map { _ in "?" }.joined(separator: ",")))",
                                 arguments: StatementArguments(group))
            }
            for r in rows { byID[r[0]] = (r[1], r[2], r[3], r[4]) }
        }
        return found.compactMap { hit in
            guard let (path, w, h, modified) = byID[vectors.fileID(hit.row)] else { return nil }
            return SearchHit(id: vectors.fileID(hit.row), path: index.absolutePath(path), score: hit.score, width: w,
                             height: h, time: vectors.time(hit.row), modified: Double(modified) / 1e9)
        }
    }

    /// What the index holds for this model, for a page's empty state: photos and videos a search can return, the
    /// folders indexed, and up to `subfolders` folders one level inside them that hold files (for a filter).
    package func library(subfolders: Int = 200) throws(IndexError) -> (photos: Int, videos: Int, folders: [String], subfolders: [String]) {
        let roots = try index.indexedFolders()
        let (photos, videos, paths) = try index.read { db -> (Int, Int, [String]) in
            let live = "FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = ? WHERE f.deleted = 0 AND f.error IS NULL"
            let videoClause = "EXISTS (SELECT 1 FROM frames fr WHERE fr.hash = e.hash AND fr.model = e.model)"
            let videos = try Int.fetchOne(db, sql: "SELECT count(*) \(live) AND \(videoClause)", arguments: [model.id]) ?? 0
            let all = try Int.fetchOne(db, sql: "SELECT count(*) \(live)", arguments: [model.id]) ?? 0
            return (all - videos, videos, try String.fetchAll(db, sql: "SELECT f.path \(live) LIMIT 1000000", arguments: [model.id]))
        }
        var seen = Set<String>()
        var inner: [String] = []
        for stored in paths where inner.count < subfolders {
            let path = index.absolutePath(stored)
            guard let root = roots.first(where: { isPath(path, inside: $0) }) else { continue }
            let rest = path.dropFirst(root.count + 1)
            guard let slash = rest.firstIndex(of: "/") else { continue }
            let folder = root + "/" + rest[..<slash]
            if seen.insert(folder).inserted { inner.append(folder) }
        }
        return (photos, videos, roots, inner.sorted())
    }

    /// The unit embedding of file `id` under this model ("more like this"), or nil when it has none.
    package func vector(fileID id: Int64) -> [Float]? { vectors(fileIDs: [id])[id] }

    /// The unit embeddings of several files in one pass over the vectors (those without one are left out). A
    /// video's is the mean of its moments, renormalised, as the index stores it for its contents.
    package func vectors(fileIDs: Set<Int64>) -> [Int64: [Float]] {
        var out: [Int64: [Float]] = [:]
        var videos: [Int64] = []
        for row in 0..<vectors.rows where vectors.isLive(row) && fileIDs.contains(vectors.fileID(row)) {
            let id = vectors.fileID(row)
            guard out[id] == nil else { continue }
            if vectors.time(row) != nil { videos.append(id) }
            out[id] = vectors.vector(row)
            if out.count == fileIDs.count { break }
        }
        for id in videos {
            let hash = try? index.read { db in try String.fetchOne(db, sql: "SELECT hash FROM files WHERE id = ?", arguments: [id]) }
            if let hash = hash.flatMap({ $0 }), let mean = index.storedEmbedding(hash, model: model) { out[id] = mean }
        }
        return out
    }

    /// The present file `id` that decoded as an image: its absolute path and size, or nil (also for files the index
    /// recorded as failed).
    package func file(id: Int64) throws(IndexError) -> (path: String, width: Int?, height: Int?)? {
        let row = try index.read { db in
            try Row.fetchOne(db, sql: "SELECT path, width, height FROM files WHERE id = ? AND deleted = 0 AND error IS NULL",
                             arguments: [id])
        }
        guard let row else { return nil }
        return (index.absolutePath(row[0]), row[1], row[2])
    }
}
