import Foundation

/// The byte-level BPE vocabulary: token strings, ids, and merge ranks, with symbols handled as ids.
package struct Vocabulary: Sendable {
    /// Token string (over the byte-to-unicode alphabet) for each id.
    let tokens: [String]
    let ids: [String: Int]
    /// Id of the single-byte symbol for each byte, and of the same byte ending a word (`</w>`).
    let byteSymbol: [Int32]
    let byteSymbolEndOfWord: [Int32]
    /// (left id << 32 | right id) → (rank, merged id).
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    let startOfText: Int
    let endOfText: Int

    /// GPT-2's reversible byte → printable character map, as the reference's `bytes_to_unicode`.
    static let byteEncoder: [Unicode.Scalar] = {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var map = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { map[b] = Unicode.Scalar(UInt32(c))! }
        return map
    }()

    /// The reference's vocabulary order: the 256 byte symbols in `bytes_to_unicode` order, the same with
    /// `</w>`, one token per merge, then the two special tokens.
    static func referenceOrder(mergeLines: [Substring]) -> [String] {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        for b in 0..<256 where !bs.contains(b) { bs.append(b) }
        let base = bs.map { String(byteEncoder[$0]) }
        var vocab = base + base.map { $0 + "</w>" }
        vocab.reserveCapacity(vocab.count + mergeLines.count + 2)
        for line in mergeLines {
            let (l, r) = halves(line)
            vocab.append(r.map { String(l) + $0 } ?? String(line))
        }
        return vocab + ["<|startoftext|>", "<|endoftext|>"]
    }

    /// The two tokens of a merge line "left right", split at its one space byte; nil as the right one when the
    /// line does not have exactly two non-empty parts.
    static func halves(_ line: Substring) -> (Substring, Substring?) {
        let utf8 = line.utf8
        guard let space = utf8.firstIndex(of: UInt8(ascii: " ")) else { return (line, nil) }
        let left = line[line.startIndex..<space], right = line[utf8.index(after: space)...]
        guard !left.isEmpty, !right.isEmpty, !right.utf8.contains(UInt8(ascii: " ")) else { return (line, nil) }
        return (left, right)
    }

    init(tokens: [String], mergeLines: [Substring], source: String) throws(TokenizerError) {
        var ids: [String: Int] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            guard ids[t] == nil else { throw .malformedData(file: source, line: 0, message: "token '\(t)' appears twice") }
            ids[t] = i
        }
        var byteSymbol = [Int32](), byteEnd = [Int32]()
        for b in 0..<256 {
            let c = String(Self.byteEncoder[b])
            guard let a = ids[c], let e = ids[c + "</w>"] else {
                throw .malformedData(file: source, line: 0, message: "vocabulary lacks the byte symbol for \(b)")
            }
            byteSymbol.append(Int32(a))
            byteEnd.append(Int32(e))
        }
        var merges: [UInt64: (Int32, Int32)] = [:]
        merges.reserveCapacity(mergeLines.count)
        for (rank, line) in mergeLines.enumerated() {
            let (left, right) = Self.halves(line)
            guard let right, let l = ids[String(left)], let r = ids[String(right)],
                  let m = ids[String(left) + right] else {
                throw .malformedData(file: source, line: rank + 1, message: "merge '\(line)' names tokens that are not in the vocabulary")
            }
            let key = UInt64(l) << 32 | UInt64(r)
            merges[key] = (Int32(rank), Int32(m))  // a repeated merge takes its last rank, as a Python dict does
        }
        guard let sot = ids["<|startoftext|>"], let eot = ids["<|endoftext|>"] else {
            throw .malformedData(file: source, line: 0, message: "vocabulary lacks <|startoftext|> or <|endoftext|>")
        }
        self.tokens = tokens
        self.ids = ids
        self.byteSymbol = byteSymbol
        self.byteSymbolEndOfWord = byteEnd
        self.merges = merges.mapValues { (rank: $0.0, merged: $0.1) }
        self.startOfText = sot
        self.endOfText = eot
    }

    /// Byte-pair merges of one pre-token's UTF-8 bytes, lowest rank first, as the reference's `bpe`. Words longer
    /// than `longWord` symbols use the O(n log n) rounds below instead of rescanning every pair per merge, so one
    /// enormous "word" cannot stall the tokenizer; both give the reference's result.
    package func encodeWord(_ bytes: [UInt8], longWord: Int = 64) -> [Int] {
        guard let last = bytes.last else { return [] }
        let word = bytes.dropLast().map { byteSymbol[Int($0)] } + [byteSymbolEndOfWord[Int(last)]]
        return word.count > longWord ? mergeInRounds(word) : mergeByScanning(word)
    }

    /// The reference loop: find the lowest-ranked adjacent pair, merge all its occurrences left to right, repeat.
    private func mergeByScanning(_ initial: [Int32]) -> [Int] {
        var word = initial
        while word.count > 1 {
            var best: (rank: Int32, merged: Int32, left: Int32, right: Int32)?
            for i in 0..<(word.count - 1) {
                if let m = merges[UInt64(word[i]) << 32 | UInt64(word[i + 1])], m.rank < (best?.rank ?? .max) {
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
            guard j < n, let m = merges[UInt64(ids[i]) << 32 | UInt64(ids[j])] else { return nil }
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
                ids[i] = merges[UInt64(e.left) << 32 | UInt64(e.right)]!.merged
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

/// A candidate merge of CLIP's BPE, popped by rank, then position.
struct MergeCandidate: HeapElement {
    let rank: Int32
    let position: Int32
    let left: Int32
    let right: Int32

    static func precedes(_ a: Self, _ b: Self) -> Bool { (a.rank, a.position) < (b.rank, b.position) }
}
