#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file written at chosen offsets under a temporary name beside its destination, then made durable and renamed
/// over it: what `OutputFile.write` does for bytes held in memory, for files too large to hold (a vector cache of
/// gigabytes). Readers see the old file or the whole new one; a crash leaves only the temporary, whose name starts
/// with the destination's and `partialMarker`, so the next writer can remove it.
package final class PartialFile {
    /// Between the destination's name and a random suffix in temporaries' names.
    package static let partialMarker = ".partial-"

    package let destination: String
    package let temporary: String
    private var fd: Int32
    private var failure: String?

    /// Creates the temporary exclusively, under a name no other writer uses (processes in other containers share
    /// pids), so a concurrent writer never truncates or interleaves with this one.
    package init(destination: String) throws(FileError) {
        self.destination = destination
        var fd: Int32 = -1
        var temporary = ""
        for _ in 0..<8 where fd < 0 {
            temporary = destination + Self.partialMarker + String(UInt64.random(in: 0...UInt64.max), radix: 16)
            fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
            if fd < 0 && errno != EEXIST { break }
        }
        guard fd >= 0 else { throw FileError.from(errno: errno, path: temporary, operation: "create") }
        self.fd = fd
        self.temporary = temporary
    }

    deinit { abandon() }

    /// The temporary's descriptor until `commit` or `abandon` closes it (to map what was written before the rename).
    package var descriptor: Int32? { fd >= 0 ? fd : nil }

    /// Writes `bytes` at `offset`; the first failure is kept and reported by `commit`.
    package func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard failure == nil, fd >= 0 else { return }
        failure = writeAll(fd, bytes, at: offset)
    }

    /// Sets the file's length (a file whose last bytes are zeros is sized, not written, to its end).
    package func setLength(_ length: Int) {
        guard failure == nil, fd >= 0 else { return }
        if ftruncate(fd, off_t(length)) != 0 { failure = String(cString: strerror(errno)) }
    }

    /// Flushes the file to disk and renames it over the destination, then makes the rename durable.
    package func commit() throws(FileError) {
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if failure == nil && rename(temporary, destination) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            abandon()
            throw FileError(path: destination, .system(operation: "write", message: failure))
        }
        close(fd)
        fd = -1
        let directory = open(parentDirectory(of: destination), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 { fsync(directory); close(directory) }
    }

    /// Removes the temporary (nothing is renamed).
    package func abandon() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(temporary)
    }

    /// Removes the temporaries crashed writers of `destination` left. Only for a caller that holds the lock every
    /// writer of `destination` takes: a live writer's temporary would go too.
    package static func removeLeftovers(of destination: String) {
        let parent = parentDirectory(of: destination)
        let name = destination.lastIndex(of: "/").map { String(destination[destination.index(after: $0)...]) } ?? destination
        guard let dir = opendir(parent) else { return }
        defer { closedir(dir) }
        // Bytes, not Strings: String comparison treats two spellings of "é" as one name, the file system does not.
        let prefix = Array((name + partialMarker).utf8)
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            if entryName.starts(with: prefix) {
                unlink(parent + "/" + String(decoding: entryName, as: UTF8.self))
            }
        }
    }
}

/// Writes all of `bytes` to `fd` at `offset` (retrying short writes and interruptions); nil, or why it failed.
package func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) -> String? {
    guard let base = bytes.baseAddress else { return nil }
    var done = 0
    while done < bytes.count {
        let n = pwrite(fd, base + done, bytes.count - done, off_t(offset + done))
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return errno == ENOSPC ? "no space left on device" : String(cString: strerror(errno)) }
        done += n
    }
    return nil
}
