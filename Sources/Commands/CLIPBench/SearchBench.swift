import ArgumentParser
import CLIPCommandSupport
import CLIPIndex
import CLIPKit
import Foundation

extension Bench {
    /// The in-process search figures of the index issue: the vector scan's top-10 latency over an index of
    /// `vectors` random unit vectors (the scan's cost does not depend on their values), with the memory bandwidth it
    /// reaches; and the time to open the index's vectors (mapping the cache, and rebuilding it from SQL).
    func runSearch(vectors count: Int) throws {
        guard let db else { throw ValidationError("--search-vectors needs --db") }
        let index = try PhotoIndex(path: db)
        let clip = try CLIPPipeline.load(model ?? "default", precision: precision)
        let model = try ModelFingerprint.indexedModel(clip, name: model ?? "default", in: index, registering: true)
        let held = try SyntheticVectors.count(index: index, model: model)
        if held < count {
            let t0 = monotonicSeconds()
            try SyntheticVectors.add(count - held, index: index, model: model, seed: UInt64(held))
            print(String(format: "added %d random vectors in %.1f s", count - held, monotonicSeconds() - t0))
        }
        var t0 = monotonicSeconds()
        _ = try VectorStore.load(index: index, model: model)
        print(String(format: "open vectors (cache current or rebuilt): %.1f ms", (monotonicSeconds() - t0) * 1000))
        t0 = monotonicSeconds()
        let store = try VectorStore.load(index: index, model: model)
        print(String(format: "open vectors (mapped cache): %.2f ms", (monotonicSeconds() - t0) * 1000))
        let d = store.dimension
        // What an index run that found 10 new photos costs beyond embedding them: their rows into the cache.
        try SyntheticVectors.add(10, index: index, model: model, seed: UInt64(held + 1_000_000_007))
        t0 = monotonicSeconds()
        try VectorStore.refreshCache(index: index, model: model)
        print(String(format: "bring the cache up to date after adding 10 vectors: %.1f ms", (monotonicSeconds() - t0) * 1000))
        t0 = monotonicSeconds()
        let grown = try VectorStore.load(index: index, model: model)
        print(String(format: "open vectors after it (mapped, %d rows): %.2f ms", grown.count, (monotonicSeconds() - t0) * 1000))
        var rng = SystemRandomNumberGenerator()
        var exactTimes: [Double] = [], compressedTimes: [Double] = []
        var hits = 0, wanted = 0
        for i in 0..<(max(`repeat`, 3) * 10) {
            // Queries near a stored vector (as a real query is near its matches), and uniformly random ones.
            var q = (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
            if i % 2 == 0 {
                let row = store.vector(Int.random(in: 0..<store.count, using: &rng))
                let qn = q.reduce(0) { $0 + $1 * $1 }.squareRoot()
                q = zip(row, q).map { $0 + 0.5 * $1 / qn }
            }
            let n = q.reduce(0) { $0 + $1 * $1 }.squareRoot()
            q = q.map { $0 / n }
            var t = monotonicSeconds()
            let exact = store.nearest(to: q, k: 10)
            exactTimes.append(monotonicSeconds() - t)
            t = monotonicSeconds()
            let approximate = store.nearest(to: q, k: 10, compressed: true, candidates: PhotoSearch.defaultCandidates)
            compressedTimes.append(monotonicSeconds() - t)
            hits += Set(exact.map(\.row)).intersection(approximate.map(\.row)).count
            wanted += exact.count
        }
        exactTimes.sort()
        compressedTimes.sort()
        let gb = Double(store.count * d * 4) / 1e9
        func p(_ t: [Double], _ q: Double) -> Double { t[min(t.count - 1, Int(Double(t.count) * q))] * 1000 }
        print(String(format: "exact fp32 scan, %d x %d, top-10: p50 %.2f ms, p90 %.2f ms, %.1f GB/s", store.count, d,
                     p(exactTimes, 0.5), p(exactTimes, 0.9), gb / (p(exactTimes, 0.5) / 1000)))
        print(String(format: "int8 scan + exact re-rank of %d, top-10: p50 %.2f ms, p90 %.2f ms, recall@10 %.4f (%d queries)",
                     PhotoSearch.defaultCandidates, p(compressedTimes, 0.5), p(compressedTimes, 0.9),
                     Double(hits) / Double(max(wanted, 1)), exactTimes.count))
        print(String(format: "peak RSS: %.0f MiB", peakResidentMiB()))
    }
}
