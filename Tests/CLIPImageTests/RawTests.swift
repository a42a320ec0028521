import CLIPImage
import CLIPWeights
import Foundation
import Testing

// Camera RAW through Debian's LibRaw (0.20) against rawpy 0.28 (LibRaw 0.22) on DNGs written byte by byte
// (Scripts/fixtures/make_raw_fixtures.py). A full-size JPEG preview is what is shown, decoded by libjpeg as Pillow decodes
// it; without one, LibRaw demosaics with rawpy's postprocess(use_camera_wb=True) settings. `tolerance` is the largest
// difference per channel in 8-bit steps, `meanTolerance` the mean.

private let rawFixtures = "\(imageFixtures)/raw"
private let rawReference = Result { try SafeTensorsFile(path: "\(rawFixtures)/reference.safetensors") }

struct RawCase: Sendable, CustomTestStringConvertible {
    let file: String
    let tolerance: Int
    var testDescription: String { file }
}

@Suite("Camera RAW")
struct RawTests {
    static let cases: [RawCase] = [
        // Demosaiced by LibRaw 0.20 here and 0.22 in rawpy: at most 1 step apart. Previews: identical.
        .init(file: "bayer.dng", tolerance: 1), .init(file: "bayer_orient6.dng", tolerance: 1),
        .init(file: "preview_full.dng", tolerance: 0), .init(file: "preview_full_orient8.dng", tolerance: 0),
        .init(file: "preview_small.dng", tolerance: 1),
    ]

    @Test("decoded as rawpy shows it: the full-size preview, else demosaiced, turned as the camera was held", arguments: cases)
    func matchesRawpy(_ c: RawCase) throws {
        let path = "\(rawFixtures)/\(c.file)"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.withUnsafeBytes { ImageFormat.sniff($0) } == .cameraRaw)
        #expect(ImageFormat.hasImageExtension(path))
        let image = try decodeImage(bytes, name: path)
        let (shape, values) = try rawReference.get().integerTensor(c.file)
        #expect([image.height, image.width, image.mode.channels] == shape)
        #expect(ImageFormat.dimensions(bytes).map { [$0.height, $0.width] } == Array(shape.prefix(2)), "the probe's size is the decoded one")
        #expect(image.exifOrientation == nil, "the turn is applied, not left to the caller")
        let differences = zip(image.pixels, values).map { abs(Int($0) - Int($1)) }
        let worst = differences.max() ?? 0
        let mean = Double(differences.reduce(0, +)) / Double(max(differences.count, 1))
        #expect(image.pixels.count == values.count && worst <= c.tolerance, "\(c.file): largest difference \(worst)")
        #expect(mean <= 0.05, "\(c.file): mean difference \(mean)")
        let pixels = try ImagePreprocessor(resolution: 32).pixels(file: path)
        #expect(pixels.count == 3 * 32 * 32 && pixels.allSatisfy(\.isFinite))
    }

    @Test("truncated and oversized RAW files end in one clear error")
    func hostile() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(rawFixtures)/bayer.dng")))
        for cut in [16, 200, bytes.count / 2, bytes.count - 10] {
            do {
                _ = try decodeImage(Array(bytes.prefix(cut)), name: "cut.dng")
                Issue.record("cut at \(cut): decoded")
            } catch {
                #expect(error.description.hasPrefix("cut.dng: "), "\(error)")
            }
        }
        do {
            _ = try decodeImage(bytes, name: "big.dng", maxPixels: 100)
            Issue.record("decoded past the pixel limit")
        } catch {
            #expect(error.problem.isTooManyPixels, "\(error)")
        }
    }

    @Test("camera RAW signatures are told from plain TIFF")
    func signatures() throws {
        let tiff = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/formats/tiff_rgb.tif")))
        #expect(tiff.withUnsafeBytes { ImageFormat.sniff($0) } == .tiff)
        for magic in ["FUJIFILMCCD-RAW 0201", "IIRO\u{8}\u{0}\u{0}\u{0}", "IIU\u{0}\u{8}\u{0}\u{0}\u{0}",
                      "\u{0}\u{0}\u{0}\u{18}ftypcrx \u{0}\u{0}\u{0}\u{1}"] {
            let bytes = Array(magic.utf8) + [UInt8](repeating: 0, count: 64)
            #expect(bytes.withUnsafeBytes { ImageFormat.sniff($0) } == .cameraRaw, "\(magic)")
            #expect(throws: ImageError.self) { try decodeImage(bytes, name: "x.raw") }
        }
    }
}
