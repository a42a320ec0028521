#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be read or written; `description` starts with the path.
package struct FileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file the problem concerns.
    package let path: String
    /// What went wrong.
    package let problem: Problem

    /// What went wrong, each case with what a user needs to fix it.
    package enum Problem: Equatable, Sendable {
        case noSuchFile
        case noSuchDirectory(String)
        case isDirectory
        /// A FIFO, device or socket where a file's contents are expected.
        case notRegular(kind: String)
        case permissionDenied
        case tooLarge(size: Int, limit: Int)
        /// The file is shorter than it was when opened, or than a record in it says.
        case truncated(needed: Int, size: Int)
        case notUTF8Path
        case system(operation: String, message: String)
    }

    /// An error for `path`.
    package init(path: String, _ problem: Problem) {
        self.path = path
        self.problem = problem
    }

    /// The problem alone, for callers that put the path in their own message.
    package var reason: String {
        switch problem {
        case .noSuchFile: return "no such file"
        case .noSuchDirectory(let d): return "no such directory '\(d)'"
        case .isDirectory: return "is a directory"
        case .notRegular(let kind): return "not a regular file (\(kind))"
        case .permissionDenied: return "permission denied"
        case .tooLarge(let s, let l): return "file is \(s) bytes, more than the limit of \(l)"
        case .truncated(let n, let s): return "file ends at byte \(s) but \(n) bytes are needed (truncated, or changed while being read)"
        case .notUTF8Path: return "the path is not valid UTF-8"
        case .system(let op, let m): return "\(op): \(m)"
        }
    }

    package var description: String { "\(path): \(reason)" }

    /// The problem an `errno` from `operation` on `path` describes.
    static func from(errno code: Int32, path: String, operation: String) -> FileError {
        switch code {
        case ENOENT: return FileError(path: path, .noSuchFile)
        case EISDIR: return FileError(path: path, .isDirectory)
        case EACCES, EPERM: return FileError(path: path, .permissionDenied)
        case ENOTDIR: return FileError(path: path, .noSuchDirectory(parentDirectory(of: path)))
        default: return FileError(path: path, .system(operation: operation, message: systemMessage(code)))
        }
    }
}

/// The C library's message for an `errno` value.
func systemMessage(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error \(code)" }
    return String(decoding: UnsafeRawBufferPointer(start: text, count: strlen(text)), as: UTF8.self)
}

/// What kind of non-regular file `mode` describes, for messages.
func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFIFO: return "a FIFO"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    case S_IFDIR: return "a directory"
    case S_IFLNK: return "a symbolic link"
    default: return "not a regular file"
    }
}

/// A regular file opened for reading, read with `pread` at checked offsets.
///
/// Opening never blocks: a FIFO or device where a file is expected is refused by its kind (a FIFO opened the usual
/// way would wait forever for a writer). Reads copy into memory the caller owns, so a file truncated or rewritten by
/// another process gives an error naming the shortfall — never a SIGBUS, as reading through a mapping would.
package final class RegularFile: Sendable {
    /// The path the file was opened by.
    package let path: String
    /// Size in bytes when the file was opened.
    package let size: Int
    private let fd: Int32

    /// Opens `path` for reading without blocking; refuses directories, FIFOs, devices and sockets.
    package init(path: String) throws(FileError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw FileError.from(errno: errno, path: path, operation: "open") }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw FileError.from(errno: code, path: path, operation: "stat")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw FileError(path: path, st.st_mode & S_IFMT == S_IFDIR ? .isDirectory : .notRegular(kind: fileKind(st.st_mode)))
        }
        // Regular files never block; blocking mode again for plain reads.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        self.fd = fd
        self.size = Int(st.st_size)
    }

    deinit { close(fd) }

    /// The open descriptor, for C readers that pull bytes as they need them (a video is never read whole); valid
    /// while this object lives.
    package var descriptor: Int32 { fd }

    /// `count` bytes at `offset`, which must lie within the file as opened.
    package func read(at offset: Int, count: Int) throws(FileError) -> [UInt8] {
        try read(at: offset, count: count, as: UInt8.self)
    }

    /// `count` values of a trivial type stored at `offset` in this machine's byte order (callers convert).
    package func read<T: BitwiseCopyable>(at offset: Int, count: Int, as _: T.Type) throws(FileError) -> [T] {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !overflow, offset >= 0, offset <= size, bytes <= size - offset else {
            let needed = overflow ? Int.max : offset.addingReportingOverflow(bytes).partialValue
            throw FileError(path: path, .truncated(needed: max(needed, 0), size: size))
        }
        var failure: FileError?
        let values = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            adviseHugePages(raw)
            var done = 0
            while done < bytes {
                let n = pread(fd, raw.baseAddress! + done, bytes - done, off_t(offset + done))
                if n < 0 && errno == EINTR { continue }
                if n < 0 {
                    failure = FileError.from(errno: errno, path: path, operation: "read")
                    break
                }
                if n == 0 {
                    failure = FileError(path: path, .truncated(needed: offset + bytes, size: offset + done))
                    break
                }
                done += n
            }
            initialized = failure == nil ? count : 0
        }
        if let failure { throw failure }
        return values
    }

    /// The whole file, refused when it is larger than `limit` bytes.
    package func readAll(limit: Int) throws(FileError) -> [UInt8] {
        guard size <= limit else { throw FileError(path: path, .tooLarge(size: size, limit: limit)) }
        return try read(at: 0, count: size)
    }

    /// Opens and reads a whole regular file of at most `limit` bytes.
    package static func contents(of path: String, limit: Int) throws(FileError) -> [UInt8] {
        try RegularFile(path: path).readAll(limit: limit)
    }
}

/// Asks the kernel to back a large, fresh buffer with transparent huge pages before it is first written: loading
/// a 600 MB checkpoint otherwise takes a page fault (and a zeroed page) every 4 KiB, a third of the load's time.
/// Only advice: where huge pages are off or unsupported, nothing changes.
package func adviseHugePages(_ buffer: UnsafeMutableRawBufferPointer) {
    #if os(Linux)
    let huge = 2 << 20
    guard let base = buffer.baseAddress, buffer.count >= 2 * huge else { return }
    let start = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
    let end = (Int(bitPattern: base) + buffer.count) & ~(huge - 1)
    guard end > start, let p = UnsafeMutableRawPointer(bitPattern: start) else { return }
    _ = madvise(p, end - start, 14)  // MADV_HUGEPAGE
    #endif
}

/// A file's modification time in nanoseconds since 1970, from its `stat`.
package func modificationNanoseconds(_ st: stat) -> Int64 {
    #if canImport(Darwin)
    Int64(st.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(st.st_mtimespec.tv_nsec)
    #else
    Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    #endif
}
