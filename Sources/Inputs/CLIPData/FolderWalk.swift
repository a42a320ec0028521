#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPFiles
import CLIPImage

/// A file a folder walk found.
package struct WalkedFile: Sendable, Equatable {
    /// The path: the root as given, then the names below it.
    package var path: String
    package var size: Int64
    /// Modification time in nanoseconds since 1970.
    package var modified: Int64
    /// Why it is to be recorded without being read (a link the walk's policy does not follow), or nil.
    package var problem: String? = nil
}

/// The one way swift-clip walks a user's folder, for the index, `clip embed`, training data and evaluation sets.
///
/// - Hidden directories and files (`.git`, `.thumbnails`, macOS's `._photo.jpg` and `.DS_Store`) are skipped, as are
///   directories named in `excluded` (Synology's `@eaDir` always).
/// - Links to directories are not followed (a link cycle would never end, and a link into another walked folder
///   would bring its files twice).
/// - A link to a file is followed when `followsLink` accepts its real path; otherwise it is returned with a
///   `problem` and never read (the index serves what it holds, so a link out of its folders must not be read).
/// - Directories that cannot be listed are collected in `unreadable`, never fatal.
/// - Paths come back sorted, so runs are repeatable.
package struct FolderWalk {
    package static let alwaysExcluded: Set<String> = ["@eaDir"]

    /// Directory names skipped wherever they are.
    package var excluded: Set<String>
    /// Whether a link to a file whose real path is this is followed.
    package var followsLink: @Sendable (String) -> Bool
    /// What a link `followsLink` refuses is recorded with.
    package var refusedLinkProblem = "a link to a file outside the folders walked; not followed"
    /// Directories that could not be listed, with the reason.
    package private(set) var unreadable: [(path: String, reason: String)] = []

    package init(excluded: some Sequence<String> = [], followsLink: @escaping @Sendable (String) -> Bool = { _ in true }) {
        self.excluded = Set(excluded).union(Self.alwaysExcluded)
        self.followsLink = followsLink
    }

    /// Whether a file or directory name is hidden.
    package static func isHidden(_ name: String) -> Bool { name.hasPrefix(".") }

    /// The regular files under `root` (recursively) whose names `matching` accepts, sorted by path.
    package mutating func files(under root: String, matching: (String) -> Bool) -> [WalkedFile] {
        var pending = [root]
        var found: [WalkedFile] = []
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
                if name == "." || name == ".." || Self.isHidden(name) { continue }
                let path = dir == "/" ? "/" + name : dir + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                let kind = st.st_mode & S_IFMT
                if kind == S_IFDIR {
                    if !excluded.contains(name) { pending.append(path) }
                    continue
                }
                guard matching(name) else { continue }
                var problem: String?
                if kind == S_IFLNK {
                    guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, let real = realpath(path, nil) else { continue }
                    defer { free(real) }
                    if !followsLink(String(cString: real)) { problem = refusedLinkProblem }
                } else if kind != S_IFREG {
                    continue
                }
                found.append(WalkedFile(path: path, size: Int64(st.st_size), modified: modificationNanoseconds(st), problem: problem))
            }
        }
        return found.sorted { $0.path < $1.path }
    }

    /// The images under `root` (recursively, sorted): the extensions the decoders read.
    package mutating func images(under root: String) -> [WalkedFile] {
        files(under: root, matching: ImageFormat.hasImageExtension)
    }
}
