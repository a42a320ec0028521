import CLIPFiles
import CLIPImage
import CLIPIndex
import CLIPTensor
import Foundation

/// The CPU work of a request that is not the model's (decoding images, tokenizing texts), run on a pool of its own
/// rather than on Swift's cooperative threads. Those threads also run every route: with two cores, two requests
/// decoding 12000 × 12000 images there would leave `/healthz` unanswered until they finish. Images are also
/// bounded in pixels: one image (`maxImagePixels`, from its header, before anything is decoded), one request
/// (`maxRequestPixels`) and all decoding at once (`decodingPixels`; a request waits its turn, at most `wait`, then
/// gets 503).
final class RequestWork: Sendable {
    let maxImagePixels: Int
    let maxRequestPixels: Int
    let wait: Duration
    private let budget: PixelBudget
    private let pool: OperationQueue

    init(options: ServerOptions) {
        maxImagePixels = options.maxImagePixels
        maxRequestPixels = options.maxRequestPixels
        wait = options.decodeWait
        budget = PixelBudget(options.decodingPixels)
        pool = OperationQueue()
        pool.name = "clip.request-work"
        pool.maxConcurrentOperationCount = max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Runs `body` on the pool and returns its result to the waiting task.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.addOperation { continuation.resume(with: Result { try body() }) }
        }
    }

    /// The images' pixel counts from their headers, checked against the per-image and per-request limits; nothing
    /// is decoded. `names` say what errors call each image.
    func checkedSizes(_ images: [[UInt8]], names: (Int) -> String) throws(RequestError) -> [(width: Int, height: Int)] {
        var total = 0
        return try images.enumerated().map { (i, bytes) throws(RequestError) in
            guard let size = ImageFormat.dimensions(bytes) else {
                throw RequestError("\(names(i)): not a JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF image (\(bytes.count) bytes)")
            }
            // Headers are checked to 2^31 - 1 a side, but a product is computed only where it cannot trap.
            guard let pixels = Checked.product(size.width, size.height), pixels <= maxImagePixels else {
                throw RequestError("\(names(i)): the image is \(size.width)×\(size.height) pixels; this server decodes at most \(maxImagePixels) (clip serve --max-image-pixels)", status: 413)
            }
            total = Checked.sum(total, pixels) ?? .max
            guard total <= maxRequestPixels else {
                throw RequestError("the request's images have more than \(maxRequestPixels) pixels in all (at \(names(i))); send them in several requests", status: 413)
            }
            return size
        }
    }

    /// A PNG thumbnail of a library file, made on the pool within the pixel budget (a file larger than the budget
    /// takes all of it, so it is decoded alone); nil when the file cannot be read or decoded.
    func thumbnail(_ path: String, side: Int) async throws -> [UInt8]? {
        try await decodingLibraryFile(path) { bytes in ContactSheet.thumbnailPNG(encoded: bytes, name: path, side: side) }
    }

    /// A PNG preview of a library photo (longer side at most `longest`), decoded within the pixel budget; nil when
    /// it cannot be read or decoded.
    func preview(_ path: String, longest: Int) async throws -> [UInt8]? {
        let limit = maxImagePixels
        return try await decodingLibraryFile(path) { bytes in
            guard let image = try? decodeImage(bytes, name: path, maxPixels: limit) else { return nil }
            return try? ContactSheet.previewPNG(image, longest: longest, name: path)
        }
    }

    /// `make` of a library file's bytes, run once the file's pixels fit the budget; nil when it cannot be read.
    private func decodingLibraryFile(_ path: String, _ make: @escaping @Sendable ([UInt8]) -> [UInt8]?) async throws -> [UInt8]? {
        // The size from the header first (its first 256 KiB; EXIF may push a JPEG's frame header far in), so a file
        // is read whole only once its pixels have room: sixty requests for large photos do not hold sixty files.
        guard let head = try? await run({ () throws -> [UInt8] in
            let file = try RegularFile(path: path)
            return try file.read(at: 0, count: min(file.size, 256 << 10))
        }) else { return nil }
        // Unknown from the prefix: the most it could be, so it is decoded alone.
        let cost = ImageFormat.dimensions(head).flatMap { Checked.product($0.width, $0.height) } ?? .max
        return try await decoding(pixels: cost) {
            guard let bytes = try? ImagePreprocessor.readImageFile(path) else { return nil }
            return make(bytes)
        }
    }

    /// A PNG thumbnail of a library video's frame at `time` seconds (its poster at 0), decoded within the pixel
    /// budget like a photo's; nil when the video cannot be read or decoded.
    func videoThumbnail(_ path: String, side: Int, time: Double) async throws -> [UInt8]? {
        let limit = maxImagePixels
        guard let info = try? await run({ try VideoReader(path: path, interval: 1e9, sceneThreshold: 0, maxPixels: limit).info }) else {
            return nil
        }
        // A time past the end would decode to the end first: the poster instead.
        let time = info.duration.map { time <= $0 + 1 } ?? true ? time : 0
        return try await decoding(pixels: Checked.product(info.width, info.height) ?? .max) {
            // A page asks for sixty at once: a video that takes longer than this to reach its frame is a grey square.
            guard let frame = try? VideoReader.frame(of: path, at: time, maxPixels: limit, secondsPerFrame: 10) else { return nil }
            return ContactSheet.thumbnailPNG(frame.image, name: path, side: side)
        }
    }

    /// Runs `body` on the pool once `pixels` fit the shared budget (503 after `wait`), giving them back after.
    private func decoding<T: Sendable>(pixels: Int, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        let cost = max(1, pixels)
        guard await budget.acquire(cost, within: wait) else {
            throw RequestError("the server is decoding as many pixels as it may at once; retry in a few seconds", status: 503)
        }
        defer { budget.release(cost) }
        return try await run(body)
    }

    /// Preprocessed pixels of each image, decoded on the pool one at a time within the shared pixel budget.
    func pixels(_ images: [[UInt8]], names: @escaping @Sendable (Int) -> String,
                preprocessor: ImagePreprocessor) async throws -> [(pixels: [Float], width: Int, height: Int)] {
        let sizes = try checkedSizes(images, names: names)
        var out: [(pixels: [Float], width: Int, height: Int)] = []
        out.reserveCapacity(images.count)
        for (i, bytes) in images.enumerated() {
            let decoded = try await decoding(pixels: sizes[i].width * sizes[i].height) {
                do { return try preprocessor.pixels(encoded: bytes, name: names(i)) } catch { throw RequestError("\(error)") }
            }
            out.append((decoded, sizes[i].width, sizes[i].height))
        }
        return out
    }
}

/// A count of pixels shared by every request's decoding: `acquire` waits (without holding a thread) until its
/// amount fits, first come first served, or gives up after a while.
final class PixelBudget: @unchecked Sendable {
    // @unchecked: `available`, `waiters` and a waiter's `timer` are touched under `lock` only (a waiter's timer is
    // set before it is queued).
    private final class Waiter {
        let id: UInt64
        let amount: Int
        let continuation: CheckedContinuation<Bool, Never>
        /// Gives up for it after its wait; cancelled when it is admitted first.
        var timer: Task<Void, Never>?

        init(id: UInt64, amount: Int, continuation: CheckedContinuation<Bool, Never>) {
            (self.id, self.amount, self.continuation) = (id, amount, continuation)
        }

        func resume(_ admitted: Bool) {
            timer?.cancel()
            continuation.resume(returning: admitted)
        }
    }

    private let lock = NSLock()
    private let capacity: Int
    private var available: Int
    private var waiters: [Waiter] = []
    private var nextID: UInt64 = 0

    init(_ capacity: Int) { (self.capacity, available) = (capacity, capacity) }

    /// Takes `amount` (at most the capacity), waiting at most `within`; false when it did not fit in time.
    func acquire(_ amount: Int, within: Duration) async -> Bool {
        let amount = min(amount, capacity)
        let id: UInt64? = lock.withLock {
            if waiters.isEmpty && available >= amount {
                available -= amount
                return nil
            }
            nextID += 1
            return nextID
        }
        guard let id else { return true }
        return await withCheckedContinuation { continuation in
            let waiter = Waiter(id: id, amount: amount, continuation: continuation)
            let queued = lock.withLock { () -> Bool in
                // Room may have come back between the first look and now.
                if waiters.isEmpty && available >= amount {
                    available -= amount
                    return false
                }
                waiter.timer = Task { [weak self] in
                    guard (try? await Task.sleep(for: within)) != nil else { return }
                    self?.expire(id)
                }
                waiters.append(waiter)
                return true
            }
            if !queued { continuation.resume(returning: true) }
        }
    }

    func release(_ amount: Int) {
        let ready: [Waiter] = lock.withLock {
            available = min(capacity, available + min(amount, capacity))
            return admitWaiting()
        }
        for w in ready { w.resume(true) }
    }

    private func expire(_ id: UInt64) {
        let (expired, ready): (Waiter?, [Waiter]) = lock.withLock {
            guard let i = waiters.firstIndex(where: { $0.id == id }) else { return (nil, []) }
            let w = waiters.remove(at: i)
            // The head of the line may have been the one holding the others back.
            return (w, admitWaiting())
        }
        expired?.continuation.resume(returning: false)
        for w in ready { w.resume(true) }
    }

    /// Waiters that fit now, in order; call with `lock` held.
    private func admitWaiting() -> [Waiter] {
        var ready: [Waiter] = []
        while let first = waiters.first, first.amount <= available {
            available -= first.amount
            ready.append(waiters.removeFirst())
        }
        return ready
    }
}
