import CLIPImage
import CLIPTensor
import CLIPWeights
import Foundation
import Testing

let imageFixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path

struct ManifestEntry: Decodable, CustomTestStringConvertible, Sendable {
    let name: String
    let file: String
    let mode: String
    let width: Int
    let height: Int
    let resolutions: [Int]
    var testDescription: String { name }
}

let manifest: [ManifestEntry] = {
    let data = (try? Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/manifest.json"))) ?? Data("[]".utf8)
    return (try? JSONDecoder().decode([ManifestEntry].self, from: data)) ?? []
}()

let reference = Result { try SafeTensorsFile(path: "\(imageFixtures)/reference.safetensors") }

func referenceBytes(_ key: String) throws -> (shape: [Int], values: [UInt8]) {
    let (shape, values) = try reference.get().integerTensor(key)
    return (shape, values.map { UInt8($0) })
}

let pillowModes: [String: PixelMode] = ["L": .gray, "LA": .grayAlpha, "RGB": .rgb, "RGBA": .rgba, "CMYK": .cmyk,
                                        "P": .palette, "1": .bilevel, "I;16": .gray16]

@Test func manifestCoversEveryFormatAndMode() {
    #expect(manifest.count >= 50)
    #expect(Set(manifest.map(\.mode)) == Set(pillowModes.keys))
    for ext in ["jpg", "png", "webp"] { #expect(manifest.contains { $0.file.hasSuffix(ext) }) }
}

@Test("Decoded pixels equal Pillow's", arguments: manifest)
func decodedPixelsMatchPillow(_ e: ManifestEntry) throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
    let image = try decodeImage(data, name: e.file)
    #expect(image.mode == pillowModes[e.mode])
    #expect(image.width == e.width && image.height == e.height)
    let (shape, expected) = try referenceBytes("\(e.name)/decoded")
    #expect(shape == [e.height, e.width, image.mode.channels])
    let mismatches = zip(image.pixels, expected).filter { $0 != $1 }.count
    #expect(image.pixels.count == expected.count && mismatches == 0, "\(mismatches) of \(expected.count) bytes differ")
    if image.mode == .palette {
        let (_, palette) = try referenceBytes("\(e.name)/palette")
        #expect(Array(palette.prefix(image.palette.count)) == image.palette)
    }
}

@Test("Resize, crop and convert equal the reference within one 8-bit step", arguments: manifest)
func croppedRGBMatchesReference(_ e: ManifestEntry) throws {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/\(e.file)")))
    let image = try decodeImage(data, name: e.file)
    for r in e.resolutions {
        let ours = try ImagePreprocessor(resolution: r).croppedRGB(image)
        let (shape, expected) = try referenceBytes("\(e.name)/\(r)")
        #expect(shape == [r, r, 3])
        expectWithinOneStep(ours, expected, "\(e.name) at \(r)")
    }
}

/// 8-bit images equal within one step, and identical in at least 99.9 % of their values.
func expectWithinOneStep(_ ours: [UInt8], _ expected: [UInt8], _ label: String) {
    var identical = 0, worst = 0
    for (a, b) in zip(ours, expected) {
        let d = abs(Int(a) - Int(b))
        if d == 0 { identical += 1 }
        worst = max(worst, d)
    }
    let fraction = Double(identical) / Double(expected.count)
    #expect(fraction >= 0.999, "\(label): \(fraction * 100) % identical")
    #expect(worst <= 1, "\(label): a value differs by \(worst)")
}

@Test("Normalised tensors equal torchvision's", arguments: ["jpeg_420_photo", "png_rgba_odd"])
func tensorMatchesTorchvision(_ name: String) throws {
    let entry = try #require(manifest.first { $0.name == name })
    let x = try ImagePreprocessor().tensor(files: ["\(imageFixtures)/\(entry.file)"])
    #expect(x.shape == [1, 3, 224, 224])
    let expected = try reference.get().floatTensor("\(name)/224/tensor")
    var worst: Float = 0
    for (a, b) in zip(x.scalars, expected.scalars) { worst = max(worst, abs(a - b)) }
    #expect(worst <= 1e-6, "max difference \(worst)")
}

@Test func exifOrientationIsIgnoredByDefaultAndAppliedOnRequest() throws {
    let path = "\(imageFixtures)/images/jpeg_exif_rotated.jpg"
    let image = try decodeImage([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
    #expect(image.exifOrientation == 6)
    #expect(try ImagePreprocessor(resolution: 64).croppedRGB(image) == referenceBytes("jpeg_exif_rotated/64").values)
    let rotated = try ImagePreprocessor(resolution: 64, applyEXIFOrientation: true).croppedRGB(image)
    let (_, expected) = try referenceBytes("jpeg_exif_rotated/64/transposed")
    #expect(zip(rotated, expected).allSatisfy { abs(Int($0) - Int($1)) <= 1 })
}

@Test func sizeComputationFollowsTorchvision() {
    #expect(ImagePreprocessor.resizedSize(width: 640, height: 480, resolution: 224) == (298, 224))
    #expect(ImagePreprocessor.resizedSize(width: 480, height: 640, resolution: 224) == (224, 298))
    #expect(ImagePreprocessor.resizedSize(width: 224, height: 224, resolution: 224) == (224, 224))
    #expect(ImagePreprocessor.resizedSize(width: 33, height: 47, resolution: 224) == (224, 319))
    #expect(ImagePreprocessor.resizedSize(width: 300, height: 25, resolution: 64) == (768, 64))
}

@Test func pixelBufferAPIMatchesTheFilePath() throws {
    let entry = try #require(manifest.first { $0.name == "png_rgb_mid" })
    let path = "\(imageFixtures)/\(entry.file)"
    let image = try decodeImage([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
    let p = ImagePreprocessor(resolution: 64)
    let fromBuffer = try p.pixels(rgb: image.pixels, width: image.width, height: image.height, hasAlpha: false)
    #expect(fromBuffer == (try p.pixels(file: path)))
    #expect(throws: ImageError.self) { try p.pixels(rgb: [1, 2, 3], width: 2, height: 2, hasAlpha: false) }
}

@Test func batchesKeepInputOrder() throws {
    let files = manifest.prefix(6).map { "\(imageFixtures)/\($0.file)" }
    let p = ImagePreprocessor(resolution: 64)
    let batch = try p.tensor(files: files)
    #expect(batch.shape == [6, 3, 64, 64])
    for (i, f) in files.enumerated() {
        #expect(Array(batch.scalars[(i * 3 * 64 * 64)..<((i + 1) * 3 * 64 * 64)]) == (try p.pixels(file: f)))
    }
}
