#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CLIPData
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

/// The index's walk of its folders for image and video files (`FolderWalk`'s rules: hidden and excluded directories
/// skipped, links to directories not followed). A link to a file is followed only when it leads to a file inside
/// `folders` (the run's folders); one that leads out (`photo.jpg -> /etc/hostname`) is recorded as failed and never
/// read, since whatever the index holds may be served.
struct FolderScan {
    var excluded: Set<String>
    /// Real paths of the folders being indexed.
    var folders: [String] = []
    /// Directories that could not be listed, with the reason: reported, never fatal.
    private(set) var unreadable: [(path: String, reason: String)] = []

    init(excluded: [String]) {
        self.excluded = Set(excluded)
    }

    /// The image and video files under `root` (absolute), sorted by path so runs are repeatable.
    mutating func files(under root: String, into out: inout [ScannedFile]) {
        let inside = folders
        var walk = FolderWalk(excluded: excluded) { PhotoIndex.isInside($0, folders: inside) }
        walk.refusedLinkProblem = "a link to a file outside the indexed folders; not followed"
        let found = walk.files(under: root) { VideoReader.hasVideoExtension($0) || ImageFormat.hasImageExtension($0) }
        unreadable += walk.unreadable
        out += found.map {
            ScannedFile(path: $0.path, size: $0.size, modified: $0.modified, problem: $0.problem,
                        isVideo: VideoReader.hasVideoExtension($0.path))
        }
    }
}
