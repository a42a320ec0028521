import Foundation
import GRDB

/// Random unit vectors stored as if they were embeddings of files `synthetic/NNNNNNNN.jpg`: an index of any size for
/// benchmarks, without embedding that many images (a scan's cost does not depend on the values).
package enum SyntheticVectors {
    /// Embeddings of `model` the index holds.
    package static func count(index: PhotoIndex, model: IndexedModel) throws(IndexError) -> Int {
        try index.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM embeddings WHERE model = ?", arguments: [model.id]) ?? 0 }
    }

    /// Adds `count` vectors in transactions of 10,000.
    package static func add(_ count: Int, index: PhotoIndex, model: IndexedModel, seed: UInt64) throws(IndexError) {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 7
        let d = model.dimension
        var v = [Float](repeating: 0, count: d)
        var done = 0
        while done < count {
            let n = min(10_000, count - done)
            try index.write { db in
                let generation = try PhotoIndex.bumpGeneration(db)
                for i in 0..<n {
                    var norm: Float = 0
                    for j in 0..<d {
                        state = state &* 6364136223846793005 &+ 1442695040888963407
                        v[j] = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
                        norm += v[j] * v[j]
                    }
                    let scale = 1 / norm.squareRoot()
                    for j in 0..<d { v[j] *= scale }
                    let key = "synthetic-\(seed)-\(done + i)"
                    try db.execute(sql: "INSERT OR IGNORE INTO files (path, size, modified, hash, changed) VALUES (?, 0, 0, ?, ?)",
                                   arguments: [String(format: "synthetic/%08d-%llu.jpg", done + i, seed), key, generation])
                    try db.execute(sql: "INSERT OR IGNORE INTO embeddings (hash, model, vector) VALUES (?, ?, ?)",
                                   arguments: [key, model.id, v.withUnsafeBufferPointer { vectorBlob($0) }])
                    // The file may be there already (another model's vectors from the same seed).
                    if db.changesCount > 0 { try PhotoIndex.filesChanged(hash: key, generation: generation, db) }
                }
            }
            done += n
        }
    }
}
