import CLIPImage
import CLIPWeights
import Foundation
import Testing

// GIF (giflib), BMP (bmp.c) and TIFF (libtiff) against Pillow 13 on files written by Scripts/fixtures/make_format_fixtures.py:
// the decoded pixels in Pillow's own mode byte for byte, and the reference's Resize(40) + CenterCrop(40) + RGB
// within one 8-bit step (the resampler's tolerance for every format).

private let formatFixtures = "\(imageFixtures)/formats"
private let formatReference = Result { try SafeTensorsFile(path: "\(formatFixtures)/reference.safetensors") }

struct FormatCase: Decodable, Sendable, CustomTestStringConvertible {
    let name: String
    let file: String
    let mode: String
    let width: Int
    let height: Int
    var testDescription: String { name }
}

private let formatCases: [FormatCase] = {
    let data = (try? Data(contentsOf: URL(fileURLWithPath: "\(formatFixtures)/manifest.json"))) ?? Data("[]".utf8)
    return (try? JSONDecoder().decode([FormatCase].self, from: data)) ?? []
}()

private func formatBytes(_ file: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(formatFixtures)/\(file)")))
}

@Suite("GIF, BMP and TIFF")
struct FormatTests {
    @Test func everyFormatAndModeIsCovered() {
        #expect(formatCases.count >= 51)
        for ext in ["gif", "bmp", "tif"] { #expect(formatCases.contains { $0.file.hasSuffix(ext) }) }
        #expect(Set(formatCases.map(\.mode)) == ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"])
    }

    @Test("decoded pixels equal Pillow's, in Pillow's mode", arguments: formatCases)
    func decodedPixelsMatchPillow(_ c: FormatCase) throws {
        let bytes = try formatBytes(c.file)
        #expect(ImageFormat.hasImageExtension(c.file))
        let format = bytes.withUnsafeBytes { ImageFormat.sniff($0) }
        #expect(format.map { [.gif, .bmp, .tiff].contains($0) } == true)
        let image = try decodeImage(bytes, name: c.file)
        #expect(image.mode == pillowModes[c.mode], "\(image.mode) for Pillow's \(c.mode)")
        #expect(image.width == c.width && image.height == c.height)
        #expect(ImageFormat.dimensions(bytes).map { [$0.width, $0.height] } == [c.width, c.height], "the probe's size is the decoded one")
        // Pillow turns a TIFF as it loads it; what is left to turn is nothing.
        #expect(image.exifOrientation == nil)
        let (shape, expected) = try formatReference.get().integerTensor("\(c.name)/decoded")
        #expect(shape == [c.height, c.width, image.mode.channels])
        let differing = zip(image.pixels, expected).filter { Int($0) != $1 }.count
        #expect(image.pixels.count == expected.count && differing == 0, "\(differing) of \(expected.count) bytes differ")
        if image.mode == .palette {
            let (_, palette) = try formatReference.get().integerTensor("\(c.name)/palette")
            #expect(Array(palette.prefix(image.palette.count)).map(UInt8.init) == image.palette)
            // Entries past the file's table are black for Pillow 13, as for the preprocessing.
            #expect(palette.dropFirst(image.palette.count).allSatisfy { $0 == 0 })
        }
    }

    @Test("resize, crop and convert equal the reference within one 8-bit step", arguments: formatCases)
    func croppedRGBMatchesReference(_ c: FormatCase) throws {
        let image = try decodeImage(try formatBytes(c.file), name: c.file)
        let ours = try ImagePreprocessor(resolution: 40).croppedRGB(image)
        let (shape, expected) = try formatReference.get().integerTensor("\(c.name)/40")
        #expect(shape == [40, 40, 3])
        expectWithinOneStep(ours, expected.map(UInt8.init), c.name)
        // The whole path from a file, as clip embed and the index take it.
        let pixels = try ImagePreprocessor(resolution: 40).pixels(file: "\(formatFixtures)/\(c.file)")
        #expect(pixels.count == 3 * 40 * 40 && pixels.allSatisfy(\.isFinite))
    }

    /// Every cut of a file either fails with an error naming it or, where the format allows the tail to be missing
    /// (a GIF's trailer), decodes the whole image: never a crash and never part of an image.
    @Test("truncated files end in an error naming the file", arguments: formatCases)
    func truncated(_ c: FormatCase) throws {
        let bytes = try formatBytes(c.file)
        let whole = try decodeImage(bytes, name: c.file)
        for cut in Set([0, 1, 2, 8, 14, 20, bytes.count / 10, bytes.count / 2, bytes.count * 9 / 10, bytes.count - 2]) where cut < bytes.count {
            do {
                let part = try decodeImage(Array(bytes.prefix(cut)), name: "cut.\(c.file)")
                #expect(part.pixels == whole.pixels, "\(c.name) cut at \(cut) of \(bytes.count): decoded differently")
            } catch {
                #expect(error.description.hasPrefix("cut.\(c.file): "), "\(error)")
            }
        }
    }

    @Test("the pixel limit is checked against the header before decoding", arguments: ["gif_p.gif", "bmp_rgb.bmp", "tiff_rgb_lzw.tif"])
    func pixelLimit(_ file: String) throws {
        let bytes = try formatBytes(file)
        do {
            _ = try decodeImage(bytes, name: file, maxPixels: 100)
            Issue.record("decoded past the limit")
        } catch {
            #expect(error.problem.isTooManyPixels, "\(error)")
        }
    }

    @Test("a GIF whose first frame is empty is an error, as it is for Pillow, not a blank canvas")
    func emptyGIFFrame() {
        // A 4×4 screen with a two-colour table, then a 0×0 image.
        let bytes: [UInt8] = Array("GIF89a".utf8) + [4, 0, 4, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255,
                                                     0x2C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0x44, 0x01, 0, 0x3B]
        do {
            _ = try decodeImage(bytes, name: "empty.gif")
            Issue.record("decoded")
        } catch {
            #expect(error.description == "empty.gif: the GIF's first frame is empty (0x0)", "\(error)")
        }
    }

    @Test("a TIFF's orientation is applied as Pillow applies it on load, also without --apply-orientation")
    func tiffOrientation() throws {
        let plain = try decodeImage(try formatBytes("tiff_big_endian_rgb.tif"), name: "a.tif")
        for o in [3, 6, 8] {
            let bytes = try formatBytes("tiff_orientation_\(o).tif")
            let turned = try decodeImage(bytes, name: "b.tif")
            var expected = plain
            expected.exifOrientation = o
            expected = expected.exifTransposed()
            #expect(turned.pixels == expected.pixels && turned.width == expected.width, "orientation \(o)")
            // Nothing is left for the index's orientation read to turn.
            #expect(ImageFormat.orientationRead(encoded: bytes) == .read(nil))
        }
    }

    @Test("layouts Pillow reads into modes CLIP does not use are refused by name", arguments: [
        ("big-endian 16-bit gray", "unsupported TIFF: big-endian 16-bit gray (Pillow's I;16B)"),
        ("float samples", "unsupported TIFF: sample format 3"),
        // A DNG is camera RAW: LibRaw's to read (this one holds no mosaic it knows).
        ("camera RAW (DNG)", "a camera RAW file LibRaw"),
    ])
    func refusedLayouts(_ c: (String, String)) throws {
        let bytes = tiffWithTagChanged(c.0)
        do {
            _ = try decodeImage(bytes, name: "x.tif")
            Issue.record("\(c.0): decoded")
        } catch {
            #expect(error.description.hasPrefix("x.tif: \(c.1)"), "\(error)")
        }
    }
}

extension ImageError.Problem {
    var isTooManyPixels: Bool { if case .tooManyPixels = self { true } else { false } }
}

/// A 3×2 uncompressed TIFF of one 16-bit gray (big-endian), 32-bit float or 8-bit DNG-tagged sample per pixel.
private func tiffWithTagChanged(_ kind: String) -> [UInt8] {
    let big = kind.hasPrefix("big")
    func u16(_ v: Int) -> [UInt8] { big ? [UInt8(v >> 8), UInt8(v & 255)] : [UInt8(v & 255), UInt8(v >> 8)] }
    func u32(_ v: Int) -> [UInt8] {
        big ? [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)]
            : [UInt8(v & 255), UInt8((v >> 8) & 255), UInt8((v >> 16) & 255), UInt8(v >> 24)]
    }
    let bits = kind.hasPrefix("big") ? 16 : kind.hasPrefix("float") ? 32 : 8
    let data = [UInt8](repeating: 0x40, count: 3 * 2 * bits / 8)
    var tags: [(Int, Int, Int)] = [(256, 3, 3), (257, 3, 2), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, 8),
                                   (277, 3, 1), (278, 3, 2), (279, 4, data.count)]
    if kind.hasPrefix("float") { tags.append((339, 3, 3)) }
    if kind.hasPrefix("camera") { tags.append((50706, 1, 0x0001_0401)) }
    tags.sort { $0.0 < $1.0 }
    var out: [UInt8] = (big ? [0x4D, 0x4D, 0, 42] : [0x49, 0x49, 42, 0]) + u32(8 + data.count) + data
    out += u16(tags.count)
    for (tag, type, value) in tags {
        out += u16(tag) + u16(type) + u32(type == 1 ? 4 : 1)
        switch type {
        case 3: out += u16(value) + [0, 0]
        case 1: out += [1, 4, 0, 0]  // DNG 1.4.0.0
        default: out += u32(value)
        }
    }
    return out + [0, 0, 0, 0]
}
