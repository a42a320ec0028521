import CLIPFiles
import CLIPLayers
import CLIPTensor
import Foundation
import Synchronization

/// One checkpoint's weights as a load hands them to the layers: each layer weight already in the GEMM kernel's
/// packed layout (fp32 panels, bf16, or int8 codes with scales and sums) with its bias, and the plain tensors
/// (embeddings, LayerNorms, projections) in fp32. Memory-mapped on load: packed weights are used where they lie.
///
/// Layout: `CLIPPACK` and 56 zero bytes; the arrays, each at a 64-byte-aligned offset; the header (JSON: the cache
/// key, the checkpoint path, and every entry's name, shape, offsets and checksums); a 32-byte trailer: the header's
/// offset, length and checksum (UInt64 little-endian) and `CLIPPACK` again. A truncated file loses its trailer; every
/// offset and size is checked against the file and against what the kernel expects, every entry against the key's
/// precision and kernel (a damaged or foreign file is refused, never read out of bounds), and every array against its
/// checksum (`checksum64`, seeded with the entry's name so that swapped arrays differ too) when a layer first
/// takes it: a damaged entry is never used, the layer is built from the checkpoint and the load rewrites the file.
package final class PackedWeightFile: PackedWeightSource {
    static let magic = Array("CLIPPACK".utf8)
    static let format = 3
    /// Headers of real models are a few hundred kB (ViT-bigG: about 1,000 entries); anything near this is not ours.
    static let maxHeaderBytes = 8 << 20
    static let trailerBytes = 32

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
        var checksum: UInt64
    }

    struct PackEntry: Codable {
        var name: String
        var k: Int
        var n: Int
        var kernel: String
        var precision: String
        var group: Int
        var offsets: [Int]
        var checksums: [UInt64]
        /// Offset of the bias ([n] fp32), or nil for a layer without one.
        var bias: Int?
        var biasChecksum: UInt64?
    }

    /// Arrays are checksummed in chunks of this size, on all cores, and the chunks' sums summed again.
    static let checksumChunk = 1 << 20

    /// The checksum of an array stored under `name` (its role in `what`: values, scales, sums, bias); with `copy`,
    /// the array is also copied there, each chunk checksummed from the copy while it is in cache (one pass over the
    /// mapped pages for the big embedding tables).
    static func checksum(_ bytes: UnsafeRawBufferPointer, name: String, _ what: Int,
                         copyingTo copy: UnsafeMutableRawPointer? = nil) -> UInt64 {
        let seed = checksum64(name, count: name.utf8.count, seed: UInt64(what))
        let chunks = max(1, (bytes.count + checksumChunk - 1) / checksumChunk)
        var sums = [UInt64](repeating: 0, count: chunks)
        sums.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            parallelFor(chunks) { i in
                let from = i * checksumChunk, count = min(bytes.count - from, checksumChunk)
                guard count > 0, let base = bytes.baseAddress else {
                    o[i] = checksum64(nil, count: 0, seed: seed)
                    return
                }
                if let copy {
                    (copy + from).copyMemory(from: base + from, byteCount: count)
                    o[i] = checksum64(copy + from, count: count, seed: seed &+ UInt64(i))
                } else {
                    o[i] = checksum64(base + from, count: count, seed: seed &+ UInt64(i))
                }
            }
        }
        return sums.withUnsafeBytes { checksum64($0.baseAddress, count: $0.count, seed: seed) }
    }

    package let path: String
    let header: Header
    private let file: MappedFile
    private let tensors: [String: TensorEntry]
    private let packs: [String: (PackedMatrix, Tensor?)]
    private let arrays: [String: [StoredArray]]
    private let checked = Mutex<[String: Bool]>([:])

    /// Opens and validates the cache file at `path`, which must have been written under `key` for `precision`.
    package init(path: String, key: String, precision: Precision) throws(PackedWeightFileError) {
        self.path = path
        func fail(_ message: String) -> PackedWeightFileError { PackedWeightFileError(path: path, message: message, damaged: true) }
        do { file = try MappedFile(path: path) } catch {
            throw PackedWeightFileError(path: path, message: "\(error)", damaged: false)
        }
        header = try Self.header(of: file, path: path)
        guard header.format == Self.format else { throw fail("format \(header.format), this build reads \(Self.format)") }
        guard header.key == key, header.precision == precision.rawValue else {
            throw fail("written for another checkpoint, precision or CPU")
        }
        // The one kernel the key's layout names: a pack claiming another would be read in the wrong layout.
        guard let kernel = precision.kernels.first else { throw fail("no \(precision.rawValue) kernel on this CPU") }
        var arrays: [String: [StoredArray]] = [:]
        var tensors: [String: TensorEntry] = [:]
        for t in header.tensors {
            guard tensors[t.name] == nil else { throw fail("tensor '\(t.name)' is listed twice") }
            guard t.shape.allSatisfy({ $0 >= 0 }), let count = Checked.product(t.shape),
                  Elements<Float>(file: file, offset: t.offset, count: count) != nil else {
                throw fail("tensor '\(t.name)' of shape \(t.shape) at offset \(t.offset) does not fit the file")
            }
            tensors[t.name] = t
            arrays[Self.tensorPrefix + t.name] = [StoredArray(offset: t.offset, bytes: count * 4, checksum: t.checksum, role: 0)]
        }
        var packs: [String: (PackedMatrix, Tensor?)] = [:]
        for p in header.packs {
            guard packs[p.name] == nil, !p.name.hasPrefix(Self.tensorPrefix) else {
                throw fail("packed weight '\(p.name)' is listed twice or misnamed")
            }
            guard p.kernel == kernel.rawValue, p.precision == precision.rawValue,
                  let matrix = PackedMatrix(name: p.name, k: p.k, n: p.n, kernel: kernel, precision: precision,
                                            group: p.group, file: file, offsets: p.offsets),
                  let counts = PackedMatrix.storedCounts(kernel: kernel, precision: precision, k: p.k, n: p.n),
                  p.checksums.count == counts.count else {
                throw fail("packed weight '\(p.name)' (\(p.k)×\(p.n), \(p.kernel) \(p.precision)) does not fit the file or this CPU's \(kernel.rawValue) \(precision.rawValue) layout")
            }
            let sizes = PackedMatrix.storedElementSizes(precision)
            var stored = counts.indices.map {
                StoredArray(offset: p.offsets[$0], bytes: counts[$0] * sizes[$0], checksum: p.checksums[$0], role: $0 + 1)
            }
            var bias: Tensor?
            if let offset = p.bias {
                guard let values = Elements<Float>(file: file, offset: offset, count: p.n), let sum = p.biasChecksum else {
                    throw fail("bias of '\(p.name)' at offset \(offset) does not fit the file")
                }
                stored.append(StoredArray(offset: offset, bytes: p.n * 4, checksum: sum, role: 9))
                bias = Tensor(uncheckedShape: [p.n], scalars: values.withUnsafeBufferPointer { Array($0) })
                guard bias?.firstNonFiniteIndex == nil else { throw fail("bias of '\(p.name)' is not finite") }
            }
            packs[p.name] = (matrix, bias)
            arrays[p.name] = stored
        }
        // int8 scales multiply every output: a non-finite one would pass NaN through silently.
        for (name, (matrix, _)) in packs where matrix.precision == .int8 {
            guard matrix.storedScalesAreFinite else { throw fail("int8 scales of '\(name)' are not finite") }
        }
        self.tensors = tensors
        self.packs = packs
        self.arrays = arrays
    }

    /// One stored array: where, how long, its checksum and its role (seed) within its entry.
    struct StoredArray {
        var offset: Int
        var bytes: Int
        var checksum: UInt64
        var role: Int
    }

    /// Plain tensors' checksum entries are kept apart from packed weights' (a tensor may share a pack's name).
    static let tensorPrefix = "tensor:"

    /// Whether the arrays of `entry` match their checksums, computed on first use: a load verifies what it uses and
    /// nothing else (a text-only load does not read the image tower's pages).
    private func verified(_ entry: String, name: String) -> Bool {
        if let known = checked.withLock({ $0[entry] }) { return known }
        let bytes = file.bytes
        let ok = (arrays[entry] ?? []).allSatisfy { a in
            Self.checksum(UnsafeRawBufferPointer(rebasing: bytes[a.offset..<(a.offset + a.bytes)]), name: name, a.role) == a.checksum
        }
        checked.withLock { $0[entry] = ok }
        return ok
    }

    /// Whether some entry taken so far failed its checksum (the file is then to be replaced).
    package var foundDamage: Bool { checked.withLock { $0.values.contains(false) } }

    /// The header of a mapped cache file, after checking its magic and trailer.
    static func header(of file: MappedFile, path: String) throws(PackedWeightFileError) -> Header {
        func fail(_ message: String) -> PackedWeightFileError { PackedWeightFileError(path: path, message: message, damaged: true) }
        let bytes = file.bytes
        guard bytes.count >= 64 + trailerBytes, Array(bytes[0..<8]) == magic, Array(bytes[(bytes.count - 8)...]) == magic else {
            throw fail("not a packed-weight file, or cut short (\(bytes.count) bytes)")
        }
        let trailer = bytes.count - trailerBytes
        let offset = Int(clamping: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: trailer, as: UInt64.self)))
        let length = Int(clamping: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: trailer + 8, as: UInt64.self)))
        let sum = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: trailer + 16, as: UInt64.self))
        guard offset >= 64, length <= maxHeaderBytes, let end = Checked.sum(offset, length), end == trailer else {
            throw fail("the trailer points outside the file (header at \(offset), \(length) bytes)")
        }
        guard checksum(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]), name: "header", 0) == sum else {
            throw fail("the header does not match its checksum (damaged)")
        }
        do {
            return try JSONDecoder().decode(Header.self, from: Data(bytes[offset..<end]))
        } catch {
            throw fail("unreadable header (\(error))")
        }
    }

    package func tensor(_ name: String, shape: [Int]) -> Tensor? {
        let entry = Self.tensorPrefix + name
        guard checked.withLock({ $0[entry] }) != false, let t = tensors[name], t.shape == shape, let count = Checked.product(shape),
              let values = Elements<Float>(file: file, offset: t.offset, count: count) else { return nil }
        var sum: UInt64 = 0
        let tensor = Tensor(uncheckedShape: shape, initializingWith: { out in
            values.withUnsafeBufferPointer { src in
                sum = Self.checksum(UnsafeRawBufferPointer(src), name: name, 0, copyingTo: out.baseAddress.map(UnsafeMutableRawPointer.init))
            }
        })
        // Matching its checksum, it is what the writer stored: a tensor the checkpoint reader had found finite.
        checked.withLock { $0[entry] = sum == t.checksum }
        return sum == t.checksum ? tensor : nil
    }

    package func mappedTensor(_ name: String, shape: [Int]) -> Elements<Float>? {
        guard let t = tensors[name], t.shape == shape, let count = Checked.product(shape),
              let values = Elements<Float>(file: file, offset: t.offset, count: count),
              verified(Self.tensorPrefix + name, name: name) else { return nil }
        return values
    }

    /// The packed weight `name` and its bias, when its arrays match their checksums (else nil: the layer is then
    /// built from the checkpoint, and the load rewrites the file).
    package func packed(_ name: String) -> (PackedMatrix, Tensor?)? {
        guard let entry = packs[name], verified(name, name: name) else { return nil }
        return entry
    }

    /// Writes a cache file at `path` atomically (a temporary file beside it, flushed, then renamed): a crash or a
    /// full disk leaves either the old file or none, never a partial one under the name.
    static func write(to path: String, key: String, source: String, precision: Precision,
                      tensors: [(String, [Int], Elements<Float>)],
                      packs: [(PackedMatrix, Tensor?)]) throws(PackedWeightFileError) {
        func fail(_ message: String) -> PackedWeightFileError { PackedWeightFileError(path: path, message: message, damaged: false) }
        // Exclusive temporary: a concurrent writer never truncates or interleaves with this one.
        let file: PartialFile
        do { file = try PartialFile(destination: path) } catch { throw fail("cannot create a temporary: \(error.reason)") }
        var position = 0
        func put(_ bytes: UnsafeRawBufferPointer) {
            file.write(bytes, at: position)
            position += bytes.count
        }
        func pad() {
            let gap = (64 - position % 64) % 64
            if gap > 0 { [UInt8](repeating: 0, count: gap).withUnsafeBytes(put) }
        }
        (magic + [UInt8](repeating: 0, count: 56)).withUnsafeBytes(put)
        var header = Header(format: format, key: key, source: source, precision: precision.rawValue, tensors: [], packs: [])
        for (name, shape, values) in tensors {
            pad()
            values.withUnsafeBufferPointer { v in
                let bytes = UnsafeRawBufferPointer(v)
                header.tensors.append(TensorEntry(name: name, shape: shape, offset: position, checksum: checksum(bytes, name: name, 0)))
                put(bytes)
            }
        }
        for (matrix, bias) in packs {
            let name = matrix.name ?? ""
            var offsets: [Int] = [], sums: [UInt64] = []
            matrix.withStoredBytes { arrays in
                for (i, array) in arrays.enumerated() {
                    pad()
                    offsets.append(position)
                    sums.append(checksum(array, name: name, i + 1))
                    put(array)
                }
            }
            var biasOffset: Int?, biasSum: UInt64?
            if let bias {
                pad()
                biasOffset = position
                biasSum = bias.scalars.withUnsafeBytes { checksum($0, name: name, 9) }
                bias.scalars.withUnsafeBytes(put)
            }
            header.packs.append(PackEntry(name: name, k: matrix.k, n: matrix.n, kernel: matrix.kernel.rawValue,
                                          precision: matrix.precision.rawValue, group: matrix.storedGroup,
                                          offsets: offsets, checksums: sums, bias: biasOffset, biasChecksum: biasSum))
        }
        let json = (try? JSONEncoder().encode(header)).map { [UInt8]($0) } ?? []
        let headerOffset = position
        json.withUnsafeBytes(put)
        var trailer = [UInt8]()
        let headerSum = json.withUnsafeBytes { checksum($0, name: "header", 0) }
        for v in [UInt64(headerOffset), UInt64(json.count), headerSum] { withUnsafeBytes(of: v.littleEndian) { trailer += $0 } }
        (trailer + magic).withUnsafeBytes(put)
        do { try file.commit() } catch { throw fail("cannot write: \(error.reason)") }
    }

    /// What temporary files carry in their names, between the final name and a random suffix.
    static let partialMarker = PartialFile.partialMarker
}


/// A packed-weight cache file that cannot be used (it is then rebuilt) or written (the load goes on without it).
public struct PackedWeightFileError: Error, CustomStringConvertible {
    /// The cache file or directory concerned.
    public let path: String
    /// What is wrong with it.
    public let message: String
    /// Whether the file was read and found wrong (then it is replaced), rather than not readable at all.
    public let damaged: Bool
    public var description: String { "\(path): \(message)" }
}
