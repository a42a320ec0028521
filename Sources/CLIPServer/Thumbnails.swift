import CLIPIndex
import Foundation

/// Thumbnails for the search page and clip-front: made off Swift's cooperative threads (a page asks for sixty at
/// once, and decoding a 12-megapixel JPEG takes a tenth of a second: on the two threads that also admit and refuse
/// requests, that would stall every route), two at a time, and kept in a small cache keyed by the file's size and
/// modification time, so a changed file gets a new thumbnail.
final class Thumbnails: @unchecked Sendable {
    struct Key: Hashable {
        var path: String
        var side: Int
        var size: Int64
        var modified: Int64
    }

    private let lock = NSLock()
    private var cache: [Key: [UInt8]] = [:]
    private var order: [Key] = []
    private var bytes = 0
    private let budget: Int
    private let queue = DispatchQueue(label: "clip.thumbnails", attributes: .concurrent)
    private let slots: DispatchSemaphore

    init(budget: Int = 64 << 20, concurrent: Int = 2) {
        self.budget = budget
        slots = DispatchSemaphore(value: concurrent)
    }

    /// A PNG of `path` at most `side` pixels on its longer side, or nil when the file cannot be read or decoded.
    func png(_ path: String, side: Int) async -> [UInt8]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let key = Key(path: path, side: side, size: Int64(st.st_size), modified: modificationNanoseconds(st))
        if let hit = lock.withLock({ cache[key] }) { return hit }
        let made: [UInt8]? = await withCheckedContinuation { continuation in
            queue.async { [slots] in
                slots.wait()
                defer { slots.signal() }
                continuation.resume(returning: ContactSheet.thumbnailPNG(path, side: side))
            }
        }
        if let made { store(made, for: key) }
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
