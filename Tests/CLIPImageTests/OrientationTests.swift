import CLIPImage
import CLIPWeights
import Foundation
import Testing

// EXIF orientation 1–8 against Pillow's ImageOps.exif_transpose (Scripts/make_orientation_fixtures.py): a 23×15
// picture saved with each orientation as PNG (exact) and JPEG (decoders may differ by one step).

private let orientationFixtures = "\(imageFixtures)/orientation"
private let orientationReference = Result { try SafeTensorsFile(path: "\(orientationFixtures)/reference.safetensors") }

@Suite("EXIF orientation")
struct OrientationTests {
    @Test("each orientation read from the header and applied as Pillow's exif_transpose",
          arguments: ["png", "jpeg"], Array(1...8))
    func transposeMatchesPillow(format: String, orientation: Int) throws {
        let path = "\(orientationFixtures)/orientation_\(orientation).\(format == "png" ? "png" : "jpg")"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(ImageFormat.exifOrientation(encoded: bytes) == orientation, "read from the header alone")
        let image = try decodeImage(bytes, name: path)
        #expect(image.exifOrientation == orientation)
        let turned = image.exifTransposed()
        let (shape, values) = try orientationReference.get().integerTensor("\(format)/\(orientation)")
        #expect([turned.height, turned.width, 3] == shape, "size after turning")
        #expect(turned.exifOrientation == 1)
        let tolerance = format == "png" ? 0 : 1
        let worst = zip(turned.pixels, values).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(turned.pixels.count == values.count && worst <= tolerance, "largest difference \(worst)")
        // The preprocessor turns before it resizes when asked, and not otherwise (the reference's behaviour).
        let asked = try ImagePreprocessor(resolution: 16, applyEXIFOrientation: true).croppedRGB(image)
        #expect(asked == (try ImagePreprocessor(resolution: 16).croppedRGB(turned)))
        if orientation != 1 {
            #expect(try ImagePreprocessor(resolution: 16).croppedRGB(image) != asked)
        }
    }

    @Test("no orientation for files without one, other formats, and damaged headers")
    func noOrientation() throws {
        let plain = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/images/jpeg_420_photo.jpg")))
        #expect(ImageFormat.exifOrientation(encoded: plain) == nil)
        #expect(ImageFormat.exifOrientation(encoded: []) == nil)
        #expect(ImageFormat.exifOrientation(encoded: Array("GIF89a".utf8)) == nil)
        let jpeg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(orientationFixtures)/orientation_6.jpg")))
        #expect(ImageFormat.exifOrientation(encoded: Array(jpeg.prefix(40))) == nil)
    }
}
