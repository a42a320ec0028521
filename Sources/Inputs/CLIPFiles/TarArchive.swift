/// The regular-file members of a tar archive (ustar / GNU headers, as webdataset shards are written), read from
/// the headers alone: names and where their bytes are.
package enum TarArchive {
    /// One stored file.
    package struct Member: Sendable, Equatable {
        /// Path inside the archive (the ustar prefix joined to the name).
        package var name: String
        /// Offset of its bytes in the archive.
        package var offset: Int
        package var size: Int

        /// webdataset's grouping: the key is the path up to the first dot of the file name (`dir/000123` for
        /// `dir/000123.jpg`), the extension the rest, lowercased (`jpg`, `txt`, `seg.png`); nil without a dot.
        package var sample: (key: String, extension: String)? {
            let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
            guard let dot = name[slash...].firstIndex(of: ".") else { return nil }
            let dir = slash == name.startIndex ? "" : String(name[..<name.index(before: slash)])
            return (dir + "/" + name[slash..<dot], name[name.index(after: dot)...].lowercased())
        }
    }

    /// Every regular file in `file`, in stored order. A header whose size field is not octal, or a member that
    /// runs past the end of the file, is an error naming the offset; the end-of-archive blocks or the file's end
    /// stop the walk.
    package static func members(of file: RegularFile) throws(FileError) -> [Member] {
        var out: [Member] = []
        var offset = 0
        while offset + 512 <= file.size {
            let header = try file.read(at: offset, count: 512)
            if header.allSatisfy({ $0 == 0 }) { break }
            let name = cString(header[0..<100]), prefix = cString(header[345..<500])
            guard let size = octal(header[124..<136]) else {
                throw FileError(path: file.path, .system(operation: "read the tar archive", message: "the header at offset \(offset) has an invalid size field"))
            }
            let data = offset + 512
            guard size <= file.size - data else {
                throw FileError(path: file.path, .system(operation: "read the tar archive", message: "member '\(name)' at offset \(offset) runs past the end of the archive (\(size) bytes)"))
            }
            if header[156] == UInt8(ascii: "0") || header[156] == 0 {
                out.append(Member(name: prefix.isEmpty ? name : "\(prefix)/\(name)", offset: data, size: size))
            }
            offset = data + (size + 511) / 512 * 512
        }
        return out
    }

    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// A tar header's octal number field (NUL- or space-terminated, leading spaces allowed); nil for garbage.
    package static func octal(_ bytes: ArraySlice<UInt8>) -> Int? {
        var value = 0, digits = 0
        for b in bytes {
            if b == 0 || b == 32 { if digits > 0 { break } else { continue } }
            guard b >= 48, b <= 55, value < 1 << 40 else { return nil }
            value = value * 8 + Int(b - 48)
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}
