import CLIPFiles
import CLIPTensor

/// A `.safetensors` file, validated as the format's reference loader does before any tensor is read: header
/// length within limits and within the file, UTF-8 JSON object, known dtypes, byte ranges that match shape × dtype
/// size, contiguous, non-overlapping and covering exactly the data section. Tensors are read with `pread` when
/// asked for, so a file truncated meanwhile gives an error, not a crash.
public struct SafeTensorsFile: WeightSource {
    /// Each tensor is one positioned read of the file: layers load in parallel.
    public var readsConcurrently: Bool { true }

    /// The reference loader's limit on the JSON header.
    public static let maxHeaderSize = 100_000_000

    /// The file's path.
    public let origin: String
    /// Every tensor, in the order of its bytes in the file.
    public let tensorInfos: [TensorInfo]
    /// The free-form `__metadata__` string map, if the file has one.
    public let metadata: [String: String]

    private let file: RegularFile
    private let dataStart: Int
    private let ranges: [String: Range<Int>]
    private let byName: [String: TensorInfo]

    /// Opens and validates the file at `path`.
    public init(path: String) throws(WeightFileError) {
        try self.init(file: RegularFile(opening: path))
    }

    /// Validates an opened file: header length, JSON, every entry's dtype, shape and offsets, and that the ranges
    /// tile the data exactly.
    package init(file: RegularFile) throws(WeightFileError) {
        let path = file.path
        func fail(_ p: WeightFileError.Problem) -> WeightFileError { WeightFileError(file: path, p) }
        let size = file.size
        let (headerLength, json) = try Self.readHeader(of: file)
        guard case .object(let members) = json else { throw fail(.headerNotObject) }

        var metadata: [String: String] = [:]
        var entries: [(info: TensorInfo, start: UInt64, end: UInt64)] = []
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let kv) = value else {
                    throw fail(.invalidEntry(tensor: name, message: "must be an object of strings"))
                }
                for (k, v) in kv {
                    guard case .string(let s) = v else {
                        throw fail(.invalidEntry(tensor: name, message: "value of '\(k)' is not a string"))
                    }
                    metadata[k] = s
                }
                continue
            }
            entries.append(try Self.parseEntry(name: name, value: value, fail: fail))
        }

        // The reference sorts by start offset and requires each range to begin where the previous one ended.
        entries.sort { ($0.start, $0.end) < ($1.start, $1.end) }
        var cursor: UInt64 = 0
        var ranges: [String: Range<Int>] = [:]
        for e in entries {
            guard e.start == cursor, e.end >= e.start else {
                throw fail(.offsetsNotContiguous(tensor: e.info.name, expectedStart: cursor, start: e.start, end: e.end))
            }
            cursor = e.end
        }
        let present = UInt64(size - 8 - headerLength)
        guard cursor == present else { throw fail(.dataSizeMismatch(described: cursor, present: present)) }
        // Every end is now ≤ the file's data size, so these conversions cannot trap.
        for e in entries { ranges[e.info.name] = Int(e.start)..<Int(e.end) }

        self.origin = path
        self.file = file
        self.dataStart = 8 + headerLength
        self.ranges = ranges
        self.metadata = metadata
        // Stored order is the order of the bytes, which is how writers lay the state dict out.
        self.tensorInfos = entries.map(\.info)
        self.byName = Dictionary(uniqueKeysWithValues: entries.map { ($0.info.name, $0.info) })
    }

    /// Reads the 8-byte little-endian header length and the JSON header it announces.
    /// - Returns: the header's length in bytes and its parsed value.
    private static func readHeader(of file: RegularFile) throws(WeightFileError) -> (Int, JSONValue) {
        let path = file.path
        func fail(_ p: WeightFileError.Problem) -> WeightFileError { WeightFileError(file: path, p) }
        let size = file.size
        guard size >= 8 else { throw fail(.fileTooSmall(size: size)) }
        let lengthBytes = try file.checkedRead(at: 0, count: 8)
        let declared = lengthBytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard declared <= UInt64(Self.maxHeaderSize) else {
            throw fail(.headerTooLarge(declared: declared, limit: Self.maxHeaderSize))
        }
        let headerLength = Int(declared)
        guard headerLength <= size - 8 else {
            throw fail(.headerPastEnd(declared: declared, fileSize: size))
        }
        let headerBytes = try file.checkedRead(at: 8, count: headerLength)
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw fail(.headerNotUTF8) }
        guard headerBytes.first == UInt8(ascii: "{") else { throw fail(.headerNotObject) }
        let json: JSONValue
        do {
            json = try JSONParser.parse(headerBytes)
        } catch {
            throw fail(.invalidJSON(offset: 8 + error.offset, message: error.message))
        }
        return (headerLength, json)
    }

    private static func parseEntry(
        name: String, value: JSONValue, fail: (WeightFileError.Problem) -> WeightFileError
    ) throws(WeightFileError) -> (info: TensorInfo, start: UInt64, end: UInt64) {
        guard case .object(let fields) = value else {
            throw fail(.invalidEntry(tensor: name, message: "entry is not an object"))
        }
        var dtypeText: String?
        var shape: [UInt64]?
        var offsets: [UInt64]?
        for (k, v) in fields {
            switch k {
            case "dtype":
                guard case .string(let s) = v else { throw fail(.invalidEntry(tensor: name, message: "dtype is not a string")) }
                dtypeText = s
            case "shape":
                guard case .array(let a) = v else { throw fail(.invalidEntry(tensor: name, message: "shape is not an array")) }
                var dims: [UInt64] = []
                for d in a {
                    guard let u = d.uint64 else {
                        throw fail(.invalidEntry(tensor: name, message: "shape holds a value that is not a non-negative integer"))
                    }
                    // Every dimension must fit an Int on its own: [0, 2⁶⁴ − 1] has no elements but no valid shape.
                    guard Checked.int(u) != nil else { throw fail(.shapeOverflow(tensor: name, shape: a.compactMap(\.uint64))) }
                    dims.append(u)
                }
                shape = dims
            case "data_offsets":
                guard case .array(let a) = v, a.count == 2, let s = a[0].uint64, let e = a[1].uint64 else {
                    throw fail(.invalidEntry(tensor: name, message: "data_offsets must be two non-negative integers"))
                }
                offsets = [s, e]
            default:
                continue  // the reference ignores unknown fields
            }
        }
        guard let dtypeText else { throw fail(.invalidEntry(tensor: name, message: "missing dtype")) }
        guard let shape else { throw fail(.invalidEntry(tensor: name, message: "missing shape")) }
        guard let offsets else { throw fail(.invalidEntry(tensor: name, message: "missing data_offsets")) }
        guard let dtype = DType(rawValue: dtypeText) else { throw fail(.unknownDType(tensor: name, dtype: dtypeText)) }
        var elements: UInt64 = 1
        for d in shape {
            let (p, o) = elements.multipliedReportingOverflow(by: d)
            guard !o, p <= UInt64(Int.max) else { throw fail(.shapeOverflow(tensor: name, shape: shape)) }
            elements = p
        }
        let (needed, o) = elements.multipliedReportingOverflow(by: UInt64(dtype.size))
        guard !o else { throw fail(.shapeOverflow(tensor: name, shape: shape)) }
        let span = offsets[1] >= offsets[0] ? offsets[1] - offsets[0] : 0
        guard offsets[1] >= offsets[0] else {
            throw fail(.offsetsNotContiguous(tensor: name, expectedStart: offsets[0], start: offsets[0], end: offsets[1]))
        }
        guard needed == span else { throw fail(.byteSizeMismatch(tensor: name, expected: needed, actual: span)) }
        // Elements fit in Int (checked above) and the byte span is checked against the file later.
        return (TensorInfo(name: name, dtype: dtype, shape: shape.map { Int($0) }), offsets[0], offsets[1])
    }

    /// The little-endian bytes of tensor `name`, read from the file now.
    public func bytes(of name: String) throws(WeightFileError) -> (info: TensorInfo, bytes: [UInt8]) {
        guard let info = byName[name], let r = ranges[name] else { throw WeightFileError(file: origin, .missingTensor(name)) }
        return (info, try file.checkedRead(at: dataStart + r.lowerBound, count: r.count))
    }

    /// The tensor `name` widened to fp32 (from f16, bf16 or f64 as stored).
    public func floatTensor(_ name: String) throws(WeightFileError) -> Tensor {
        guard let info = byName[name], let r = ranges[name] else { throw WeightFileError(file: origin, .missingTensor(name)) }
        // Element counts fit Int: checked when the header was parsed.
        let count = info.shape.reduce(1, *)
        guard info.dtype.isFloatingPoint else { throw WeightFileError(file: origin, .notFloatingPoint(tensor: name, dtype: info.dtype)) }
        let values: [Float]
        if info.dtype == .float32 {
            // Straight into the tensor's storage: no byte copy to convert from.
            #if _endian(little)
            values = try file.checkedRead(at: dataStart + r.lowerBound, count: count, as: Float.self)
            #else
            values = try file.checkedRead(at: dataStart + r.lowerBound, count: count, as: UInt32.self)
                .map { Float(bitPattern: UInt32(littleEndian: $0)) }
            #endif
        } else {
            let bytes = try file.checkedRead(at: dataStart + r.lowerBound, count: r.count)
            values = bytes.withUnsafeBytes { decodeFloats($0, dtype: info.dtype, count: count) } ?? []
        }
        return try Tensor(decoded: name, in: origin, shape: info.shape, scalars: values)
    }

    /// The integer tensor `name` (token ids in the reference fixtures) with its shape.
    package func integerTensor(_ name: String) throws(WeightFileError) -> (shape: [Int], values: [Int]) {
        let (info, bytes) = try bytes(of: name)
        guard let values = bytes.withUnsafeBytes({ decodeIntegers($0, dtype: info.dtype, count: info.shape.reduce(1, *)) }) else {
            throw WeightFileError(file: origin, .notInteger(tensor: name, dtype: info.dtype))
        }
        return (info.shape, values)
    }
}
