#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a tokenizer's data file (a vocabulary, merges, a SentencePiece model) whole, if it is a regular file of at
/// most `limit` bytes: opened without blocking (a FIFO would wait for a writer) and refused by kind or size before
/// anything is read (`/dev/zero` read to the end never ends). This module depends on nothing, so it does not share
/// CLIPFiles' reader.
func readTokenizerFile(_ path: String, limit: Int = 256 << 20) throws(TokenizerError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else {
        if errno == ENOENT { throw .missingResource(path) }
        throw .malformedData(file: path, line: 0, message: "cannot open: \(String(cString: strerror(errno)))")
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw .malformedData(file: path, line: 0, message: "cannot read its size") }
    guard st.st_mode & S_IFMT == S_IFREG else {
        throw .malformedData(file: path, line: 0, message: st.st_mode & S_IFMT == S_IFDIR ? "is a directory" : "not a regular file")
    }
    let size = Int(st.st_size)
    guard size <= limit else {
        throw .malformedData(file: path, line: 0, message: "\(size) bytes is more than a tokenizer file may have (\(limit))")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    while done < size {
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(done)) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw .malformedData(file: path, line: 0, message: "the file ended at byte \(done) of \(size)") }
        done += n
    }
    return bytes
}
