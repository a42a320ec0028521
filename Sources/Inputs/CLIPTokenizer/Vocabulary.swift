import Foundation

/// The byte-level BPE vocabulary: token strings, ids, and merge ranks, with symbols handled as ids.
package struct Vocabulary: Sendable {
    /// Token string (over the byte-to-unicode alphabet) for each id.
    let tokens: TokenTable
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

    /// The byte symbols' UTF-8, alone and with `</w>`.
    static let byteSymbolBytes: [[UInt8]] = byteEncoder.map { Array(String($0).utf8) }
    private static let endOfWord = Array("</w>".utf8)

    /// The reference's vocabulary order: the 256 byte symbols in `bytes_to_unicode` order, the same with
    /// `</w>`, one token per merge, then the two special tokens. An error when a token would appear twice.
    static func referenceOrder(merges: MergeLines, source: String) throws(TokenizerError) -> TokenTable {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        for b in 0..<256 where !bs.contains(b) { bs.append(b) }
        var table = TokenTable(capacity: 512 + merges.count + 2, bytes: merges.bytes.count + 4_096)
        func add(_ a: Bytes, _ b: Bytes = Bytes(start: nil, count: 0)) throws(TokenizerError) {
            guard table.append(a, b) else {
                let token = String(decoding: Array(a) + Array(b), as: UTF8.self)
                throw .malformedData(file: source, line: 0, message: "token '\(token)' appears twice")
            }
        }
        try endOfWord.withUnsafeBufferPointer { (w) throws(TokenizerError) in
            for b in bs { try byteSymbolBytes[b].withUnsafeBufferPointer { (c) throws(TokenizerError) in try add(c) } }
            for b in bs { try byteSymbolBytes[b].withUnsafeBufferPointer { (c) throws(TokenizerError) in try add(c, w) } }
        }
        try merges.bytes.withUnsafeBufferPointer { (all) throws(TokenizerError) in
            for i in 0..<merges.count {
                let line = Bytes(rebasing: all[merges.range(i)])
                if let (l, r) = halves(line) { try add(l, r) } else { try add(line) }
            }
        }
        for special in ["<|startoftext|>", "<|endoftext|>"] {
            try Array(special.utf8).withUnsafeBufferPointer { (c) throws(TokenizerError) in try add(c) }
        }
        return table
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

    /// `halves` over a line's bytes: nil unless the line has exactly two non-empty parts.
    static func halves(_ line: Bytes) -> (Bytes, Bytes)? {
        guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        let left = Bytes(rebasing: line[..<space]), right = Bytes(rebasing: line[(space + 1)...])
        guard !left.isEmpty, !right.isEmpty, !right.contains(UInt8(ascii: " ")) else { return nil }
        return (left, right)
    }

    /// A vocabulary of `tokens` (in id order) and merges (by rank); `source` names the file in errors.
    init(tokens: [String], mergeLines: [Substring], source: String) throws(TokenizerError) {
        var table = TokenTable(capacity: tokens.count, bytes: tokens.reduce(0) { $0 + $1.utf8.count })
        for t in tokens {
            guard table.append(Array(t.utf8)) else {
                throw .malformedData(file: source, line: 0, message: "token '\(t)' appears twice")
            }
        }
        try self.init(tokens: table, merges: MergeLines(mergeLines), source: source)
    }

    init(tokens: TokenTable, merges lines: MergeLines, source: String) throws(TokenizerError) {
        var byteSymbol = [Int32](), byteEnd = [Int32]()
        for b in 0..<256 {
            let c = Self.byteSymbolBytes[b]
            guard let a = tokens.id(c), let e = tokens.id(c + Self.endOfWord) else {
                throw .malformedData(file: source, line: 0, message: "vocabulary lacks the byte symbol for \(b)")
            }
            byteSymbol.append(Int32(a))
            byteEnd.append(Int32(e))
        }
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        merges.reserveCapacity(lines.count)
        try lines.bytes.withUnsafeBufferPointer { (all) throws(TokenizerError) in
            for rank in 0..<lines.count {
                let line = Bytes(rebasing: all[lines.range(rank)])
                guard let (left, right) = Self.halves(line), let l = tokens.id(left), let r = tokens.id(right),
                      let m = tokens.id(left, right) else {
                    throw .malformedData(file: source, line: rank + 1,
                                         message: "merge '\(String(decoding: line, as: UTF8.self))' names tokens that are not in the vocabulary")
                }
                let key = UInt64(l) << 32 | UInt64(r)
                merges[key] = (Int32(rank), Int32(m))  // a repeated merge takes its last rank, as a Python dict does
            }
        }
        guard let sot = tokens.id(Array("<|startoftext|>".utf8)), let eot = tokens.id(Array("<|endoftext|>".utf8)) else {
            throw .malformedData(file: source, line: 0, message: "vocabulary lacks <|startoftext|> or <|endoftext|>")
        }
        self.tokens = tokens
        self.byteSymbol = byteSymbol
        self.byteSymbolEndOfWord = byteEnd
        self.merges = BPEMerges(merges)
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

/// Merge lines ("left right", one per rank) as byte ranges of one buffer.
struct MergeLines: Sendable {
    let bytes: [UInt8]
    private let starts: [Int], ends: [Int]

    /// The non-empty lines of `text`, split at the newline byte.
    init(text: [UInt8]) {
        var starts: [Int] = [], ends: [Int] = []
        starts.reserveCapacity(text.count / 8)
        ends.reserveCapacity(text.count / 8)
        var start = 0
        for (i, b) in text.enumerated() where b == UInt8(ascii: "\n") {
            if i > start { starts.append(start); ends.append(i) }
            start = i + 1
        }
        if start < text.count { starts.append(start); ends.append(text.count) }
        (bytes, self.starts, self.ends) = (text, starts, ends)
    }

    init(_ lines: [Substring]) {
        var bytes: [UInt8] = [], starts: [Int] = [], ends: [Int] = []
        for l in lines {
            starts.append(bytes.count)
            bytes.append(contentsOf: l.utf8)
            ends.append(bytes.count)
        }
        self.bytes = bytes
        self.starts = starts
        self.ends = ends
    }

    var count: Int { ends.count }
    /// Where line `i` lies in `bytes`.
    func range(_ i: Int) -> Range<Int> { starts[i]..<ends[i] }
}

/// Token strings stored as UTF-8 in one buffer and found by their bytes, code point for code point as a Python dict
/// finds them. Written by hand instead of a `[String: Int]`: building CLIP's 49,408 tokens as Strings and hashing
/// them took about 90 ms of the tokenizer's 140 ms start-up on an Ice Lake core; this open-addressing table over one
/// byte buffer, with the merge lines kept as bytes, takes about 15.
struct TokenTable: Sendable {
    private var bytes: [UInt8] = []
    /// Token `i` is `bytes[starts[i]..<starts[i + 1]]`.
    private var starts: [Int] = [0]
    /// Token id + 1 per slot, 0 when empty; the slot count is a power of two at least twice the token count.
    private var slots: [Int32] = []

    init(capacity: Int, bytes: Int) {
        self.bytes.reserveCapacity(bytes)
        starts.reserveCapacity(capacity + 1)
        var n = 16
        while n < 2 * capacity { n <<= 1 }
        slots = [Int32](repeating: 0, count: n)
    }

    var count: Int { starts.count - 1 }

    /// Token `id` as a String.
    func string(_ id: Int) -> String { String(decoding: bytes[starts[id]..<starts[id + 1]], as: UTF8.self) }

    /// FNV-1a over `a` then `b` from a basis drawn once per process, finished by a multiply-xorshift so that the low
    /// bits the mask keeps depend on all of them. The basis is random because a vocabulary from a Hub repository is
    /// input: with a fixed hash one could list tokens that all probe the same slots. (Swift's seeded `Hasher` does
    /// that too, but made the bundled tokenizer's start-up 20 ms slower.)
    private static func hash(_ a: Bytes, _ b: Bytes) -> Int {
        var h: UInt64 = basis
        for x in a { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01B3 }
        for x in b { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01B3 }
        h ^= h >> 32
        h = h &* 0x9E37_79B9_7F4A_7C15
        return Int(truncatingIfNeeded: h >> 16)
    }

    private static let basis = UInt64.random(in: .min ... .max)

    /// The slot holding the token `a` + `b`, or the empty slot where it would go.
    private func slot(_ a: Bytes, _ b: Bytes) -> Int {
        bytes.withUnsafeBufferPointer { stored in
            starts.withUnsafeBufferPointer { starts in
                slots.withUnsafeBufferPointer { slots in
                    let mask = slots.count - 1
                    var i = Self.hash(a, b) & mask
                    while slots[i] != 0 {
                        let id = Int(slots[i]) - 1, from = starts[id]
                        if starts[id + 1] - from == a.count + b.count,
                           a.indices.allSatisfy({ stored[from + $0] == a[$0] }),
                           b.indices.allSatisfy({ stored[from + a.count + $0] == b[$0] }) {
                            return i
                        }
                        i = (i + 1) & mask
                    }
                    return i
                }
            }
        }
    }

    /// The id of the token whose bytes are `a` followed by `b`.
    func id(_ a: Bytes, _ b: Bytes = Bytes(start: nil, count: 0)) -> Int? {
        let s = slots[slot(a, b)]
        return s == 0 ? nil : Int(s) - 1
    }

    func id(_ token: [UInt8]) -> Int? { token.withUnsafeBufferPointer { id($0) } }

    /// Adds the token `a` + `b` as the next id; false when it is already there.
    mutating func append(_ a: Bytes, _ b: Bytes = Bytes(start: nil, count: 0)) -> Bool {
        if 2 * (count + 1) > slots.count { grow() }
        let i = slot(a, b)
        guard slots[i] == 0 else { return false }
        bytes.append(contentsOf: a)
        bytes.append(contentsOf: b)
        starts.append(bytes.count)
        slots[i] = Int32(count)
        return true
    }

    mutating func append(_ token: [UInt8]) -> Bool { token.withUnsafeBufferPointer { append($0) } }

    private mutating func grow() {
        slots = [Int32](repeating: 0, count: slots.count * 2)
        let mask = slots.count - 1
        for id in 0..<count {
            var i = bytes.withUnsafeBufferPointer { Self.hash(Bytes(rebasing: $0[starts[id]..<starts[id + 1]]), Bytes(start: nil, count: 0)) } & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = Int32(id + 1)
        }
    }
}

typealias Bytes = UnsafeBufferPointer<UInt8>
