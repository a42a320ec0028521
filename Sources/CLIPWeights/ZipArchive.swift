import CZlib

/// A read-only view of a zip archive (as `torch.save` and `torch.jit.save` write them), validated before use:
/// the central directory must lie inside the file, every entry's data range too, names may not be absolute or
/// contain `..`, and duplicate names are refused. Stored entries are read in place; deflated ones are inflated
/// with their declared size as a hard limit (a zip bomb cannot grow past what it declares, nor past `maxInflated`).
public struct ZipArchive: Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let method: UInt16
        public let compressedSize: Int
        public let uncompressedSize: Int
        let dataOffset: Int
        let crc32: UInt32
    }

    public let file: MappedFile
    public let entries: [Entry]
    private let byName: [String: Int]
    /// Largest size a deflated entry may inflate to.
    public static let maxInflated = 1 << 32

    public init(file: MappedFile) throws(WeightFileError) {
        let b = file.bytes
        let path = file.path
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: "zip", message: m)) }
        func u16(_ o: Int) -> Int? { o >= 0 && o + 2 <= b.count ? Int(b[o]) | Int(b[o + 1]) << 8 : nil }
        func u32(_ o: Int) -> Int? {
            guard let a = u16(o), let c = u16(o + 2) else { return nil }
            return a | c << 16
        }
        func u64(_ o: Int) -> Int? {
            guard let a = u32(o), let c = u32(o + 4), c < (1 << 31) else { return nil }
            return a | c << 32
        }
        // End of central directory: the last signature within the final 64 KiB + 22 bytes.
        guard b.count >= 22 else { throw fail("file is \(b.count) bytes, too short for a zip archive") }
        var eocd = -1
        var i = b.count - 22
        while i >= max(0, b.count - 22 - 65_535) {
            if b[i] == 0x50 && b[i + 1] == 0x4B && b[i + 2] == 0x05 && b[i + 3] == 0x06 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record (not a zip archive, or truncated)") }
        guard var count = u16(eocd + 10), var cdSize = u32(eocd + 12), var cdOffset = u32(eocd + 16) else {
            throw fail("truncated end-of-central-directory record")
        }
        // Zip64: the locator sits just before the EOCD and points at the zip64 EOCD record.
        if (count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF), eocd >= 20,
           u32(eocd - 20) == 0x0706_4B50, let z = u64(eocd - 12) {
            guard u32(z) == 0x0606_4B50, let c = u64(z + 32), let s = u64(z + 40), let o = u64(z + 48) else {
                throw fail("invalid zip64 end-of-central-directory record")
            }
            (count, cdSize, cdOffset) = (c, s, o)
        }
        guard cdOffset >= 0, cdSize >= 0, cdOffset <= b.count, cdSize <= b.count - cdOffset else {
            throw fail("central directory [\(cdOffset), +\(cdSize)) lies outside the \(b.count)-byte file")
        }
        guard count <= cdSize / 46 + 1 else { throw fail("central directory claims \(count) entries in \(cdSize) bytes") }
        var entries: [Entry] = []
        var names: [String: Int] = [:]
        var p = cdOffset
        for _ in 0..<count {
            guard u32(p) == 0x0201_4B50, let method = u16(p + 10), let crc = u32(p + 16),
                  var csize = u32(p + 20), var usize = u32(p + 24), let nlen = u16(p + 28),
                  let elen = u16(p + 30), let clen = u16(p + 32), var local = u32(p + 42),
                  p + 46 + nlen + elen + clen <= cdOffset + cdSize else {
                throw fail("corrupt central directory entry at offset \(p)")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: b[(p + 46)..<(p + 46 + nlen)]), as: UTF8.self)
            // Zip64 extra field (id 1) replaces whichever sizes/offset are saturated, in this order.
            var e = p + 46 + nlen
            let eEnd = e + elen
            while e + 4 <= eEnd, let id = u16(e), let len = u16(e + 2), e + 4 + len <= eEnd {
                if id == 1 {
                    var q = e + 4
                    if usize == 0xFFFF_FFFF, let v = u64(q) { usize = v; q += 8 }
                    if csize == 0xFFFF_FFFF, let v = u64(q) { csize = v; q += 8 }
                    if local == 0xFFFF_FFFF, let v = u64(q) { local = v }
                }
                e += 4 + len
            }
            let parts = name.split(separator: "/", omittingEmptySubsequences: false)
            guard !name.isEmpty, !name.hasPrefix("/"), !name.contains("\\"), !parts.contains("..") else {
                throw fail("entry name '\(name)' is absolute or leaves the archive")
            }
            guard names[name] == nil else { throw fail("entry '\(name)' appears twice") }
            guard let lnlen = u16(local + 26), let lelen = u16(local + 28), u32(local) == 0x0403_4B50 else {
                throw fail("entry '\(name)': local header at \(local) is missing or outside the file")
            }
            let dataOffset = local + 30 + lnlen + lelen
            guard dataOffset <= b.count, csize <= b.count - dataOffset else {
                throw fail("entry '\(name)': data [\(dataOffset), +\(csize)) runs past the end of the file")
            }
            guard method == 0 || method == 8 else {
                throw fail("entry '\(name)' uses compression method \(method); only stored and deflate are supported")
            }
            if method == 0 && csize != usize {
                throw fail("entry '\(name)' is stored but its sizes differ (\(csize) vs \(usize))")
            }
            names[name] = entries.count
            entries.append(Entry(name: name, method: UInt16(method), compressedSize: csize, uncompressedSize: usize,
                                 dataOffset: dataOffset, crc32: UInt32(crc)))
            p += 46 + nlen + elen + clen
        }
        self.file = file
        self.entries = entries
        self.byName = names
    }

    public func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The bytes of a stored entry, in place in the mapping (no copy); nil for compressed entries.
    public func storedBytes(_ e: Entry) -> UnsafeRawBufferPointer? {
        guard e.method == 0 else { return nil }
        return UnsafeRawBufferPointer(rebasing: file.bytes[e.dataOffset..<(e.dataOffset + e.compressedSize)])
    }

    /// The entry's contents; deflated entries are inflated to exactly their declared size or refused.
    public func contents(_ e: Entry) throws(WeightFileError) -> [UInt8] {
        if let stored = storedBytes(e) { return Array(stored) }
        let path = file.path
        func fail(_ m: String) -> WeightFileError { WeightFileError(file: path, .invalidEntry(tensor: e.name, message: m)) }
        // Deflate cannot compress better than about 1032:1, so a larger declared ratio is a bomb, not data.
        guard e.uncompressedSize <= e.compressedSize * 1032 + 1024 else {
            throw fail("declares \(e.uncompressedSize) bytes from \(e.compressedSize) compressed, a compression ratio deflate cannot reach (zip bomb)")
        }
        guard e.uncompressedSize <= Self.maxInflated else {
            throw fail("declares \(e.uncompressedSize) bytes uncompressed, more than the limit of \(Self.maxInflated)")
        }
        var out = [UInt8](repeating: 0, count: e.uncompressedSize)
        let src = UnsafeRawBufferPointer(rebasing: file.bytes[e.dataOffset..<(e.dataOffset + e.compressedSize)])
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw fail("cannot initialise zlib")
        }
        defer { inflateEnd(&stream) }
        let rc: Int32 = out.withUnsafeMutableBytes { dst in
            stream.next_in = UnsafeMutablePointer(mutating: src.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(src.count)
            stream.next_out = dst.bindMemory(to: Bytef.self).baseAddress
            stream.avail_out = uInt(dst.count)
            return inflate(&stream, Z_FINISH)
        }
        // Z_STREAM_END with all output used is the only success; more data than declared leaves Z_BUF_ERROR/Z_OK.
        guard rc == Z_STREAM_END, Int(stream.total_out) == e.uncompressedSize else {
            throw fail(rc == Z_STREAM_END
                ? "inflates to \(stream.total_out) bytes, not the declared \(e.uncompressedSize)"
                : "inflates past its declared \(e.uncompressedSize) bytes or is corrupt (zlib code \(rc))")
        }
        guard zipCRC32(out) == e.crc32 else { throw fail("CRC mismatch") }
        return out
    }
}

/// CRC-32 (ISO-HDLC, as zip entries and PNG chunks use it), computed by zlib.
package func zipCRC32(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { UInt32(crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count))) }
}
