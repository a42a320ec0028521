import CLIPFiles
import CLIPTensor
import CZlib

/// A read-only view of a zip archive (as `torch.save` and `torch.jit.save` write them), validated before use:
/// the central directory must lie inside the file, every entry's data range too, names may not be absolute or
/// contain `..`, and duplicate names are refused. Every offset and size from the file is combined with checked
/// arithmetic. Entries are read with `pread` when asked for and their CRC-32 is checked; deflated ones are inflated
/// with their declared size as a hard limit (a zip bomb cannot grow past what it declares, nor past the caller's
/// limit).
package struct ZipArchive: Sendable {
    package struct Entry: Sendable {
        package let name: String
        package let method: UInt16
        package let compressedSize: Int
        package let uncompressedSize: Int
        let dataOffset: Int
        let crc32: UInt32
    }

    package let file: RegularFile
    package let entries: [Entry]
    private let byName: [String: Int]
    /// Largest size any entry may be read or inflated to (zlib's 32-bit counts).
    package static let maxInflated = Int(UInt32.max)
    /// Largest central directory read (about 2 million entries).
    package static let maxCentralDirectory = 256 << 20

    package init(file: RegularFile) throws(WeightFileError) {
        let path = file.path
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: "zip", message: m)) }
        let (count, cdSize, cdOffset) = try Self.centralDirectory(of: file)
        let cd = ByteReader(bytes: try file.checkedRead(at: cdOffset, count: cdSize), base: cdOffset)
        var entries: [Entry] = []
        var names: [String: Int] = [:]
        var p = cdOffset
        for _ in 0..<count {
            let (entry, next) = try Self.entry(in: cd, at: p, of: file)
            guard names[entry.name] == nil else { throw fail("entry '\(entry.name)' appears twice") }
            names[entry.name] = entries.count
            entries.append(entry)
            p = next
        }
        self.file = file
        self.entries = entries
        self.byName = names
    }

    /// Finds the end-of-central-directory record (the last signature within the final 64 KiB + 22 bytes), follows
    /// a zip64 locator when a field is saturated, and checks the directory lies inside the file.
    /// - Returns: the entry count and the directory's size and offset.
    private static func centralDirectory(of file: RegularFile) throws(WeightFileError) -> (Int, Int, Int) {
        let path = file.path, size = file.size
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: "zip", message: m)) }
        guard size >= 22 else { throw fail("file is \(size) bytes, too short for a zip archive") }
        let tailStart = max(0, size - 22 - 65_535)
        let tail = ByteReader(bytes: try file.checkedRead(at: tailStart, count: size - tailStart), base: tailStart)
        var eocd = -1
        var i = size - 22
        while i >= tailStart {
            if tail.u32(i) == 0x0605_4B50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record (not a zip archive, or truncated)") }
        guard var count = tail.u16(eocd + 10), var cdSize = tail.u32(eocd + 12), var cdOffset = tail.u32(eocd + 16) else {
            throw fail("truncated end-of-central-directory record")
        }
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF, tail.u32(eocd - 20) == 0x0706_4B50 {
            guard let z = tail.u64(eocd - 12), Checked.range(offset: z, count: 56, within: size) else {
                throw fail("zip64 locator points outside the \(size)-byte file")
            }
            let record = ByteReader(bytes: try file.checkedRead(at: z, count: 56), base: z)
            guard record.u32(z) == 0x0606_4B50, let c = record.u64(z + 32), let s = record.u64(z + 40),
                  let o = record.u64(z + 48) else {
                throw fail("invalid zip64 end-of-central-directory record")
            }
            (count, cdSize, cdOffset) = (c, s, o)
        }
        guard Checked.range(offset: cdOffset, count: cdSize, within: size) else {
            throw fail("central directory [\(cdOffset), +\(cdSize)) lies outside the \(size)-byte file")
        }
        guard cdSize <= Self.maxCentralDirectory else {
            throw fail("central directory of \(cdSize) bytes is larger than the limit of \(Self.maxCentralDirectory)")
        }
        guard count <= cdSize / 46 + 1 else { throw fail("central directory claims \(count) entries in \(cdSize) bytes") }
        return (count, cdSize, cdOffset)
    }

    /// Reads the central-directory record at `p` and the local header it points to.
    /// - Returns: the validated entry and the offset of the next record.
    private static func entry(in cd: ByteReader, at p: Int, of file: RegularFile) throws(WeightFileError) -> (Entry, Int) {
        let path = file.path, size = file.size
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: "zip", message: m)) }
        guard cd.u32(p) == 0x0201_4B50, let method = cd.u16(p + 10), let crc = cd.u32(p + 16),
              var csize = cd.u32(p + 20), var usize = cd.u32(p + 24), let nlen = cd.u16(p + 28),
              let elen = cd.u16(p + 30), let clen = cd.u16(p + 32), var local = cd.u32(p + 42),
              let nameBytes = cd.bytes(p + 46, nlen) else {
            throw fail("corrupt central directory entry at offset \(p)")
        }
        guard let name = String(validating: nameBytes, as: UTF8.self) else {
            throw fail("entry name at offset \(p) is not valid UTF-8")
        }
        // Zip64 extra field (id 1) replaces whichever sizes/offset are saturated, in this order.
        var e = p + 46 + nlen
        let eEnd = e + elen
        while e + 4 <= eEnd, let id = cd.u16(e), let len = cd.u16(e + 2), e + 4 + len <= eEnd {
            if id == 1 {
                var q = e + 4
                if usize == 0xFFFF_FFFF, let v = cd.u64(q) { usize = v; q += 8 }
                if csize == 0xFFFF_FFFF, let v = cd.u64(q) { csize = v; q += 8 }
                if local == 0xFFFF_FFFF, let v = cd.u64(q) { local = v }
            }
            e += 4 + len
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard !name.isEmpty, !name.hasPrefix("/"), !name.contains("\\"), !parts.contains("..") else {
            throw fail("entry name '\(name)' is absolute or leaves the archive")
        }
        guard Checked.range(offset: local, count: 30, within: size) else {
            throw fail("entry '\(name)': local header at \(local) is outside the \(size)-byte file")
        }
        let header = ByteReader(bytes: try file.checkedRead(at: local, count: 30), base: local)
        guard header.u32(local) == 0x0403_4B50, let lnlen = header.u16(local + 26), let lelen = header.u16(local + 28) else {
            throw fail("entry '\(name)': no local header at \(local)")
        }
        let dataOffset = local + 30 + lnlen + lelen  // local ≤ size, the rest < 2¹⁸: no overflow
        guard Checked.range(offset: dataOffset, count: csize, within: size) else {
            throw fail("entry '\(name)': data [\(dataOffset), +\(csize)) runs past the end of the file")
        }
        guard method == 0 || method == 8 else {
            throw fail("entry '\(name)' uses compression method \(method); only stored and deflate are supported")
        }
        if method == 0 && csize != usize {
            throw fail("entry '\(name)' is stored but its sizes differ (\(csize) vs \(usize))")
        }
        let entry = Entry(name: name, method: UInt16(method), compressedSize: csize, uncompressedSize: usize,
                          dataOffset: dataOffset, crc32: UInt32(crc))
        return (entry, p + 46 + nlen + elen + clen)
    }

    package func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The entry's contents, CRC-checked. Deflated entries are inflated to exactly their declared size or refused;
    /// an entry declaring more than `limit` bytes is refused before anything is allocated.
    package func contents(_ e: Entry, limit: Int = ZipArchive.maxInflated) throws(WeightFileError) -> [UInt8] {
        let path = file.path
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: e.name, message: m)) }
        guard e.uncompressedSize <= min(limit, Self.maxInflated) else {
            throw fail("declares \(e.uncompressedSize) bytes uncompressed, more than the limit of \(min(limit, Self.maxInflated))")
        }
        let raw = try file.checkedRead(at: e.dataOffset, count: e.compressedSize)
        let out: [UInt8]
        if e.method == 0 {
            out = raw
        } else {
            // Deflate cannot compress better than about 1032:1, so a larger declared ratio is a bomb, not data.
            guard e.uncompressedSize <= e.compressedSize * 1032 + 1024 else {
                throw fail("declares \(e.uncompressedSize) bytes from \(e.compressedSize) compressed, a compression ratio deflate cannot reach (zip bomb)")
            }
            out = try inflated(raw, to: e.uncompressedSize, fail: fail)
        }
        guard zipCRC32(out) == e.crc32 else {
            throw fail("CRC mismatch: the entry's data does not match the checksum the archive records (corrupt or altered)")
        }
        return out
    }

    private func inflated(_ src: [UInt8], to size: Int, fail: (String) -> WeightFileError) throws(WeightFileError) -> [UInt8] {
        // zlib counts in 32-bit units; maxInflated keeps the output within them, this the input.
        guard src.count <= Int(UInt32.max) else { throw fail("deflated entry of \(src.count) bytes is too large") }
        var out = [UInt8](repeating: 0, count: size)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw fail("cannot initialise zlib")
        }
        defer { inflateEnd(&stream) }
        let rc: Int32 = src.withUnsafeBytes { s in
            out.withUnsafeMutableBytes { d in
                stream.next_in = UnsafeMutablePointer(mutating: s.bindMemory(to: Bytef.self).baseAddress)
                stream.avail_in = uInt(s.count)
                stream.next_out = d.bindMemory(to: Bytef.self).baseAddress
                stream.avail_out = uInt(d.count)
                return inflate(&stream, Z_FINISH)
            }
        }
        // Z_STREAM_END with all output used is the only success; more data than declared leaves Z_BUF_ERROR/Z_OK.
        guard rc == Z_STREAM_END, Int(stream.total_out) == size else {
            throw fail(rc == Z_STREAM_END
                ? "inflates to \(stream.total_out) bytes, not the declared \(size)"
                : "inflates past its declared \(size) bytes or is corrupt (zlib code \(rc))")
        }
        return out
    }
}

/// Little-endian fields of a byte buffer read from file offset `base`; every accessor returns nil instead of
/// reading outside the buffer.
struct ByteReader {
    let bytes: [UInt8]
    let base: Int

    private func index(_ offset: Int, _ count: Int) -> Int? {
        let i = offset - base
        return offset >= base && Checked.range(offset: i, count: count, within: bytes.count) ? i : nil
    }

    func u16(_ offset: Int) -> Int? {
        guard let i = index(offset, 2) else { return nil }
        return Int(bytes[i]) | Int(bytes[i + 1]) << 8
    }

    func u32(_ offset: Int) -> Int? {
        guard let a = u16(offset), let b = u16(offset + 2) else { return nil }
        return a | b << 16
    }

    /// A 64-bit field that must fit a non-negative Int.
    func u64(_ offset: Int) -> Int? {
        guard let a = u32(offset), let b = u32(offset + 4), b < (1 << 31) else { return nil }
        return a | b << 32
    }

    func bytes(_ offset: Int, _ count: Int) -> ArraySlice<UInt8>? {
        guard let i = index(offset, count) else { return nil }
        return bytes[i..<(i + count)]
    }
}

/// CRC-32 (ISO-HDLC, as zip entries and PNG chunks use it), computed by zlib in chunks its 32-bit lengths can take.
package func zipCRC32(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { raw in
        var crc: UInt = 0
        var offset = 0
        repeat {
            let n = min(1 << 30, raw.count - offset)
            crc = crc32(crc, raw.baseAddress.map { $0.assumingMemoryBound(to: Bytef.self) + offset }, uInt(n))
            offset += n
        } while offset < raw.count
        return UInt32(truncatingIfNeeded: crc)
    }
}
