import Foundation

/// The byte-level BPE vocabulary: token strings, ids, and merge ranks, with symbols handled as ids.
package struct Vocabulary: Sendable {
    /// Token string (over the byte-to-unicode alphabet) for each id.
    let tokens: [String]
    let ids: [String: Int]
    /// Id of the single-byte symbol for each byte, and of the same byte ending a word (`</w>`).
    let byteSymbol: [Int32]
    let byteSymbolEndOfWord: [Int32]
    let merges: BPEMerges
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
        self.merges = BPEMerges(merges.mapValues { (rank: $0.0, merged: $0.1) })
        self.startOfText = sot
        self.endOfText = eot
    }

    /// Byte-pair merges of one pre-token's UTF-8 bytes, lowest rank first, as the reference's `bpe`. Words longer
    /// than `longWord` symbols use the O(n log n) rounds below instead of rescanning every pair per merge, so one
    /// enormous "word" cannot stall the tokenizer; both give the reference's result.
    package func encodeWord(_ bytes: [UInt8], longWord: Int = 64) -> [Int] {
        guard let last = bytes.last else { return [] }
        let word = bytes.dropLast().map { byteSymbol[Int($0)] } + [byteSymbolEndOfWord[Int(last)]]
        return merges.apply(word, longWord: longWord)
    }
}
