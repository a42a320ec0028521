import CLIPImage
import Foundation

/// Pictures of search results drawn with the project's own image code: a contact sheet (a PNG grid of square
/// thumbnails, each captioned with its rank and score) and single thumbnails for terminal previews.
package enum ContactSheet {
    /// Side of a thumbnail in pixels.
    package static let thumbnail = 160
    static let margin = 8
    static let captionHeight = 16

    /// A square thumbnail of an image file, or of a video's frame at `time` seconds (its poster at 0), shorter side
    /// resized and centre cropped as CLIP's preprocessing, RGB bytes; nil when the file cannot be decoded.
    package static func thumbnailRGB(_ path: String, side: Int = thumbnail, time: Double? = nil) -> [UInt8]? {
        if VideoReader.hasVideoExtension(path) {
            guard let frame = try? VideoReader.frame(of: path, at: time ?? 0) else { return nil }
            return thumbnailRGB(frame.image, name: path, side: side)
        }
        guard let bytes = try? ImagePreprocessor.readImageFile(path) else { return nil }
        return thumbnailRGB(encoded: bytes, name: path, side: side)
    }

    /// The same of an encoded image already read.
    package static func thumbnailRGB(encoded bytes: [UInt8], name: String, side: Int = thumbnail) -> [UInt8]? {
        guard let image = try? decodeImage(bytes, name: name) else { return nil }
        return thumbnailRGB(image, name: name, side: side)
    }

    /// The same of a decoded picture (a video's frame): turned as shown, shorter side resized, centre cropped. A strip
    /// too elongated for that resize (a 1 × 100,000 panorama would need 256 × 25,600,000 pixels) gets its centre
    /// square resized instead: a thumbnail, not a missing file.
    static func thumbnailRGB(_ image: DecodedImage, name: String, side: Int) -> [UInt8]? {
        if let rgb = try? ImagePreprocessor(resolution: side, applyEXIFOrientation: true).croppedRGB(image, name: name) {
            return rgb
        }
        let turned = image.exifTransposed()
        let (w, h, ch) = (turned.width, turned.height, turned.mode.channels)
        let s = min(w, h)
        guard s > 0, max(w, h) > s else { return nil }
        let (x0, y0) = ((w - s) / 2, (h - s) / 2)
        var pixels = [UInt8](repeating: 0, count: s * s * ch)
        for y in 0..<s {
            let from = ((y + y0) * w + x0) * ch
            pixels.replaceSubrange((y * s * ch)..<((y + 1) * s * ch), with: turned.pixels[from..<(from + s * ch)])
        }
        let square = DecodedImage(width: s, height: s, mode: turned.mode, pixels: pixels, palette: turned.palette)
        return try? ImagePreprocessor(resolution: side).croppedRGB(square, name: name)
    }

    /// A PNG thumbnail of an image file or a video's frame at `time`, for the kitty graphics protocol.
    package static func thumbnailPNG(_ path: String, side: Int = 96, time: Double? = nil) -> [UInt8]? {
        guard let rgb = thumbnailRGB(path, side: side, time: time) else { return nil }
        return try? PNGEncoder.encode(rgb: rgb, width: side, height: side)
    }

    /// A PNG of `image` as shown (turned by its orientation), its longer side at most `longest` pixels (never
    /// enlarged), the whole picture resized with the preprocessing's resampling: what a browser that cannot show a
    /// HEIC, TIFF or RAW file shows instead.
    package static func previewPNG(_ input: DecodedImage, longest: Int, name: String) throws(ImageError) -> [UInt8] {
        let image = input.exifTransposed()
        let r = max(1, min(longest, max(image.width, image.height)))
        // A square of side r with the picture fitted inside (ResizeKeepRatio), then the picture cut out of it.
        let square = try ImagePreprocessor(resolution: r, resizeMode: .longest).croppedRGB(image, name: name)
        let ratio = max(Double(image.height) / Double(r), Double(image.width) / Double(r))
        let w = min(r, max(Int((Double(image.width) / ratio).rounded(.toNearestOrEven)), 1))
        let h = min(r, max(Int((Double(image.height) / ratio).rounded(.toNearestOrEven)), 1))
        let left = (r - w) / 2, top = (r - h) / 2
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let s = ((y + top) * r + left) * 3
            rgb.replaceSubrange((y * w * 3)..<((y + 1) * w * 3), with: square[s..<(s + w * 3)])
        }
        return try PNGEncoder.encode(rgb: rgb, width: w, height: h, name: name)
    }

    /// A PNG thumbnail of a decoded picture (a video's frame).
    package static func thumbnailPNG(_ image: DecodedImage, name: String, side: Int = 96) -> [UInt8]? {
        guard let rgb = thumbnailRGB(image, name: name, side: side) else { return nil }
        return try? PNGEncoder.encode(rgb: rgb, width: side, height: side)
    }

    /// A PNG thumbnail of an encoded image already read.
    package static func thumbnailPNG(encoded bytes: [UInt8], name: String, side: Int = 96) -> [UInt8]? {
        guard let rgb = thumbnailRGB(encoded: bytes, name: name, side: side) else { return nil }
        return try? PNGEncoder.encode(rgb: rgb, width: side, height: side)
    }

    /// The sheet of `hits` (best first), `columns` wide, as PNG bytes. A file that cannot be decoded is drawn as
    /// a grey square, still captioned.
    package static func png(_ hits: [SearchHit], columns: Int = 5) throws(IndexError) -> [UInt8] {
        let cols = max(1, min(columns, hits.count)), rows = max(1, (hits.count + cols - 1) / cols)
        let cellW = thumbnail + margin, cellH = thumbnail + captionHeight + margin
        let width = cols * cellW + margin, height = rows * cellH + margin
        var canvas = [UInt8](repeating: 255, count: width * height * 3)
        for (i, hit) in hits.enumerated() {
            let x0 = margin + (i % cols) * cellW, y0 = margin + (i / cols) * cellH
            let thumb = thumbnailRGB(hit.path, time: hit.time) ?? [UInt8](repeating: 200, count: thumbnail * thumbnail * 3)
            for y in 0..<thumbnail {
                let src = y * thumbnail * 3, dst = ((y0 + y) * width + x0) * 3
                canvas.replaceSubrange(dst..<(dst + thumbnail * 3), with: thumb[src..<(src + thumbnail * 3)])
            }
            drawText(String(format: "%d  %.3f", i + 1, hit.score), x: x0 + 2, y: y0 + thumbnail + 3,
                     into: &canvas, width: width)
        }
        do { return try PNGEncoder.encode(rgb: canvas, width: width, height: height) } catch {
            throw IndexError.internal("cannot encode the contact sheet: \(error)")
        }
    }

    /// A 3×5 pixel font for the captions' characters (digits, '.', '-'), drawn at twice its size.
    static let glyphs: [Character: [String]] = [
        "0": ["###", "#.#", "#.#", "#.#", "###"], "1": [".#.", "##.", ".#.", ".#.", "###"],
        "2": ["###", "..#", "###", "#..", "###"], "3": ["###", "..#", "###", "..#", "###"],
        "4": ["#.#", "#.#", "###", "..#", "..#"], "5": ["###", "#..", "###", "..#", "###"],
        "6": ["###", "#..", "###", "#.#", "###"], "7": ["###", "..#", "..#", "..#", "..#"],
        "8": ["###", "#.#", "###", "#.#", "###"], "9": ["###", "#.#", "###", "..#", "###"],
        ".": ["...", "...", "...", "...", ".#."], "-": ["...", "...", "###", "...", "..."],
    ]

    static func drawText(_ text: String, x: Int, y: Int, into canvas: inout [UInt8], width: Int) {
        let scale = 2, height = canvas.count / (width * 3)
        var cx = x
        for ch in text {
            defer { cx += 4 * scale }
            guard let rows = glyphs[ch] else { continue }
            for (gy, row) in rows.enumerated() {
                for (gx, bit) in row.enumerated() where bit == "#" {
                    for dy in 0..<scale {
                        for dx in 0..<scale {
                            let px = cx + gx * scale + dx, py = y + gy * scale + dy
                            guard px < width, py < height else { continue }
                            let o = (py * width + px) * 3
                            canvas[o] = 30; canvas[o + 1] = 30; canvas[o + 2] = 30
                        }
                    }
                }
            }
        }
    }
}
