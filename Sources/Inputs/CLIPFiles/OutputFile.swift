#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a command's output file so that nothing is lost or half-written.
///
/// A regular file (or a new one) is replaced atomically: the bytes go to a temporary file in the same directory,
/// are flushed to disk, and the temporary is renamed over the target, so readers see the old contents or the new,
/// never a partial file, and a full disk leaves the old file as it was. A symbolic link is followed (its target is
/// replaced; the link stays a link). A FIFO or a device (`/dev/null`, `/dev/stdout`) is written in place: renaming
/// a regular file over it would destroy the node. A directory is refused.
package enum OutputFile {
    /// Writes `bytes` to `path` as described above: atomically for regular files, in place for FIFOs and devices.
    package static func write(_ bytes: [UInt8], to path: String) throws(FileError) {
        let target = try resolvedTarget(path)
        var st = stat()
        if lstat(target, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFDIR: throw FileError(path: path, .isDirectory)
            case S_IFREG: break
            default: return try writeInPlace(bytes, to: target, reportedAs: path, kind: fileKind(st.st_mode))
            }
        } else if errno != ENOENT {
            throw FileError.from(errno: errno, path: path, operation: "stat")
        }
        try replaceAtomically(bytes, target: target, reportedAs: path, existingMode: st.st_mode & S_IFMT == S_IFREG ? st.st_mode : nil)
    }

    /// The path a write to `path` lands on: symbolic links followed (up to 32 hops), relative targets resolved
    /// against their link's directory.
    static func resolvedTarget(_ path: String) throws(FileError) -> String {
        var current = path
        for _ in 0..<32 {
            var st = stat()
            guard lstat(current, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &buffer, buffer.count - 1)
            guard n >= 0 else { throw FileError.from(errno: errno, path: path, operation: "readlink") }
            let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = link.hasPrefix("/") ? link : parentDirectory(of: current) + "/" + link
        }
        throw FileError(path: path, .system(operation: "resolve", message: "too many levels of symbolic links"))
    }

    static func writeInPlace(_ bytes: [UInt8], to target: String, reportedAs path: String, kind: String) throws(FileError) {
        // Non-blocking open: a FIFO without a reader fails at once (ENXIO) instead of waiting forever.
        let fd = open(target, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENXIO { throw FileError(path: path, .system(operation: "open", message: "\(kind) with no reader")) }
            throw FileError.from(errno: errno, path: path, operation: "open")
        }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        try writeAll(fd, bytes, path: path)
    }

    static func replaceAtomically(_ bytes: [UInt8], target: String, reportedAs path: String,
                                  existingMode: mode_t?) throws(FileError) {
        let directory = parentDirectory(of: target)
        var st = stat()
        guard stat(directory, &st) == 0 else {
            throw errno == ENOENT || errno == ENOTDIR ? FileError(path: path, .noSuchDirectory(directory))
                                                      : FileError.from(errno: errno, path: path, operation: "stat")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw FileError(path: path, .noSuchDirectory(directory)) }
        let name = target.split(separator: "/").last.map(String.init) ?? "output"
        var template = Array("\(directory)/.\(name).XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            let code = errno
            if code == EACCES || code == EPERM || code == EROFS {
                throw FileError(path: path, .system(operation: "create a file in \(directory)", message: systemMessage(code)))
            }
            throw FileError(path: path, .system(operation: "create a temporary file in \(directory)", message: systemMessage(code)))
        }
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var committed = false
        defer {
            close(fd)
            if !committed { unlink(temporary) }
        }
        // The new file keeps the old one's permissions, or gets the usual 0644 (less the umask).
        let mask = umask(0)
        umask(mask)
        _ = fchmod(fd, existingMode.map { $0 & 0o7777 } ?? (0o644 & ~mask))
        try writeAll(fd, bytes, path: path)
        guard fsync(fd) == 0 else { throw FileError.from(errno: errno, path: path, operation: "fsync") }
        guard rename(temporary, target) == 0 else { throw FileError.from(errno: errno, path: path, operation: "rename") }
        committed = true
        // The rename itself is durable once the directory is synced.
        let dirfd = open(directory, O_RDONLY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileError) {
        var failure: FileError?
        bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = systemWrite(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n < 0 {
                    failure = errno == ENOSPC ? FileError(path: path, .system(operation: "write", message: "no space left on device"))
                                              : FileError.from(errno: errno, path: path, operation: "write")
                    return
                }
                done += n
            }
        }
        if let failure { throw failure }
    }
}

/// `write(2)`, under a name the enum's own `write` does not shadow.
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
