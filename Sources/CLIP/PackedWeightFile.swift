import CLIPLayers
import CLIPTensor
import Foundation

/// One checkpoint's weights as a load hands them to the layers: each layer weight already in the GEMM kernel's
/// packed layout (fp32 panels, bf16, or int8 codes with scales and sums) with its bias, and the plain tensors
/// (embeddings, LayerNorms, projections) in fp32. Memory-mapped on load: packed weights are used where they lie.
///
/// Layout: `CLIPPACK` and 56 zero bytes; the arrays, each at a 64-byte-aligned offset; the header (JSON: the cache
/// key, the checkpoint path, and every entry's name, shape and offsets); a 24-byte trailer: the header's offset and
/// length (UInt64 little-endian) and `CLIPPACK` again. A truncated file loses its trailer; every offset and size is
/// checked against the file and against what the kernel expects, so a damaged or foreign file is refused, never
/// read out of bounds.
package final class PackedWeightFile: PackedWeightSource {
    static let magic = Array("CLIPPACK".utf8)
    static let format = 1
    /// Headers of real models are a few hundred kB; anything near this is not ours.
    static let maxHeaderBytes = 64 << 20

    struct Header: Codable {
        var format: Int
        var key: String
        var source: String
        var precision: String
        var tensors: [TensorEntry]
        var packs: [PackEntry]
    }

    struct TensorEntry: Codable {
        var name: String
        var shape: [Int]
        var offset: Int
    }

    struct PackEntry: Codable {
        var name: String
        var k: Int
        var n: Int
        var kernel: String
        var precision: String
        var group: Int
        var offsets: [Int]
        /// Offset of the bias ([n] fp32), or nil for a layer without one.
        var bias: Int?
    }

    let path: String
    let header: Header
    private let file: MappedFile
    private let tensors: [String: TensorEntry]
    private let packs: [String: (PackedMatrix, Tensor?)]

    /// Opens and validates the cache file at `path`, which must have been written under `key`.
    package init(path: String, key: String) throws(PackedWeightFileError) {
        self.path = path
        func fail(_ message: String) -> PackedWeightFileError { PackedWeightFileError(path: path, message: message) }
        do { file = try MappedFile(path: path) } catch { throw fail("\(error)") }
        header = try Self.header(of: file, path: path)
        guard header.format == Self.format else { throw fail("format \(header.format), this build reads \(Self.format)") }
        guard header.key == key else { throw fail("written for another checkpoint, precision or CPU") }
        var tensors: [String: TensorEntry] = [:]
        for t in header.tensors {
            guard let count = Checked.product(t.shape), t.shape.allSatisfy({ $0 >= 0 }),
                  Elements<Float>(file: file, offset: t.offset, count: count) != nil else {
                throw fail("tensor '\(t.name)' of shape \(t.shape) at offset \(t.offset) does not fit the file")
            }
            tensors[t.name] = t
        }
        var packs: [String: (PackedMatrix, Tensor?)] = [:]
        for p in header.packs {
            guard let kernel = GEMMKernel(rawValue: p.kernel), let precision = Precision(rawValue: p.precision),
                  let matrix = PackedMatrix(name: p.name, k: p.k, n: p.n, kernel: kernel, precision: precision,
                                            group: p.group, file: file, offsets: p.offsets) else {
                throw fail("packed weight '\(p.name)' (\(p.k)×\(p.n), \(p.kernel) \(p.precision)) does not fit the file or this CPU's kernels")
            }
            var bias: Tensor?
            if let offset = p.bias {
                guard let values = Elements<Float>(file: file, offset: offset, count: p.n) else {
                    throw fail("bias of '\(p.name)' at offset \(offset) does not fit the file")
                }
                bias = Tensor(uncheckedShape: [p.n], scalars: values.withUnsafeBufferPointer { Array($0) })
                guard bias?.firstNonFiniteIndex == nil else { throw fail("bias of '\(p.name)' is not finite") }
            }
            packs[p.name] = (matrix, bias)
        }
        self.tensors = tensors
        self.packs = packs
    }

    /// The header of a mapped cache file, after checking its magic and trailer.
    static func header(of file: MappedFile, path: String) throws(PackedWeightFileError) -> Header {
        func fail(_ message: String) -> PackedWeightFileError { PackedWeightFileError(path: path, message: message) }
        let bytes = file.bytes
        guard bytes.count >= 64 + 24, Array(bytes[0..<8]) == magic, Array(bytes[(bytes.count - 8)...]) == magic else {
            throw fail("not a packed-weight file, or cut short (\(bytes.count) bytes)")
        }
        let trailer = bytes.count - 24
        let offset = Int(clamping: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: trailer, as: UInt64.self)))
        let length = Int(clamping: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: trailer + 8, as: UInt64.self)))
        guard offset >= 64, length <= maxHeaderBytes, let end = Checked.sum(offset, length), end == trailer else {
            throw fail("the trailer points outside the file (header at \(offset), \(length) bytes)")
        }
        do {
            return try JSONDecoder().decode(Header.self, from: Data(bytes[offset..<end]))
        } catch {
            throw fail("unreadable header (\(error))")
        }
    }

    package func tensor(_ name: String, shape: [Int]) -> Tensor? {
        guard let t = tensors[name], t.shape == shape, let count = Checked.product(shape),
              let values = Elements<Float>(file: file, offset: t.offset, count: count) else { return nil }
        let tensor = Tensor(uncheckedShape: shape, initializingWith: { out in
            values.withUnsafeBufferPointer { src in
                if let s = src.baseAddress, let d = out.baseAddress { d.update(from: s, count: count) }
            }
        })
        return tensor.firstNonFiniteIndex == nil ? tensor : nil
    }

    package func packed(_ name: String) -> (PackedMatrix, Tensor?)? { packs[name] }

    /// Writes a cache file at `path` atomically (a temporary file beside it, flushed, then renamed): a crash or a
    /// full disk leaves either the old file or none, never a partial one under the name.
    static func write(to path: String, key: String, source: String, precision: Precision, tensors: [(String, Tensor)],
                      packs: [(PackedMatrix, Tensor?)]) throws(PackedWeightFileError) {
        let temporary = path + ".partial-\(getpid())"
        func fail(_ message: String) -> PackedWeightFileError { PackedWeightFileError(path: path, message: message) }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else { throw fail("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var position = 0
        var failure: String?
        func put(_ bytes: UnsafeRawBufferPointer) {
            guard failure == nil, let base = bytes.baseAddress else { return }
            var done = 0
            while done < bytes.count {
                let n = posixWrite(fd, base + done, bytes.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { failure = String(cString: strerror(errno)); return }
                done += n
            }
            position += bytes.count
        }
        func pad() {
            let gap = (64 - position % 64) % 64
            if gap > 0 { [UInt8](repeating: 0, count: gap).withUnsafeBytes(put) }
        }
        (magic + [UInt8](repeating: 0, count: 56)).withUnsafeBytes(put)
        var header = Header(format: format, key: key, source: source, precision: precision.rawValue, tensors: [], packs: [])
        for (name, tensor) in tensors {
            pad()
            header.tensors.append(TensorEntry(name: name, shape: tensor.shape, offset: position))
            tensor.scalars.withUnsafeBytes(put)
        }
        for (matrix, bias) in packs {
            var offsets: [Int] = []
            matrix.withStoredBytes { arrays in
                for array in arrays {
                    pad()
                    offsets.append(position)
                    put(array)
                }
            }
            var biasOffset: Int?
            if let bias {
                pad()
                biasOffset = position
                bias.scalars.withUnsafeBytes(put)
            }
            header.packs.append(PackEntry(name: matrix.name ?? "", k: matrix.k, n: matrix.n, kernel: matrix.kernel.rawValue,
                                          precision: matrix.precision.rawValue, group: matrix.storedGroup,
                                          offsets: offsets, bias: biasOffset))
        }
        let json = (try? JSONEncoder().encode(header)).map { [UInt8]($0) } ?? []
        let headerOffset = position
        json.withUnsafeBytes(put)
        var trailer = [UInt8]()
        for v in [UInt64(headerOffset), UInt64(json.count)] { withUnsafeBytes(of: v.littleEndian) { trailer += $0 } }
        (trailer + magic).withUnsafeBytes(put)
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw fail("cannot write: \(failure)")
        }
    }
}

#if canImport(Glibc)
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
private let posixWrite = Darwin.write
#endif

/// A packed-weight cache file that cannot be used (it is then rebuilt) or written (the load goes on without it).
public struct PackedWeightFileError: Error, CustomStringConvertible {
    /// The cache file or directory concerned.
    public let path: String
    /// What is wrong with it.
    public let message: String
    public var description: String { "\(path): \(message)" }
}
