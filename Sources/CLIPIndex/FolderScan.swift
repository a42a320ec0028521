#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPImage
import Foundation

/// An image file found by a folder scan.
struct ScannedFile: Sendable {
    /// Absolute path.
    var path: String
    var size: Int64
    /// Modification time in nanoseconds since 1970.
    var modified: Int64
    /// Why it is recorded without being read (a link out of the indexed folders), or nil.
    var problem: String? = nil
    /// Named as a video container (its moments are embedded, not its bytes as one image).
    var isVideo = false
}

/// Walks folders for image and video files (by extension: the formats the decoders read). Directories named in `excluded`
/// are skipped wherever they are, as are hidden directories (`.git`, `.thumbnails`) and Synology's `@eaDir`
/// thumbnails. Symbolic links to files are followed when they lead to a file inside `folders` (the run's folders);
/// one that leads out (`photo.jpg -> /etc/hostname`) is recorded as failed and never read, since whatever the index
/// holds may be served. Links to directories are not followed (a link cycle would never end, and a link into
/// another indexed folder would index it twice).
struct FolderScan {
    var excluded: Set<String>
    /// Real paths of the folders being indexed.
    var folders: [String] = []
    /// Directories that could not be listed, with the reason: reported, never fatal.
    private(set) var unreadable: [(path: String, reason: String)] = []

    static let alwaysExcluded: Set<String> = ["@eaDir"]

    init(excluded: [String]) {
        self.excluded = Set(excluded).union(Self.alwaysExcluded)
    }

    /// The image and video files under `root` (absolute), sorted by path so runs are repeatable.
    mutating func files(under root: String, into out: inout [ScannedFile]) {
        var pending = [root]
        var found: [ScannedFile] = []
        while let dir = pending.popLast() {
            guard let handle = opendir(dir) else {
                unreadable.append((dir, String(cString: strerror(errno))))
                continue
            }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let path = dir == "/" ? "/" + name : dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                let kind = st.st_mode & S_IFMT
                if kind == S_IFDIR {
                    if name.hasPrefix(".") || excluded.contains(name) { continue }
                    pending.append(path)
                    continue
                }
                let isVideo = VideoReader.hasVideoExtension(name)
                guard isVideo || ImageFormat.hasImageExtension(name) else { continue }
                var problem: String?
                if kind == S_IFLNK {
                    guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
                    if let real = realpath(path, nil) {
                        defer { free(real) }
                        if !PhotoIndex.isInside(String(cString: real), folders: folders) {
                            problem = "a link to a file outside the indexed folders; not followed"
                        }
                    } else {
                        continue
                    }
                } else if kind != S_IFREG {
                    continue
                }
                found.append(ScannedFile(path: path, size: Int64(st.st_size), modified: modificationNanoseconds(st), problem: problem,
                                         isVideo: isVideo))
            }
        }
        found.sort { $0.path < $1.path }
        out += found
    }
}
