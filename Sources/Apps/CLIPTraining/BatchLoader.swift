import CLIPImage
import CLIPTensor
import CLIPTokenizer
import Dispatch
import Foundation

/// One training batch and where the data stream stands after it.
package struct Batch: Sendable {
    /// [N, 3, R, R] preprocessed images.
    package var images: Tensor
    /// N rows of `contextLength` token ids (captions longer than the context are truncated, as open_clip does).
    package var tokens: [[Int]]
    /// The captions, for logs and evaluation.
    package var captions: [String]
    /// The data position after this batch: where the next one starts.
    package var nextPosition: Int
    /// Examples skipped while filling it, with the first few reasons.
    package var skipped: Int
    package var skipReasons: [String]
}

/// Turns data positions into batches: finite sources are read epoch by epoch in a seeded permutation, endless
/// ones in order; a batch's examples are decoded in parallel; examples that fail are skipped (and counted) and the
/// next positions fill their places, so batches are always full. `prefetch` builds the next batch on another thread
/// while the current step trains. Deterministic: a position gives the same batch in every run.
package final class BatchLoader: @unchecked Sendable {
    package let data: any TrainingData
    package let batchSize: Int
    let preprocessor: ImagePreprocessor
    let tokenizer: CLIPTokenizer
    let contextLength: Int
    let seed: UInt64
    let augmentation: Augmentation
    private let lock = NSLock()
    private var permutation: (epoch: Int, order: [Int])?
    private var pending: (position: Int, group: DispatchGroup, result: Result<Batch, DataError>?)?

    package init(data: any TrainingData, batchSize: Int, preprocessor: ImagePreprocessor, tokenizer: CLIPTokenizer,
                contextLength: Int, seed: UInt64, augmentation: Augmentation = .none) {
        (self.data, self.batchSize, self.preprocessor, self.tokenizer) = (data, batchSize, preprocessor, tokenizer)
        (self.contextLength, self.seed, self.augmentation) = (contextLength, seed, augmentation)
    }

    /// The source index of data position `p`.
    func sourceIndex(_ p: Int) -> Int {
        guard let n = data.count, n > 0 else { return p }
        let epoch = p / n
        lock.lock()
        defer { lock.unlock() }
        if permutation?.epoch != epoch {
            var order = Array(0..<n), rng = SplitMix64(state: seed ^ (UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15) ^ 0x5EED)
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            permutation = (epoch, order)
        }
        return permutation!.order[p % n]
    }

    /// The batch starting at data position `position`.
    package func batch(at position: Int) throws(DataError) -> Batch {
        var pixels: [Float] = [], captions: [String] = [], reasons: [String] = []
        var next = position, skipped = 0
        let side = preprocessor.resolution, per = 3 * side * side
        while captions.count < batchSize {
            let want = batchSize - captions.count
            var results = [Result<(pixels: [Float], caption: String), DataError>?](repeating: nil, count: want)
            let indices = (0..<want).map { sourceIndex(next + $0) }
            let start = next
            results.withUnsafeMutableBufferPointer { r in
                let base = r.baseAddress!
                parallelFor(want) { i in
                    var result = data.example(indices[i], preprocessor: preprocessor)
                    if case .success(var e) = result, augmentation != .none {
                        augmentation.apply(&e.pixels, side: side, seed: seed, position: start + i)
                        result = .success(e)
                    }
                    base[i] = result
                }
            }
            for r in results {
                switch r {
                case .success(let e)?: pixels += e.pixels; captions.append(e.caption)
                case .failure(let e)?: skipped += 1; if reasons.count < 5 { reasons.append(e.description) }
                case nil: break
                }
            }
            next += want
            if skipped > 10 * batchSize + 100 && captions.isEmpty {
                throw DataError.dataset(subject: data.description, reason: "\(skipped) examples in a row could not be used; first: \(reasons.first ?? "?")")
            }
        }
        let tokens: [[Int]]
        do { tokens = try tokenizer.tokenize(captions, contextLength: contextLength, truncate: true) } catch {
            throw DataError.tokenizer("\(error)")
        }
        guard let images = try? Tensor(shape: [batchSize, 3, side, side], scalars: pixels), pixels.count == batchSize * per else {
            throw DataError.internal("\(pixels.count) pixel values for \(batchSize) images")
        }
        return Batch(images: images, tokens: tokens, captions: captions, nextPosition: next, skipped: skipped, skipReasons: reasons)
    }

    /// Starts building the batch at `position` on another thread.
    package func prefetch(at position: Int) {
        let group = DispatchGroup()
        lock.lock()
        pending = (position, group, nil)
        lock.unlock()
        group.enter()
        DispatchQueue.global().async {
            let result: Result<Batch, DataError>
            do throws(DataError) { result = .success(try self.batch(at: position)) } catch { result = .failure(error) }
            self.lock.lock()
            if self.pending?.position == position { self.pending?.result = result }
            self.lock.unlock()
            group.leave()
        }
    }

    /// The batch at `position`: the prefetched one when it was started there, else built now.
    package func next(at position: Int) throws(DataError) -> Batch {
        lock.lock()
        let p = pending
        lock.unlock()
        if let p, p.position == position {
            p.group.wait()
            lock.lock()
            let result = pending?.result
            pending = nil
            lock.unlock()
            if let result { return try result.get() }
        }
        return try batch(at: position)
    }
}
