#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPTensor

/// Writes fp32 tensors as a `.safetensors` file, in the given order, with the header padded to 8 bytes as
/// the reference writer does.
public enum SafeTensorsWriter {
    /// Writes `tensors` (any shapes, fp32) with optional string `metadata` to `path`, atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                             to path: String) throws(WeightFileError) {
        try writeFile(encode(tensors, metadata: metadata), to: path)
    }

    /// The bytes of a `.safetensors` file holding `tensors` (fp32, in order) and `metadata`.
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) -> [UInt8] {
        var offset = 0
        var entries: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            entries.append("\"__metadata__\":{\(kv.joined(separator: ","))}")
        }
        for (name, t) in tensors {
            let bytes = t.count * 4
            entries.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array("{\(entries.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for (_, t) in tensors {
            t.scalars.withUnsafeBytes { out.append(contentsOf: $0) }  // little-endian on every supported CPU
        }
        return out
    }

    /// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half a file.
    public static func writeFile(_ bytes: [UInt8], to path: String) throws(WeightFileError) {
        let tmp = path + ".tmp-\(getpid())"
        guard let f = fopen(tmp, "wb") else {
            throw WeightFileError(file: path, .cannotOpen(reason: String(cString: strerror(errno))))
        }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        let closed = fclose(f)
        guard written == bytes.count, closed == 0, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw WeightFileError(file: path, .cannotOpen(reason: "write failed: \(String(cString: strerror(errno)))"))
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
