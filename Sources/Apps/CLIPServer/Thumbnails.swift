import CLIPFiles
import CLIPImage
import CLIPIndex
import Foundation

/// Thumbnails for the search page and clip-front, kept in a small cache keyed by the file's size and modification
/// time (a changed file gets a new one). They are made on the request-work pool within the same pixel budget as
/// request images: a page asks for sixty at once, and a library's 100-megapixel photo decodes to 400 MB.
final class Thumbnails: @unchecked Sendable {
    // @unchecked: `cache`, `order` and `bytes` are touched under `lock` only.
    struct Key: Hashable {
        var path: String
        var side: Int
        var size: Int64
        var modified: Int64
        /// A video's moment in seconds; -1 for a photo.
        var time: Double
    }

    private let lock = NSLock()
    private var cache: [Key: [UInt8]] = [:]
    private var order: [Key] = []
    private var bytes = 0
    private let budget: Int
    private let work: RequestWork

    init(work: RequestWork, budget: Int = 64 << 20) { (self.work, self.budget) = (work, budget) }

    /// A PNG of `path` (of a video, its frame at `time` seconds), `side` pixels square, or nil when the file cannot
    /// be read or decoded.
    func png(_ path: String, side: Int, time: Double? = nil) async throws -> [UInt8]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let key = Key(path: path, side: side, size: Int64(st.st_size), modified: modificationNanoseconds(st), time: time ?? -1)
        if let hit = lock.withLock({ cache[key] }) { return hit }
        let made = if let time { try await work.videoThumbnail(path, side: side, time: time) } else {
            try await work.thumbnail(path, side: side)
        }
        guard let made else { return nil }
        store(made, for: key)
        return made
    }

    private func store(_ png: [UInt8], for key: Key) {
        lock.withLock {
            guard png.count <= budget / 4, cache[key] == nil else { return }
            cache[key] = png
            order.append(key)
            bytes += png.count
            while bytes > budget, !order.isEmpty {
                let old = order.removeFirst()
                bytes -= cache.removeValue(forKey: old)?.count ?? 0
            }
        }
    }
}
