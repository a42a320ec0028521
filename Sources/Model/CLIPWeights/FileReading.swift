import CLIPFiles

// Weight files are read through `RegularFile` (pread at checked offsets); these adapt its errors to the weight
// readers' error type, which names the file the same way.
extension RegularFile {
    /// Opens a weight file: a regular file only (a FIFO or device is refused without blocking).
    public convenience init(opening path: String) throws(WeightFileError) {
        do { try self.init(path: path) } catch { throw WeightFileError(file: path, .cannotOpen(reason: error.reason)) }
    }

    /// `count` bytes at `offset`; a read past the end (a file truncated meanwhile) is an error naming it.
    func checkedRead(at offset: Int, count: Int) throws(WeightFileError) -> [UInt8] {
        do { return try read(at: offset, count: count) } catch { throw WeightFileError(file: path, .unreadable(error.reason)) }
    }

    func checkedRead<T: BitwiseCopyable>(at offset: Int, count: Int, as type: T.Type) throws(WeightFileError) -> [T] {
        do { return try read(at: offset, count: count, as: type) } catch {
            throw WeightFileError(file: path, .unreadable(error.reason))
        }
    }
}
