/// Storage element types found in weight files, and their conversion to fp32.
public enum DType: String, Sendable, CaseIterable {
    case float64 = "F64", float32 = "F32", float16 = "F16", bfloat16 = "BF16"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"
    case uint16 = "U16", uint32 = "U32", uint64 = "U64"
    case float8E4M3 = "F8_E4M3", float8E5M2 = "F8_E5M2"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64, .uint64: return 8
        case .float32, .int32, .uint32: return 4
        case .float16, .bfloat16, .int16, .uint16: return 2
        case .int8, .uint8, .bool, .float8E4M3, .float8E5M2: return 1
        }
    }

    /// Whether `decodeFloats` can widen this type to fp32 without losing what the model needs.
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16: return true
        default: return false
        }
    }

    /// Whether `decodeIntegers` reads this type.
    public var isInteger: Bool {
        switch self {
        case .int64, .int32, .int16, .int8, .uint8, .uint16, .uint32, .uint64, .bool: return true
        default: return false
        }
    }
}

/// Widens little-endian floating-point bytes to fp32. `bytes.count` must be `count * dtype.size`
/// (callers validate this against the file before calling).
package func decodeFloats(_ bytes: UnsafeRawBufferPointer, dtype: DType, count: Int) -> [Float]? {
    guard dtype.isFloatingPoint, bytes.count == count * dtype.size else { return nil }
    return [Float](unsafeUninitializedCapacity: count) { out, initialized in
        switch dtype {
        case .float32:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .float16:
            for i in 0..<count { out[i] = halfToFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .bfloat16:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
        case .float64:
            for i in 0..<count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        default:
            break
        }
        initialized = count
    }
}

/// Reads little-endian integer bytes as `Int`s (token ids, counters). `bytes.count` must be `count * dtype.size`.
package func decodeIntegers(_ bytes: UnsafeRawBufferPointer, dtype: DType, count: Int) -> [Int]? {
    guard dtype.isInteger, bytes.count == count * dtype.size else { return nil }
    var out = [Int](repeating: 0, count: count)
    for i in 0..<count {
        switch dtype {
        case .int64: out[i] = Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
        case .uint64:
            let v = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
            out[i] = v > UInt64(Int.max) ? -1 : Int(v)
        case .int32: out[i] = Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
        case .uint32: out[i] = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        case .int16: out[i] = Int(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
        case .uint16: out[i] = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .int8: out[i] = Int(bytes.load(fromByteOffset: i, as: Int8.self))
        case .uint8, .bool: out[i] = Int(bytes[i])
        default: break
        }
    }
    return out
}

/// IEEE 754 binary16 to binary32, exact for every input including subnormals, infinities and NaN.
@inlinable
package func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1f)
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        // Zero or subnormal: value = mantissa * 2^-24, exactly representable in fp32.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 0x1f {
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
}
