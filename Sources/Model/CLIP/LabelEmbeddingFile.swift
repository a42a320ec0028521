#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPFiles
import CLIPTensor
import Foundation

/// A zero-shot classifier's label embeddings kept in the packed-weight cache's directory (`NAME.cliplabels`), so
/// that `clip classify` with the same model, labels and templates does not run the text tower again: 1,000
/// ImageNet classes × 80 templates are 80,000 prompts, minutes of text encoding at every start.
///
/// The file: `CLIPLBL1`, the header's length (u64), the header (JSON: the full key, the checkpoint's path, the
/// precision, rows, dimension), `rows × dimension` little-endian float32 values, then the SHA-256 (64 hex digits)
/// of everything before it. A file is taken only when its checksum holds and its key is the asked key byte for byte
/// (the file name is a hash of the key; a collision or a foreign file is refused, then replaced).
enum LabelEmbeddingFile {
    static let magic = Array("CLIPLBL1".utf8)
    /// The most header bytes read (the key holds every label and template).
    static let headerLimit = 64 << 20

    struct Header: Codable, Equatable {
        var key: String
        var source: String
        var precision: String
        var rows: Int
        var dimension: Int
    }

    static func encode(_ header: Header, values: [Float]) -> [UInt8]? {
        guard let json = try? JSONEncoder().encode(header), json.count <= headerLimit,
              values.count == header.rows * header.dimension else { return nil }
        var out = magic
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out += $0 }
        out += json
        out.reserveCapacity(out.count + values.count * 4 + 64)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        out += Array(SHA256.hex(out).utf8)
        return out
    }

    /// The header of `bytes` when the file's structure and checksum hold.
    static func header(_ bytes: [UInt8]) -> (header: Header, values: Range<Int>)? {
        guard bytes.count >= 16 + 64, bytes[0..<8].elementsEqual(magic) else { return nil }
        let length = u64(bytes, at: 8)
        guard length <= UInt64(headerLimit), 16 + Int(length) <= bytes.count - 64 else { return nil }
        let body = bytes.count - 64
        guard SHA256.hex(Array(bytes[0..<body])) == String(decoding: bytes[body...], as: UTF8.self),
              let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[16..<(16 + Int(length))])),
              header.rows >= 0, header.dimension > 0,
              let count = Checked.product([header.rows, header.dimension, 4]),
              16 + Int(length) + count == body else { return nil }
        return (header, (16 + Int(length))..<body)
    }

    static func u64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    /// The values of the file `bytes` when it holds `rows × dimension` values for `key`.
    static func values(_ bytes: [UInt8], key: String, rows: Int, dimension: Int) -> [Float]? {
        guard let (header, range) = header(bytes), header.key == key, header.rows == rows,
              header.dimension == dimension else { return nil }
        return bytes[range].withUnsafeBytes { raw in
            (0..<(rows * dimension)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }
}

extension PackedWeightCache {
    static let labelSuffix = ".cliplabels"

    /// The label embeddings [rows, dimension] stored under `key`, marked as used; nil when there are none, or the
    /// file is damaged or another key's (then it is removed, and written again by the caller).
    package func labelEmbeddings(key: String, rows: Int, dimension: Int) -> [Float]? {
        let path = labelPath(forKey: key)
        guard Self.isCacheFile(path), let expected = Checked.product([rows, dimension, 4]), let limit = Checked.sum(expected, LabelEmbeddingFile.headerLimit + 80),
              let bytes = try? RegularFile.contents(of: path, limit: limit) else { return nil }
        guard let values = LabelEmbeddingFile.values(bytes, key: key, rows: rows, dimension: dimension) else {
            unlink(path)
            return nil
        }
        utimes(path, nil)  // last used, for the size bound
        return values
    }

    /// Stores label embeddings under `key` (atomically: a reader sees the old file or the whole new one), then
    /// trims the directory to `sizeLimit`.
    package func storeLabelEmbeddings(_ values: [Float], key: String, rows: Int, dimension: Int, source: String,
                                      precision: Precision) throws(FileError) {
        let header = LabelEmbeddingFile.Header(key: key, source: source, precision: precision.rawValue, rows: rows,
                                               dimension: dimension)
        guard let bytes = LabelEmbeddingFile.encode(header, values: values) else {
            throw FileError(path: labelPath(forKey: key), .system(operation: "write", message: "the labels and templates are too long to keep"))
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw FileError(path: directory, .system(operation: "create", message: error.localizedDescription))
        }
        let path = labelPath(forKey: key)
        let file = try PartialFile(destination: path)
        bytes.withUnsafeBytes { file.write($0, at: 0) }
        try file.commit()
        trim(keeping: path)
    }

    func labelPath(forKey key: String) -> String { directory + "/" + SHA256.hex(Array(key.utf8)) + Self.labelSuffix }

    /// The header of a label file, for `clip cache list` (read alone: the values are not checked here).
    static func labelHeader(_ path: String) -> LabelEmbeddingFile.Header? {
        guard let file = try? RegularFile(path: path), let start = try? file.read(at: 0, count: 16),
              start[0..<8].elementsEqual(LabelEmbeddingFile.magic) else { return nil }
        let length = LabelEmbeddingFile.u64(start, at: 8)
        guard length <= UInt64(LabelEmbeddingFile.headerLimit), let json = try? file.read(at: 16, count: Int(length)) else { return nil }
        return try? JSONDecoder().decode(LabelEmbeddingFile.Header.self, from: Data(json))
    }
}
