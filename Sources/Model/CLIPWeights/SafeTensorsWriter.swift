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

    /// The bytes of a `.safetensors` file holding `tensors` (in order) and `metadata`, stored as fp32 or, with
    /// `half`, as IEEE fp16 (rounded to nearest even; values beyond fp16's range become ±infinity).
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                              half: Bool = false) -> [UInt8] {
        var offset = 0
        var entries: [String] = []
        if !metadata.isEmpty {
            let kv = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            entries.append("\"__metadata__\":{\(kv.joined(separator: ","))}")
        }
        for (name, t) in tensors {
            let bytes = t.count * (half ? 2 : 4)
            entries.append("\(jsonString(name)):{\"dtype\":\"\(half ? "F16" : "F32")\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array("{\(entries.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for (_, t) in tensors {
            if half {
                for v in t.scalars { withUnsafeBytes(of: halfBits(v).littleEndian) { out.append(contentsOf: $0) } }
            } else {
                t.scalars.withUnsafeBytes { out.append(contentsOf: $0) }  // little-endian on every supported CPU
            }
        }
        return out
    }

    /// IEEE binary16 bits of `v`, rounded to nearest even (written out: `Float16` is missing on macOS x86).
    static func halfBits(_ v: Float) -> UInt16 {
        let b = v.bitPattern
        let sign = UInt16((b >> 16) & 0x8000)
        let exponent = Int((b >> 23) & 0xFF), mantissa = b & 0x7F_FFFF
        if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }  // infinity, NaN
        let e = exponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }  // overflow
        if e <= 0 {  // subnormal or zero in fp16
            guard e >= -10 else { return sign }
            let m = mantissa | 0x80_0000, shift = UInt32(14 - e)
            var h = m >> shift
            let rest = m & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rest > halfway || (rest == halfway && h & 1 == 1) { h += 1 }
            return sign | UInt16(h)
        }
        var h = UInt32(e) << 10 | mantissa >> 13
        let rest = mantissa & 0x1FFF
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }  // may carry into the exponent: still correct
        return sign | UInt16(h)
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

    /// `s` as a JSON string literal (quotes, backslashes and control characters escaped).
    package static func jsonString(_ s: String) -> String {
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
