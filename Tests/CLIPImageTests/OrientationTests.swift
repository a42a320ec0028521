import CCLIPImage
import CLIPImage
import CLIPWeights
import Foundation
import Testing

// EXIF orientation 1–8 against Pillow's ImageOps.exif_transpose (Scripts/fixtures/make_orientation_fixtures.py): a 23×15
// picture saved with each orientation as PNG (exact) and JPEG (decoders may differ by one step).

private let orientationFixtures = "\(imageFixtures)/orientation"
private let orientationReference = Result { try SafeTensorsFile(path: "\(orientationFixtures)/reference.safetensors") }

@Suite("EXIF orientation")
struct OrientationTests {
    @Test("each orientation read from the header and applied as Pillow's exif_transpose",
          arguments: ["png", "jpeg", "webp"], Array(1...8))
    func transposeMatchesPillow(format: String, orientation: Int) throws {
        let path = "\(orientationFixtures)/orientation_\(orientation).\(format == "jpeg" ? "jpg" : format)"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(ImageFormat.exifOrientation(encoded: bytes) == orientation, "read from the header alone")
        let image = try decodeImage(bytes, name: path)
        #expect(image.exifOrientation == orientation)
        let turned = image.exifTransposed()
        let (shape, values) = try orientationReference.get().integerTensor("\(format)/\(orientation)")
        #expect([turned.height, turned.width, 3] == shape, "size after turning")
        #expect(turned.exifOrientation == 1)
        let tolerance = format == "jpeg" ? 1 : 0
        let worst = zip(turned.pixels, values).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(turned.pixels.count == values.count && worst <= tolerance, "largest difference \(worst)")
        // The preprocessor turns before it resizes when asked, and not otherwise (the reference's behaviour).
        let asked = try ImagePreprocessor(resolution: 16, applyEXIFOrientation: true).croppedRGB(image)
        #expect(asked == (try ImagePreprocessor(resolution: 16).croppedRGB(turned)))
        if orientation != 1 {
            #expect(try ImagePreprocessor(resolution: 16).croppedRGB(image) != asked)
        }
    }

    /// Pillow's getexif also takes XMP's tiff:Orientation when EXIF has none, and a PNG's eXIf after the image data.
    @Test("orientation from XMP (JPEG, PNG, WebP) and from a PNG's eXIf after its image data, as Pillow reads them",
          arguments: ["xmp-png", "xmp-jpeg", "xmp-webp", "late-png"], [3, 6, 8])
    func otherSources(kind: String, orientation: Int) throws {
        let file = kind == "late-png" ? "late_exif_\(orientation).png"
            : "xmp_\(orientation).\(kind == "xmp-jpeg" ? "jpg" : String(kind.dropFirst(4)))"
        let path = "\(orientationFixtures)/\(file)"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(ImageFormat.exifOrientation(encoded: bytes) == orientation, "read from the header alone")
        let image = try decodeImage(bytes, name: path)
        #expect(image.exifOrientation == orientation)
        let turned = image.exifTransposed()
        let (shape, values) = try orientationReference.get().integerTensor("\(kind)/\(orientation)")
        #expect([turned.height, turned.width, 3] == shape, "size after turning")
        let worst = zip(turned.pixels, values).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(turned.pixels.count == values.count && worst <= (kind == "xmp-jpeg" ? 1 : 0), "largest difference \(worst)")
        // The preprocessing from encoded bytes (a PNG or JPEG streamed row by row when it need not turn) turns it too.
        let pre = ImagePreprocessor(resolution: 16, applyEXIFOrientation: true)
        #expect(try pre.pixels(encoded: bytes, name: path) == (try pre.pixels(image, name: path)))
    }

    /// EXIF's tag wins over XMP's; of two eXIf chunks the last (after the image data) wins, as Pillow overwrites.
    @Test("which orientation wins when a file declares two, as Pillow decides", arguments: [("exif_and_xmp.png", "exif-and-xmp/6", 6),
                                                                                           ("two_exif.png", "two-exif/6", 6)])
    func precedence(file: String, reference: String, orientation: Int) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(orientationFixtures)/\(file)")))
        #expect(ImageFormat.exifOrientation(encoded: bytes) == orientation)
        let image = try decodeImage(bytes, name: file)
        #expect(image.exifOrientation == orientation)
        let (shape, values) = try orientationReference.get().integerTensor(reference)
        let turned = image.exifTransposed()
        #expect([turned.height, turned.width, 3] == shape && turned.pixels == values.map { UInt8($0) })
    }

    @Test("XMP packets: Pillow's pattern, nothing read past the end")
    func xmpPattern() {
        func read(_ s: String) -> Int32 { Array(s.utf8).withUnsafeBufferPointer { clip_xmp_orientation($0.baseAddress, $0.count) } }
        #expect(read(#"<d tiff:Orientation="6"/>"#) == 6)
        #expect(read("<tiff:Orientation>8</tiff:Orientation>") == 8)
        #expect(read(#"tiff:Orientation="x" tiff:Orientation="3""#) == 3)
        #expect(read(#"tiff:Orientation=""#) == -1)
        #expect(read("tiff:Orientation") == -1)
        #expect(read(#"exif:Orientation="6""#) == -1)
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
