import CCLIPImage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes 8-bit RGB images as PNG (synthetic training images, loss plots), through the system libpng.
public enum PNGEncoder {
    /// `rgb` [height, width, 3] → the bytes of a PNG file; `name` is used in errors.
    public static func encode(rgb: [UInt8], width: Int, height: Int, name: String = "image") throws(ImageError) -> [UInt8] {
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max),
              rgb.count == width * height * 3 else {
            throw ImageError(file: name, .invalidBuffer("\(rgb.count) bytes is not a \(width)×\(height) RGB image"))
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var err = [CChar](repeating: 0, count: 256)
        let rc = rgb.withUnsafeBufferPointer { p in
            clip_encode_png(p.baseAddress, Int32(width), Int32(height), &out, &size, &err, err.count)
        }
        defer { free(out) }
        guard rc == 0, let out else {
            throw ImageError(file: name, .corrupt(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        return Array(UnsafeBufferPointer(start: out, count: size))
    }
}
