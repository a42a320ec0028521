#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A regular file mapped read-only into memory, unmapped when the last value using it is gone. Packed weights read
/// from a cache file point into it, so a model loads without copying or packing them: the kernel pages them in as
/// the layers first run, and several processes share the pages.
package final class MappedFile: @unchecked Sendable {  // immutable; the pages are never written
    /// The file's path, for messages.
    package let path: String
    /// The file's length in bytes.
    package let size: Int
    private let base: UnsafeRawPointer?

    /// Maps `path` (a regular file). Throws with the reason when it cannot be opened or mapped.
    package init(path: String) throws(TensorError) {
        self.path = path
        // Non-blocking: a FIFO put in a file's place must not hang the open (the type is checked next).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { throw .mappedFile("\(path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw .mappedFile("\(path): not a regular file")
        }
        size = Int(st.st_size)
        guard size > 0 else { base = nil; return }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw .mappedFile("\(path): cannot map (\(String(cString: strerror(errno))))") }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// The whole file.
    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: base == nil ? 0 : size) }
}

/// Read-only elements of a packed weight: an array of its own, or `count` elements of a mapped file.
package struct Elements<T: BitwiseCopyable & Sendable>: Sendable {
    private enum Backing: Sendable {
        case array([T])
        case mapped(MappedFile, offset: Int)
    }
    private let backing: Backing
    /// Number of elements.
    package let count: Int

    package init(_ array: [T]) {
        backing = .array(array)
        count = array.count
    }

    /// `count` elements at byte `offset` of `file`; nil unless they lie inside it at an offset aligned for `T`.
    package init?(file: MappedFile, offset: Int, count: Int) {
        guard offset >= 0, count >= 0, offset % MemoryLayout<T>.alignment == 0,
              let bytes = Checked.product(count, MemoryLayout<T>.stride), let end = Checked.sum(offset, bytes),
              end <= file.size else { return nil }
        backing = .mapped(file, offset: offset)
        self.count = count
    }

    package func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
        switch backing {
        case .array(let a):
            return try a.withUnsafeBufferPointer(body)
        case .mapped(let file, let offset):
            let start = file.bytes.baseAddress.map { ($0 + offset).assumingMemoryBound(to: T.self) }
            return try withExtendedLifetime(file) { try body(UnsafeBufferPointer(start: start, count: count)) }
        }
    }

    package subscript(i: Int) -> T { withUnsafeBufferPointer { $0[i] } }
}
