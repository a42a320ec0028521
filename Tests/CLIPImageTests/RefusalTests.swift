import CLIPImage
import Foundation
import Testing
import CLIPWeights

func fixtureBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(imageFixtures)/images/\(name)")))
}

func problem(_ bytes: [UInt8], _ name: String = "test-image") -> ImageError.Problem? {
    do {
        _ = try decodeImage(bytes, name: name)
        return nil
    } catch {
        #expect(error.description.hasPrefix(name + ": "), "message names the file: \(error)")
        return error.problem
    }
}

@Test("Truncated files are refused, never grey-filled", arguments: ["jpeg_420_photo.jpg", "jpeg_progressive_odd.jpg", "png_rgb_odd.png", "png_rgb_interlaced.png", "webp_lossy_odd.webp", "webp_lossless_mid.webp"])
func truncatedFileIsRefused(_ file: String) throws {
    let bytes = try fixtureBytes(file)
    for fraction in [0.05, 0.3, 0.6, 0.95] {
        let cut = Array(bytes.prefix(Int(Double(bytes.count) * fraction)))
        guard case .corrupt(let m) = problem(cut, file) else {
            Issue.record("\(file) cut to \(cut.count) of \(bytes.count) bytes was not refused as corrupt")
            continue
        }
        #expect(!m.isEmpty)
    }
    // The last bytes (JPEG's EOI marker, PNG's IEND) matter too for JPEG; PNG may end after IDAT as in Pillow.
    if file.hasSuffix(".jpg") {
        #expect(problem(Array(bytes.dropLast(200)), file) != nil)
    }
}

@Test func zeroByteFileIsRefused() {
    #expect(problem([]) == .empty)
}

/// The error says what kind of data it is, never the data: it may be stored in an index or served.
@Test("data that is not an image is described by its kind, not its bytes", arguments: [
    ("TOP SECRET password=hunter2\n", "text"),
    ("  <!DOCTYPE html><html>", "HTML or XML text"),
    ("II+\u{0}\u{8}\u{0}\u{0}\u{0}secret", "BigTIFF"),
    ("%PDF-1.7\n%secret", "PDF"),
    ("SQLite format 3\u{0}secret", "SQLite"),
    ("\u{0}\u{0}\u{0}\u{18}ftypisom\u{0}\u{0}", "video"),
    ("\u{0}\u{1}\u{2}\u{3}\u{FF}secret", "binary data"),
])
func unknownDataIsDescribedByKind(content: String, kind: String) {
    guard case .unknownFormat(let looks) = problem(Array(content.utf8), "photo.jpg") else {
        Issue.record("expected unknownFormat")
        return
    }
    #expect(looks.contains(kind))
    #expect(!looks.contains("secret") && !looks.contains("SECRET") && !looks.contains("hunter"))
    #expect(!looks.contains("54 4f") && !looks.contains("\""))
}

/// A PNG header declaring `w × h` with no image data after it.
func pngHeader(width w: UInt32, height h: UInt32) -> [UInt8] {
    var ihdr: [UInt8] = Array("IHDR".utf8)
    for v in [w, h] { ihdr += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    ihdr += [8, 2, 0, 0, 0]
    let crc = zipCRC32(ihdr)
    return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + ihdr
        + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
}


@Test func decompressionBombsAreRefusedFromTheHeader() throws {
    // PNG declaring 20000 × 20000 = 400 M pixels.
    guard case .tooManyPixels(let m) = problem(pngHeader(width: 20000, height: 20000)) else {
        Issue.record("PNG bomb not refused: \(String(describing: problem(pngHeader(width: 20000, height: 20000))))"); return
    }
    #expect(m.contains("20000x20000") && m.contains("178956970"))
    // JPEG whose frame header (SOF0) is patched to 60000 × 60000.
    var jpeg = try fixtureBytes("jpeg_420_mid.jpg")
    let sof = try #require((0..<(jpeg.count - 9)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
    jpeg[sof + 5] = 0xEA; jpeg[sof + 6] = 0x60; jpeg[sof + 7] = 0xEA; jpeg[sof + 8] = 0x60
    let p = problem(jpeg)
    guard case .tooManyPixels = p else { Issue.record("JPEG bomb not refused: \(String(describing: p))"); return }
    // A smaller limit applies to ordinary images too.
    let small = try fixtureBytes("png_rgb_mid.png")
    #expect(throws: ImageError.self) { try decodeImage(small, name: "x", maxPixels: 100) }
}

/// Sides past the PNG specification's 2^31 - 1 (4294967295² overflows a signed 64-bit product) are not sizes:
/// the header probe refuses them, so no caller multiplies them.
@Test("PNG headers with sides of 2^32 - 1 or 0 are refused, not multiplied", arguments: [
    (UInt32.max, UInt32.max), (0x8000_0000, 1), (0, 10), (10, 0),
])
func impossiblePNGSides(width: UInt32, height: UInt32) {
    let header = pngHeader(width: width, height: height)
    #expect(ImageFormat.dimensions(header) == nil)
    #expect(problem(header) != nil)
    #expect(throws: ImageError.self) { try ImagePreprocessor(resolution: 32).pixels(encoded: header, name: "x.png") }
}

@Test func corruptDataIsRefused() throws {
    var png = try fixtureBytes("png_rgb_mid.png")
    // Flip bytes in the middle of the compressed data.
    for i in (png.count / 2)..<(png.count / 2 + 16) { png[i] ^= 0x5A }
    guard case .corrupt = problem(png) else { Issue.record("corrupt PNG not refused"); return }
    let garbageJPEG: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 0x41, count: 64)
    guard case .corrupt = problem(garbageJPEG) else { Issue.record("garbage JPEG not refused"); return }
}

@Test func missingFileAndDirectoryAreReported() {
    #expect(throws: ImageError(file: "/nonexistent.jpg", .unreadable("no such file"))) {
        try ImagePreprocessor().pixels(file: "/nonexistent.jpg")
    }
    #expect(throws: ImageError(file: "/tmp", .unreadable("is a directory"))) { try ImagePreprocessor().pixels(file: "/tmp") }
}

@Test func extremeAspectRatiosAreRefusedBeforeResizing() throws {
    // 200000×1 is only 200,000 pixels but would resize to 44,800,000×224.
    let image = DecodedImage(width: 200_000, height: 1, mode: .rgb, pixels: [UInt8](repeating: 7, count: 600_000))
    #expect(throws: ImageError.self) { try ImagePreprocessor().croppedRGB(image, name: "thin.png") }
    do {
        _ = try ImagePreprocessor().croppedRGB(image, name: "thin.png")
    } catch {
        guard case .tooManyPixels(let m) = error.problem else { Issue.record("\(error)"); return }
        #expect(m.contains("200000x1") && m.contains("44800000x224"))
    }
    // A long but reasonable panorama still works.
    let wide = DecodedImage(width: 3000, height: 10, mode: .rgb, pixels: [UInt8](repeating: 7, count: 90_000))
    #expect(try ImagePreprocessor(resolution: 32).croppedRGB(wide).count == 32 * 32 * 3)
}
