/// Paths compared as the file system compares them: byte for byte. Swift's `String` comparison treats canonically
/// equivalent spellings as equal ("é" as one scalar or as "e" and a combining accent), while Linux holds them as two
/// names, so a folder check on Strings would let a folder named one way stand for its sibling named the other.

/// The folder a path is in ("." for a bare name, "/" for a path at the root).
package func parentDirectory(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// Whether `path` lies strictly inside `folder` (both absolute, without trailing slashes; "/" contains every other
/// absolute path), compared byte for byte.
package func isPath(_ path: String, inside folder: String) -> Bool {
    if folder == "/" { return path.utf8.first == UInt8(ascii: "/") && path.utf8.count > 1 }
    let p = path.utf8, f = folder.utf8
    guard p.count > f.count + 1, p.starts(with: f) else { return false }
    return p[p.index(p.startIndex, offsetBy: f.count)] == UInt8(ascii: "/")
}

/// Whether two paths are the same bytes.
package func isSamePath(_ a: String, _ b: String) -> Bool {
    a.utf8.elementsEqual(b.utf8)
}
