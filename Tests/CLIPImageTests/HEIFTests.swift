import CLIPImage
import CLIPWeights
import Foundation
import Testing

// HEIC through Debian's libheif (1.15) and AVIF through Debian's libavif (0.11) against Pillow + pillow-heif
// (libheif 1.23) and Pillow's AVIF plugin (Scripts/fixtures/make_heif_fixtures.py). The HEVC and AV1 decoders are exact; the
// YCbCr → RGB conversions round differently across versions: `tolerance` is the largest difference allowed per
// channel, in 8-bit steps.

private let heifFixtures = "\(imageFixtures)/heif"
private let heifReference = Result { try SafeTensorsFile(path: "\(heifFixtures)/reference.safetensors") }

struct HEIFCase: Sendable, CustomTestStringConvertible {
    let file: String
    let tolerance: Int
    var testDescription: String { file }
}

@Suite("HEIF/HEIC and AVIF")
struct HEIFTests {
    static let cases: [HEIFCase] = [
        // Measured: HEIC 1 step at most (mean 0.03), the 10-bit HEIC brought to 8 bits 2 (mean 0.55); AVIF exact.
        .init(file: "heic_rgb.heic", tolerance: 1), .init(file: "heic_rgba.heic", tolerance: 1),
        .init(file: "heic_10bit.heic", tolerance: 2), .init(file: "heic_rotated.heic", tolerance: 1),
        .init(file: "avif_rgb.avif", tolerance: 0), .init(file: "avif_rgba.avif", tolerance: 0),
        .init(file: "avif_rotated.avif", tolerance: 0),
        // An AVIF sequence: its first frame, as Pillow opens it.
        .init(file: "avif_animated.avif", tolerance: 0),
    ]

    @Test("decoded pixels equal Pillow's with pillow-heif, rotation applied, alpha kept", arguments: cases)
    func matchesPillow(_ c: HEIFCase) throws {
        let path = "\(heifFixtures)/\(c.file)"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.withUnsafeBytes { ImageFormat.sniff($0) } == .heif)
        #expect(ImageFormat.hasImageExtension(path))
        let image = try decodeImage(bytes, name: path)
        let (shape, values) = try heifReference.get().integerTensor(c.file)
        #expect([image.height, image.width, image.mode.channels] == shape)
        #expect(ImageFormat.dimensions(bytes).map { [$0.height, $0.width] } == Array(shape.prefix(2)), "the probe's size is the decoded one")
        let worst = zip(image.pixels, values).map { abs(Int($0) - Int($1)) }.max() ?? 0
        #expect(image.pixels.count == values.count && worst <= c.tolerance, "\(c.file): largest difference \(worst)")
        // Turned as Pillow's exif_transpose turns it (AVIF's irot/imir read as the orientation they stand for).
        let (turnedShape, turnedValues) = try heifReference.get().integerTensor(c.file + "/transposed")
        let turned = image.exifTransposed()
        #expect([turned.height, turned.width, turned.mode.channels] == turnedShape)
        #expect(zip(turned.pixels, turnedValues).allSatisfy { abs(Int($0) - Int($1)) <= c.tolerance })
        if c.file == "avif_rotated.avif" { #expect(image.exifOrientation == 6) }
        // The header-only read (the index's) agrees with the decoder.
        #expect(ImageFormat.orientationRead(encoded: bytes) == .read(image.exifOrientation))
        // And through the preprocessing, as clip embed and the index take it.
        let pixels = try ImagePreprocessor(resolution: 32).pixels(file: path)
        #expect(pixels.count == 3 * 32 * 32 && pixels.allSatisfy(\.isFinite))
    }

    /// Many HEIC files carry the general brand mif1 with heic among the compatible ones: libheif decides.
    @Test("a HEIC whose major brand is mif1 decodes as the same image")
    func generalBrand() throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(heifFixtures)/heic_rgb.heic")))
        let original = try decodeImage(bytes, name: "a.heic")
        bytes.replaceSubrange(8..<12, with: Array("mif1".utf8))
        let general = try decodeImage(bytes, name: "b.heic")
        #expect(general.pixels == original.pixels && !ImageFormat.isAVIF(bytes))
    }

    @Test("truncated, oversized and foreign ISO-media files end in one clear error", arguments: [
        "truncated", "bomb", "video",
    ])
    func hostile(kind: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(heifFixtures)/heic_rgb.heic")))
        switch kind {
        case "truncated": bytes = Array(bytes.prefix(bytes.count / 2))
        case "bomb":
            // The size the image declares is checked before anything is decoded.
            #expect(throws: ImageError.self) { _ = try decodeImage(bytes, name: "bomb.heic", maxPixels: 100) }
            return
        default:
            bytes.replaceSubrange(8..<12, with: Array("isom".utf8))
        }
        do {
            _ = try decodeImage(bytes, name: "x.heic")
            Issue.record("\(kind): decoded")
        } catch {
            #expect(error.description.hasPrefix("x.heic: "), "\(error)")
            if kind == "video" { #expect(error.description.contains("video"), "\(error)") }
        }
    }
}
