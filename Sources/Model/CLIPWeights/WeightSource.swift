import CLIPTensor

/// Name, element type and shape of one stored tensor.
public struct TensorInfo: Sendable, Equatable {
    /// The tensor's name (OpenAI's naming once mapped).
    public let name: String
    /// The element type as stored.
    public let dtype: DType
    /// The extents, outermost first.
    public let shape: [Int]

    /// The facts of one stored tensor.
    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// A set of named tensors read from a weight file, whatever its format.
///
/// Model code asks for tensors by name and gets fp32 `Tensor`s; the format, the stored dtype and
/// where the bytes live are the source's business.
public protocol WeightSource: Sendable {
    /// Where the tensors came from, for error messages (usually a file path).
    var origin: String { get }
    /// Every tensor in the source, in stored order.
    var tensorInfos: [TensorInfo] { get }
    /// The tensor `name` converted to fp32. Throws if absent or not a floating-point type.
    func floatTensor(_ name: String) throws(WeightFileError) -> Tensor
    /// Whether tensors may be read from several threads at once to load faster: true where each read is an
    /// independent positioned read (safetensors); false where reads share state that assumes an order (the
    /// storage cache of PyTorch archives).
    var readsConcurrently: Bool { get }
}

extension WeightSource {
    public var readsConcurrently: Bool { false }
}


/// An error reading a weight file. `description` names the file, and the tensor where there is one.
public struct WeightFileError: Error, CustomStringConvertible, Equatable {
    /// The file the problem was found in.
    public let file: String
    /// What is wrong.
    public let problem: Problem

    /// An error for `file`.
    public init(file: String, _ problem: Problem) {
        self.file = file
        self.problem = problem
    }

    /// What is wrong with a weight file; the tensor is named where there is one.
    public enum Problem: Equatable, Sendable {
        case cannotOpen(reason: String)
        case unreadable(String)
        case fileTooSmall(size: Int)
        case headerTooLarge(declared: UInt64, limit: Int)
        case headerPastEnd(declared: UInt64, fileSize: Int)
        case headerNotUTF8
        case headerNotObject
        case invalidJSON(offset: Int, message: String)
        case invalidEntry(tensor: String, message: String)
        case unknownDType(tensor: String, dtype: String)
        case shapeOverflow(tensor: String, shape: [UInt64])
        case byteSizeMismatch(tensor: String, expected: UInt64, actual: UInt64)
        case offsetsNotContiguous(tensor: String, expectedStart: UInt64, start: UInt64, end: UInt64)
        case dataSizeMismatch(described: UInt64, present: UInt64)
        case missingTensor(String)
        case notFloatingPoint(tensor: String, dtype: DType)
        case notInteger(tensor: String, dtype: DType)
    }

    public var description: String {
        let what: String
        switch problem {
        case .cannotOpen(let r): what = "cannot open: \(r)"
        case .unreadable(let r): what = "cannot read: \(r)"
        case .fileTooSmall(let s): what = "file is \(s) bytes, too small to be a safetensors file (needs an 8-byte header length)"
        case .headerTooLarge(let d, let l): what = "header length \(d) exceeds the limit of \(l) bytes"
        case .headerPastEnd(let d, let s): what = "header length \(d) runs past the end of the \(s)-byte file"
        case .headerNotUTF8: what = "header is not valid UTF-8"
        case .headerNotObject: what = "header does not start with '{'"
        case .invalidJSON(let o, let m): what = "header JSON invalid at byte \(o): \(m)"
        case .invalidEntry(let t, let m): what = "tensor '\(t)': \(m)"
        case .unknownDType(let t, let d): what = "tensor '\(t)': unknown dtype '\(d)'"
        case .shapeOverflow(let t, let s): what = "tensor '\(t)': shape \(s) has too many elements"
        case .byteSizeMismatch(let t, let e, let a):
            what = "tensor '\(t)': shape and dtype need \(e) bytes but data_offsets span \(a)"
        case .offsetsNotContiguous(let t, let x, let s, let e):
            what = "tensor '\(t)': data_offsets [\(s), \(e)] do not start at \(x), where the previous tensor ends (gap, overlap or reversed range)"
        case .dataSizeMismatch(let d, let p):
            what = "tensors describe \(d) bytes of data but the file holds \(p) after the header"
        case .missingTensor(let t): what = "no tensor named '\(t)'"
        case .notFloatingPoint(let t, let d): what = "tensor '\(t)' has dtype \(d.rawValue), expected a floating-point type"
        case .notInteger(let t, let d): what = "tensor '\(t)' has dtype \(d.rawValue), expected an integer type"
        }
        return "\(file): \(what)"
    }
}

extension Tensor {
    /// A tensor decoded from tensor `name` of weight file `file`, with a shape/count mismatch reported against them.
    init(decoded name: String, in file: String, shape: [Int], scalars: [Float]) throws(WeightFileError) {
        do throws(TensorError) {
            self = try Tensor(shape: shape, scalars: scalars)
        } catch {
            throw WeightFileError(file: file, .invalidEntry(tensor: name, message: error.description))
        }
    }
}
