import CCLIPImage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes 8-bit RGB images as baseline JPEG through the system libjpeg: JPEG's artefacts in synthetic training
/// images come from the codec photos were saved with.
package enum JPEGEncoder {
    /// `rgb` [height, width, 3] → the bytes of a JPEG file at `quality` (1…100, libjpeg's 4:2:0 default);
    /// `name` is used in errors.
    package static func encode(rgb: [UInt8], width: Int, height: Int, quality: Int, name: String = "image") throws(ImageError) -> [UInt8] {
        guard width > 0, height > 0, width <= 65_500, height <= 65_500, (1...100).contains(quality),
              rgb.count == width * height * 3 else {
            throw ImageError(file: name, .invalidBuffer("\(rgb.count) bytes at quality \(quality) is not a \(width)×\(height) RGB image to encode"))
        }
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        var err = [CChar](repeating: 0, count: 256)
        let rc = rgb.withUnsafeBufferPointer { p in
            clip_encode_jpeg(p.baseAddress, Int32(width), Int32(height), Int32(quality), &out, &size, &err, err.count)
        }
        defer { free(out) }
        guard rc == 0, let out else {
            throw ImageError(file: name, .corrupt(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        return Array(UnsafeBufferPointer(start: out, count: size))
    }
}
