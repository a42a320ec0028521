/// Byte-pair merges over symbol ids: (left id << 32 | right id) → (rank, merged id). Shared by CLIP's BPE and
/// GPT-2's, which differ in their alphabets and pre-tokenization, not in how a word is merged.
package struct BPEMerges: Sendable {
    let table: [UInt64: (rank: Int32, merged: Int32)]

    init(_ table: [UInt64: (rank: Int32, merged: Int32)]) { self.table = table }

    /// The merges of one pre-token's symbols, lowest rank first, as the references' `bpe`. Words longer than
    /// `longWord` symbols use the O(n log n) rounds below instead of rescanning every pair per merge, so one
    /// enormous "word" cannot stall the tokenizer; both give the reference's result.
    func apply(_ word: [Int32], longWord: Int = 64) -> [Int] {
        word.count > longWord ? mergeInRounds(word) : mergeByScanning(word)
    }

    /// The reference loop: find the lowest-ranked adjacent pair, merge all its occurrences left to right, repeat.
    private func mergeByScanning(_ initial: [Int32]) -> [Int] {
        var word = initial
        while word.count > 1 {
            var best: (rank: Int32, merged: Int32, left: Int32, right: Int32)?
            for i in 0..<(word.count - 1) {
                if let m = table[UInt64(word[i]) << 32 | UInt64(word[i + 1])], m.rank < (best?.rank ?? .max) {
                    best = (m.rank, m.merged, word[i], word[i + 1])
                }
            }
            guard let b = best else { break }
            var next: [Int32] = []
            next.reserveCapacity(word.count)
            var i = 0
            while i < word.count {
                if i + 1 < word.count && word[i] == b.left && word[i + 1] == b.right {
                    next.append(b.merged)
                    i += 2
                } else {
                    next.append(word[i])
                    i += 1
                }
            }
            word = next
        }
        return word.map(Int.init)
    }

    /// The same merges with a heap of candidate pairs over a linked list of symbols. Each round takes the lowest
    /// rank present and merges every occurrence of that pair left to right, holding newly formed pairs back until
    /// the round ends — exactly the reference's order, in O(n log n).
    private func mergeInRounds(_ initial: [Int32]) -> [Int] {
        var ids = initial
        let n = ids.count
        var next = Array(1...n)  // n means "none"
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = BinaryHeap<MergeCandidate>()
        func candidate(_ i: Int) -> MergeCandidate? {
            let j = next[i]
            guard j < n, let m = table[UInt64(ids[i]) << 32 | UInt64(ids[j])] else { return nil }
            return MergeCandidate(rank: m.rank, position: Int32(i), left: ids[i], right: ids[j])
        }
        for i in 0..<(n - 1) { if let c = candidate(i) { heap.push(c) } }
        while let top = heap.peek() {
            var round: [MergeCandidate] = []
            while let e = heap.peek(), e.rank == top.rank { round.append(heap.pop()!) }
            round.sort { $0.position < $1.position }
            var formed: [Int] = []
            for e in round {
                let i = Int(e.position)
                guard alive[i], ids[i] == e.left else { continue }
                let j = next[i]
                guard j < n, ids[j] == e.right else { continue }
                ids[i] = table[UInt64(e.left) << 32 | UInt64(e.right)]!.merged
                alive[j] = false
                next[i] = next[j]
                if next[j] < n { prev[next[j]] = i }
                if prev[i] >= 0 { formed.append(prev[i]) }
                formed.append(i)
            }
            for i in formed where alive[i] { if let c = candidate(i) { heap.push(c) } }
        }
        var out: [Int] = []
        var i = 0
        while i < n { out.append(Int(ids[i])); i = next[i] }
        return out
    }
}

/// A candidate merge, popped by rank, then position.
struct MergeCandidate: HeapElement {
    let rank: Int32
    let position: Int32
    let left: Int32
    let right: Int32

    static func precedes(_ a: Self, _ b: Self) -> Bool { (a.rank, a.position) < (b.rank, b.position) }
}
