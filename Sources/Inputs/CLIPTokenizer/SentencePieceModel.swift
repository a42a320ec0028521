import Foundation

/// A SentencePiece model file (`spiece.model`, `tokenizer.model`): the protobuf `ModelProto` with its pieces, scores
/// and types, the trainer settings encoding needs (model type, byte fallback, special ids) and the normalizer (its
/// precompiled character map and whitespace rules). Parsed defensively: every length and index is checked, so a
/// hostile file is an error naming the field, never a crash.
package struct SentencePieceModel: Sendable {
    /// A vocabulary entry.
    package struct Piece: Sendable, Equatable {
        /// The piece's UTF-8 bytes (`▁` stands for a space).
        package let bytes: [UInt8]
        /// Its log-probability (unigram) or merge rank (BPE).
        package let score: Float
        /// What kind of piece it is.
        package let type: PieceType
    }

    /// SentencePiece's piece types (`ModelProto.SentencePiece.Type`).
    package enum PieceType: Int, Sendable {
        case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// The normalizer: NFKC-style replacements from a precompiled map, then SentencePiece's whitespace rules.
    package struct Normalizer: Sendable {
        /// The rule set's name (`nmt_nfkc`, `identity`, …), for messages.
        package let name: String
        /// The Darts-clone double-array trie of the precompiled map, as 32-bit units.
        let trie: [UInt32]
        /// The replacement strings the trie's values point into, each ended by a NUL byte.
        let replacements: [UInt8]
        /// Prepend a space (`▁`) to the text.
        package let addDummyPrefix: Bool
        /// Drop leading and trailing spaces and collapse runs of them.
        package let removeExtraWhitespaces: Bool
        /// Write spaces as `▁`.
        package let escapeWhitespaces: Bool
    }

    /// Every piece, by id.
    package let pieces: [Piece]
    /// The normalizer applied before encoding.
    package let normalizer: Normalizer
    /// How text becomes pieces.
    package let kind: Kind

    /// SentencePiece's segmentation algorithms that are implemented.
    package enum Kind: Int, Sendable {
        /// The unigram language model: the most probable segmentation (SigLIP's, T5's vocabularies).
        case unigram = 1
        /// Byte-pair encoding: the highest-scoring adjacent pair merged first (Gemma's, SigLIP 2's).
        case bpe = 2
    }
    /// Unknown characters become their UTF-8 bytes' `<0xXX>` pieces instead of the unknown piece.
    package let byteFallback: Bool
    /// The space marker goes after words instead of before them.
    package let treatWhitespaceAsSuffix: Bool
    /// Id of the unknown piece.
    package let unknownID: Int
    /// The trainer's end-of-sequence id (`</s>`), or nil when the model has none.
    package let endOfSequenceID: Int?
    /// The trainer's padding id, or nil when the model has none.
    package let paddingID: Int?
    /// The file the model was read from, for messages.
    package let origin: String
    /// Id of each piece by its bytes.
    let ids: [[UInt8]: Int]

    /// Reads a model file.
    package init(contentsOf path: String) throws(TokenizerError) {
        try self.init(bytes: try readTokenizerFile(path), origin: path)
    }

    /// Parses the bytes of a model file; `origin` names it in errors.
    package init(bytes: [UInt8], origin: String) throws(TokenizerError) {
        func fail(_ message: String) -> TokenizerError { .malformedData(file: origin, line: 0, message: message) }
        var pieces: [Piece] = []
        var trainer = ProtoMessage(), normalizerSpec = ProtoMessage()
        do throws(ProtoError) {
            var r = ProtoReader(bytes[...])
            while let (field, wire) = try r.nextField() {
                switch (field, wire) {
                case (1, 2):
                    var p = ProtoReader(try r.lengthDelimited())
                    var piece: [UInt8]?, score: Float = 0, type = 1
                    while let (f, w) = try p.nextField() {
                        switch (f, w) {
                        case (1, 2): piece = Array(try p.lengthDelimited())
                        case (2, 5): score = Float(bitPattern: try p.fixed32())
                        case (3, 0): type = Int(truncatingIfNeeded: try p.varint())
                        default: try p.skip(w)
                        }
                    }
                    guard let piece, !piece.isEmpty else { throw ProtoError("piece \(pieces.count) is empty") }
                    guard let t = PieceType(rawValue: type) else { throw ProtoError("piece \(pieces.count) has unknown type \(type)") }
                    pieces.append(Piece(bytes: piece, score: score, type: t))
                case (2, 2): trainer = try ProtoMessage(try r.lengthDelimited())
                case (3, 2): normalizerSpec = try ProtoMessage(try r.lengthDelimited())
                default: try r.skip(wire)
                }
            }
        } catch {
            throw fail("not a SentencePiece model (\(error.message))")
        }
        guard !pieces.isEmpty else { throw fail("the model has no pieces") }
        let modelType = trainer.int(3) ?? 1
        guard let kind = Kind(rawValue: modelType) else {
            let names = [3: "word", 4: "character"]
            throw fail("the model is a \(names[modelType] ?? "type \(modelType)") model; only unigram (SigLIP's, T5's) and BPE (Gemma's) models are implemented")
        }
        self.kind = kind
        var unknown: Int?
        var ids: [[UInt8]: Int] = [:]
        ids.reserveCapacity(pieces.count)
        for (i, p) in pieces.enumerated() {
            guard ids.updateValue(i, forKey: p.bytes) == nil else {
                throw fail("piece \(i) '\(String(decoding: p.bytes, as: UTF8.self))' is defined twice")
            }
            guard p.score.isFinite else { throw fail("piece \(i) has score \(p.score)") }
            if p.type == .unknown {
                if let first = unknown { throw fail("pieces \(first) and \(i) are both the unknown piece") }
                unknown = i
            }
        }
        guard let unknown else { throw fail("the model defines no unknown piece") }
        self.pieces = pieces
        self.ids = ids
        self.unknownID = unknown
        self.byteFallback = trainer.int(35).map { $0 != 0 } ?? false
        self.treatWhitespaceAsSuffix = trainer.int(24).map { $0 != 0 } ?? false
        func specialID(_ field: Int, default value: Int) -> Int? {
            let id = Int(Int32(truncatingIfNeeded: trainer.int(field) ?? value))
            return id >= 0 && id < pieces.count ? id : nil
        }
        self.endOfSequenceID = specialID(42, default: 2)
        self.paddingID = specialID(43, default: -1)
        self.origin = origin
        if byteFallback {
            for b in 0..<256 where ids[Self.bytePiece(UInt8(b))].map({ pieces[$0].type }) != .byte {
                throw fail("byte fallback is on but the piece \(String(decoding: Self.bytePiece(UInt8(b)), as: UTF8.self)) is missing")
            }
        }
        let map = normalizerSpec.bytes(2) ?? []
        var trie: [UInt32] = [], replacements: [UInt8] = []
        if !map.isEmpty {
            guard map.count > 4 else { throw fail("the precompiled character map is \(map.count) bytes, too short for its header") }
            let size = Int(UInt32(map[0]) | UInt32(map[1]) << 8 | UInt32(map[2]) << 16 | UInt32(map[3]) << 24)
            guard size % 4 == 0, size <= map.count - 4 else {
                throw fail("the precompiled character map's trie is \(size) bytes, which does not fit its \(map.count - 4)")
            }
            trie = stride(from: 4, to: 4 + size, by: 4).map {
                UInt32(map[$0]) | UInt32(map[$0 + 1]) << 8 | UInt32(map[$0 + 2]) << 16 | UInt32(map[$0 + 3]) << 24
            }
            replacements = Array(map[(4 + size)...])
        }
        normalizer = Normalizer(name: normalizerSpec.bytes(1).map { String(decoding: $0, as: UTF8.self) } ?? "",
                                trie: trie, replacements: replacements,
                                addDummyPrefix: normalizerSpec.int(3).map { $0 != 0 } ?? true,
                                removeExtraWhitespaces: normalizerSpec.int(4).map { $0 != 0 } ?? true,
                                escapeWhitespaces: normalizerSpec.int(5).map { $0 != 0 } ?? true)
    }

    /// `<0xAB>`: the piece byte fallback writes for byte 0xAB.
    static func bytePiece(_ b: UInt8) -> [UInt8] {
        let hex = Array("0123456789ABCDEF".utf8)
        return Array("<0x".utf8) + [hex[Int(b >> 4)], hex[Int(b & 15)]] + Array(">".utf8)
    }
}

// MARK: - protobuf wire format

struct ProtoError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Reads protobuf's wire format: tags, varints, fixed 32/64-bit values and length-delimited fields, each bounded by
/// the bytes that remain.
struct ProtoReader {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    /// The next field number and wire type, or nil at the end.
    mutating func nextField() throws(ProtoError) -> (Int, Int)? {
        guard !bytes.isEmpty else { return nil }
        let key = try varint()
        let field = Int(key >> 3)
        guard field > 0, field < 1 << 29 else { throw ProtoError("field number \(field) at byte \(bytes.startIndex)") }
        return (field, Int(key & 7))
    }

    mutating func varint() throws(ProtoError) -> UInt64 {
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            guard let b = bytes.popFirst() else { throw ProtoError("a varint runs past the end") }
            guard shift < 64 else { throw ProtoError("a varint is longer than 10 bytes") }
            value |= UInt64(b & 0x7F) << UInt64(shift)
            if b < 0x80 { return value }
        }
        throw ProtoError("a varint is longer than 10 bytes")
    }

    mutating func fixed32() throws(ProtoError) -> UInt32 {
        guard bytes.count >= 4 else { throw ProtoError("a 32-bit value runs past the end") }
        let s = bytes.startIndex
        let v = UInt32(bytes[s]) | UInt32(bytes[s + 1]) << 8 | UInt32(bytes[s + 2]) << 16 | UInt32(bytes[s + 3]) << 24
        bytes = bytes.dropFirst(4)
        return v
    }

    mutating func lengthDelimited() throws(ProtoError) -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(bytes.count) else { throw ProtoError("a field of \(n) bytes runs past the end (\(bytes.count) left)") }
        let part = bytes.prefix(Int(n))
        bytes = bytes.dropFirst(Int(n))
        return part
    }

    mutating func skip(_ wire: Int) throws(ProtoError) {
        switch wire {
        case 0: _ = try varint()
        case 1:
            guard bytes.count >= 8 else { throw ProtoError("a 64-bit value runs past the end") }
            bytes = bytes.dropFirst(8)
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw ProtoError("wire type \(wire) is not used by SentencePiece models")
        }
    }
}

/// A message's scalar fields by number (the last occurrence wins, as protobuf merges them).
struct ProtoMessage {
    private var varints: [Int: UInt64] = [:]
    private var delimited: [Int: ArraySlice<UInt8>] = [:]

    init() {}

    init(_ bytes: ArraySlice<UInt8>) throws(ProtoError) {
        var r = ProtoReader(bytes)
        while let (field, wire) = try r.nextField() {
            switch wire {
            case 0: varints[field] = try r.varint()
            case 2: delimited[field] = try r.lengthDelimited()
            default: try r.skip(wire)
            }
        }
    }

    func int(_ field: Int) -> Int? { varints[field].map { Int(truncatingIfNeeded: $0) } }
    func bytes(_ field: Int) -> [UInt8]? { delimited[field].map(Array.init) }
}
