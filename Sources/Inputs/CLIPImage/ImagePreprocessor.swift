import CCLIPImage
import CLIPFiles
import CLIPTensor
import Foundation

/// The reference image transform: `Resize(resolution, BICUBIC)` of the shorter side, `CenterCrop(resolution)`,
/// `convert("RGB")`, `ToTensor`, `Normalize(mean, std)`, reproducing Pillow and torchvision exactly: the resize
/// happens in the image's own mode (palette and bilevel images with NEAREST, alpha premultiplied), with Pillow's
/// fixed-point bicubic filter, and nothing is resampled when the size is already right.
public struct ImagePreprocessor: Sendable {
    /// The model's transform: resolution, normalisation, resize mode and filter.
    public var preprocessing: Preprocessing
    /// Rotate/flip by the EXIF orientation first. Off by default, as in the reference.
    public var applyEXIFOrientation: Bool
    /// Images declaring more pixels are refused before decoding (Pillow's default limit).
    public var maxPixels: Int

    public typealias Interpolation = Preprocessing.Interpolation
    public typealias ResizeMode = Preprocessing.ResizeMode

    /// Side of the square model input.
    public var resolution: Int {
        get { preprocessing.resolution }
        set { preprocessing.resolution = newValue }
    }
    /// Per-channel (R, G, B) mean subtracted after scaling to [0, 1] (OpenAI's by default).
    public var mean: [Float] {
        get { preprocessing.mean }
        set { preprocessing.mean = newValue }
    }
    /// Per-channel (R, G, B) standard deviation divided by (OpenAI's by default).
    public var std: [Float] {
        get { preprocessing.std }
        set { preprocessing.std = newValue }
    }
    /// How the image is brought to the square: the reference's shorter side + centre crop, or one of open_clip's
    /// other modes.
    public var resizeMode: ResizeMode {
        get { preprocessing.resizeMode }
        set { preprocessing.resizeMode = newValue }
    }
    /// The resampling filter: bicubic for nearly every model, bilinear for CLIPA's.
    public var interpolation: Interpolation {
        get { preprocessing.interpolation }
        set { preprocessing.interpolation = newValue }
    }

    /// The mean OpenAI's models were trained with (R, G, B).
    public static var openAIMean: [Float] { Preprocessing.openAIMean }
    /// The standard deviation OpenAI's models were trained with (R, G, B).
    public static var openAIStd: [Float] { Preprocessing.openAIStd }

    /// A preprocessor applying a model's `preprocessing`.
    public init(_ preprocessing: Preprocessing, applyEXIFOrientation: Bool = false, maxPixels: Int = 178_956_970) {
        self.preprocessing = preprocessing
        self.applyEXIFOrientation = applyEXIFOrientation
        self.maxPixels = maxPixels
    }

    /// A preprocessor for `resolution × resolution` inputs, normalised with `mean` and `std` (three values each).
    public init(resolution: Int = 224, mean: [Float] = Preprocessing.openAIMean, std: [Float] = Preprocessing.openAIStd,
                applyEXIFOrientation: Bool = false, maxPixels: Int = 178_956_970, resizeMode: ResizeMode = .shortest,
                interpolation: Interpolation = .bicubic) {
        self.init(Preprocessing(resolution: resolution, mean: mean, std: std, resizeMode: resizeMode,
                                interpolation: interpolation),
                  applyEXIFOrientation: applyEXIFOrientation, maxPixels: maxPixels)
    }

    /// Decodes and preprocesses image files → [N, 3, resolution, resolution] ([N, valuesPerImage] for NaFlex), in
    /// parallel on all cores. Fails on the first unreadable file (in input order), naming it.
    public func tensor(files: [String]) throws(ImageError) -> Tensor {
        try validate(name: files.first ?? "preprocessing")
        let plane = preprocessing.valuesPerImage
        var out = [Float](repeating: 0, count: files.count * plane)
        var errors = [ImageError?](repeating: nil, count: files.count)
        out.withUnsafeMutableBufferPointer { op in
            errors.withUnsafeMutableBufferPointer { ep in
                let o = op.baseAddress!, e = ep.baseAddress!
                let budget = DecodeBudget(bytes: Self.decodeMemoryBudget)
                parallelFor(files.count) { i in
                    do throws(ImageError) {
                        try decodeAndProcess(readFile(files[i]), name: files[i], budget: budget, into: o + i * plane)
                    } catch {
                        e[i] = error
                    }
                }
            }
        }
        if let first = errors.compactMap({ $0 }).first { throw first }
        return Tensor(uncheckedShape: preprocessing.batchShape(files.count), scalars: out)
    }

    /// Bytes of decoded images in flight at once when files are decoded in parallel.
    public static let decodeMemoryBudget = 512 << 20

    /// What decoding `data` may take at its peak: the pixels at up to 8 bytes each (RGBA, 16-bit samples
    /// included) and a working copy; a header that cannot be read costs nothing here (the decoder refuses it).
    static func decodeCost(_ data: [UInt8]) -> Int { decodeCost(ImageFormat.dimensions(data)) }

    /// The same from a size already probed (nil: unknown, 0).
    static func decodeCost(_ size: (width: Int, height: Int)?) -> Int {
        guard let size else { return 0 }
        let (pixels, overflow) = size.width.multipliedReportingOverflow(by: size.height)
        return overflow || pixels > Int.max / 8 ? Int.max : pixels * 8
    }

    /// Preprocesses one file → [3, resolution, resolution] values (`Preprocessing.PatchBudget`'s layout for NaFlex).
    public func pixels(file: String) throws(ImageError) -> [Float] {
        try validate(name: file)
        var out = [Float](repeating: 0, count: preprocessing.valuesPerImage)
        let data = try readFile(file)
        try out.withUnsafeMutableBufferPointer { (p) throws(ImageError) in
            try decodeAndProcess(data, name: file, budget: DecodeBudget(bytes: Self.decodeMemoryBudget),
                                 into: p.baseAddress!)
        }
        return out
    }

    /// Preprocesses an encoded image already read (the bytes of a JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF file) → [3, resolution,
    /// resolution] values; `name` is what errors call it.
    public func pixels(encoded data: [UInt8], name: String) throws(ImageError) -> [Float] {
        try validate(name: name)
        var out = [Float](repeating: 0, count: preprocessing.valuesPerImage)
        try out.withUnsafeMutableBufferPointer { (p) throws(ImageError) in
            try decodeAndProcess(data, name: name, budget: Self.sharedBudget, into: p.baseAddress!)
        }
        return out
    }

    /// The budget of decodes started one by one from several threads (`pixels(encoded:name:)`).
    static let sharedBudget = DecodeBudget(bytes: decodeMemoryBudget)

    /// Reads an image file as `pixels(file:)` does (a regular file, at most 2 GiB), for callers that also need
    /// the bytes (to hash them, say).
    public static func readImageFile(_ path: String) throws(ImageError) -> [UInt8] {
        try readFile(path)
    }

    /// Preprocesses an image already in memory (an 8-bit RGB or RGBA buffer, rows top to bottom)
    /// → [3, resolution, resolution] values.
    public func pixels(rgb buffer: [UInt8], width: Int, height: Int, hasAlpha: Bool, name: String = "pixel buffer") throws(ImageError) -> [Float] {
        let channels = hasAlpha ? 4 : 3
        guard width > 0, height > 0, width.multipliedReportingOverflow(by: height).overflow == false,
              buffer.count == width * height * channels else {
            throw ImageError(file: name, .invalidBuffer("buffer holds \(buffer.count) bytes; \(width)×\(height) \(hasAlpha ? "RGBA" : "RGB") needs \(width * height * channels)"))
        }
        guard width * height <= maxPixels else {
            throw ImageError(file: name, .tooManyPixels("image is \(width)x\(height) = \(width * height) pixels, more than the limit of \(maxPixels)"))
        }
        return try pixels(DecodedImage(width: width, height: height, mode: hasAlpha ? .rgba : .rgb, pixels: buffer), name: name)
    }

    /// Preprocesses a decoded image → [3, resolution, resolution] values.
    public func pixels(_ image: DecodedImage, name: String = "image") throws(ImageError) -> [Float] {
        try validate(name: name)
        var out = [Float](repeating: 0, count: preprocessing.valuesPerImage)
        try out.withUnsafeMutableBufferPointer { (p) throws(ImageError) in try process(image, name: name, into: p.baseAddress!) }
        return out
    }

    func validate(name: String) throws(ImageError) {
        guard resolution >= 1, resolution <= 16384 else {
            throw ImageError(file: name, .invalidBuffer("resolution \(resolution) is outside 1...16384"))
        }
        if let b = preprocessing.patchBudget, !b.isValid {
            throw ImageError(file: name, .invalidBuffer("a budget of \(b.maxPatches) patches of \(b.patchSize) pixels is outside the limits (patches 1...\(Preprocessing.PatchBudget.maximumPatchSize) pixels, at most \(Preprocessing.PatchBudget.maximumValues) values per image)"))
        }
        guard mean.count == 3, std.count == 3, std.allSatisfy({ $0 != 0 && $0.isFinite }) else {
            throw ImageError(file: name, .invalidBuffer("mean and std need three values each, std non-zero"))
        }
    }

    // MARK: - The pipeline

    /// The size torchvision's `Resize(resolution)` gives: shorter side = resolution, longer side scaled and
    /// truncated as Python's `int(resolution * long / short)`.
    public static func resizedSize(width w: Int, height h: Int, resolution r: Int) -> (width: Int, height: Int) {
        let (short, long) = w <= h ? (w, h) : (h, w)
        let newLong = Int(Double(r * long) / Double(short))
        return w <= h ? (r, newLong) : (newLong, r)
    }

    /// The 8-bit RGB image the reference normalises: resized in the image's mode, centre-cropped and
    /// converted to RGB → `resolution × resolution × 3` bytes, rows top to bottom. For NaFlex, the whole image
    /// resized to `Preprocessing.PatchBudget.targetSize`, uncropped.
    public func croppedRGB(_ input: DecodedImage, name: String = "image") throws(ImageError) -> [UInt8] {
        try croppedRGBAndSize(input, name: name).rgb
    }

    /// `croppedRGB` with its size.
    func croppedRGBAndSize(_ input: DecodedImage, name: String) throws(ImageError) -> (rgb: [UInt8], width: Int, height: Int) {
        try validate(name: name)
        var image = input
        if applyEXIFOrientation { image = image.exifTransposed() }
        // transformers' image processors take RGB: `load_image` converts before resizing (Pillow's convert("RGB"):
        // alpha dropped, palette looked up, CMYK converted), where torchvision's transform resizes in the image's
        // mode. Gray resizes the same either way.
        if preprocessing.patchBudget != nil, ![.rgb, .gray].contains(image.mode) { image = rgbConverted(image) }
        let g = try cropGeometry(width: image.width, height: image.height, name: name)
        let region = try resizedWindow(image, width: g.width, height: g.height, x: g.x, y: g.y, w: g.w, h: g.h,
                                       name: name)
        return (rgbCrop(region, g, mode: image.mode, palette: image.palette), g.outWidth, g.outHeight)
    }

    /// The crop as RGB bytes [outHeight, outWidth, 3] from the resized window `region` in `mode`. torchvision
    /// pads with 0 outside the image in the image's own mode, before the conversion to RGB: black for most modes,
    /// white for CMYK, palette entry 0 for a palette image.
    func rgbCrop(_ region: [UInt8], _ g: CropGeometry, mode: PixelMode, palette: [UInt8]) -> [UInt8] {
        let (ow, oh, ch) = (g.outWidth, g.outHeight, mode.channels)
        var rgb = [UInt8](repeating: 0, count: ow * oh * 3)
        if g.w < ow || g.h < oh {
            let zero = [UInt8](repeating: 0, count: ch)
            let fill = zero.withUnsafeBufferPointer { toRGB($0.baseAddress!, mode, palette) }
            if fill != (0, 0, 0) {
                for i in 0..<(ow * oh) { (rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]) = fill }
            }
        }
        region.withUnsafeBufferPointer { src in
            for y in 0..<g.h {
                for x in 0..<g.w {
                    let px = toRGB(src.baseAddress! + (y * g.w + x) * ch, mode, palette)
                    let o = ((y + g.y - g.top) * ow + (x + g.x - g.left)) * 3
                    rgb[o] = px.0
                    rgb[o + 1] = px.1
                    rgb[o + 2] = px.2
                }
            }
        }
        return rgb
    }

    /// The `w × h` window at `(x, y)` of `image` resized to `width × height`, in the image's own mode →
    /// `w × h × channels` bytes. Only the window is resampled.
    private func resizedWindow(_ image: DecodedImage, width nw: Int, height nh: Int, x wx: Int, y wy: Int, w ww: Int,
                               h wh: Int, name: String) throws(ImageError) -> [UInt8] {
        let ch = image.mode.channels
        if (nw, nh) == (image.width, image.height) {
            return Self.window(of: image.pixels, width: nw, channels: ch, x: wx, y: wy, w: ww, h: wh)
        }
        switch image.mode {
        case .palette, .bilevel:
            var full = [UInt8](repeating: 0, count: nw * nh * ch)
            image.pixels.withUnsafeBufferPointer { s in
                full.withUnsafeMutableBufferPointer { d in
                    clip_resize_nearest(s.baseAddress!, Int32(image.width), Int32(image.height), Int32(ch),
                                        d.baseAddress!, Int32(nw), Int32(nh))
                }
            }
            return Self.window(of: full, width: nw, channels: ch, x: wx, y: wy, w: ww, h: wh)
        case .rgba, .grayAlpha:
            var region = try resampled(image.pixels, image.width, image.height, ch, nw, nh, wx, wy, ww, wh, name,
                                     premultiplied: true)
            unpremultiply(&region, channels: ch)
            return region
        case .gray, .rgb, .cmyk:
            return try resampled(image.pixels, image.width, image.height, ch, nw, nh, wx, wy, ww, wh, name)
        case .gray16:
            return try resampled16(image.pixels, image.width, image.height, nw, nh, wx, wy, ww, wh, name)
        }
    }

    /// Rows `y..<y+h`, columns `x..<x+w` of a `width`-pixel-wide interleaved image.
    private static func window(of pixels: [UInt8], width: Int, channels ch: Int, x: Int, y: Int, w: Int,
                               h: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: w * h * ch)
        for row in 0..<h {
            let s = ((row + y) * width + x) * ch
            out.replaceSubrange((row * w * ch)..<((row + 1) * w * ch), with: pixels[s..<(s + w * ch)])
        }
        return out
    }

    func process(_ image: DecodedImage, name: String, into out: UnsafeMutablePointer<Float>) throws(ImageError) {
        let (rgb, width, height) = try croppedRGBAndSize(image, name: name)
        normalize(rgb, width: width, height: height, into: out)
    }

    /// `ToTensor` and `Normalize` of the crop's RGB bytes (`width` × `height`) → [3, resolution, resolution] values in
    /// `out`, or with a patch budget its grid and patch rows (`Preprocessing.PatchBudget`).
    func normalize(_ rgb: [UInt8], width: Int, height: Int, into out: UnsafeMutablePointer<Float>) {
        if let budget = preprocessing.patchBudget {
            patchRows(rgb, width: width, height: height, budget: budget, into: out)
            return
        }
        let plane = resolution * resolution
        let table = normalizationTable()
        rgb.withUnsafeBufferPointer { px in
            table.withUnsafeBufferPointer { t in
                let px = px.baseAddress!, t = t.baseAddress!
                for i in 0..<plane {
                    out[i] = t[Int(px[i * 3])]
                    out[plane + i] = t[256 + Int(px[i * 3 + 1])]
                    out[2 * plane + i] = t[512 + Int(px[i * 3 + 2])]
                }
            }
        }
    }

    /// ToTensor then Normalize of every byte value, per channel → [3·256]: in float32 and in this order, as torch
    /// computes them; a byte has 256 values, so each channel's results are tabulated once per image instead of two
    /// divisions per sample.
    func normalizationTable() -> [Float] {
        var table = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c] }
        }
        return table
    }

    /// The window [wx, wx+ww) × [wy, wy+wh) of Pillow's resize of `src` (w × h) to nw × nh with `interpolation`.
    private func resampled(_ src: [UInt8], _ w: Int, _ h: Int, _ ch: Int, _ nw: Int, _ nh: Int, _ wx: Int, _ wy: Int,
                         _ ww: Int, _ wh: Int, _ name: String, premultiplied: Bool = false) throws(ImageError) -> [UInt8] {
        var dst = [UInt8](repeating: 0, count: ww * wh * ch)
        let rc = src.withUnsafeBufferPointer { s in
            dst.withUnsafeMutableBufferPointer { d in
                clip_resample_window(s.baseAddress!, Int32(w), Int32(h), Int32(ch), Int32(nw), Int32(nh),
                                     Int32(wx), Int32(wy), Int32(ww), Int32(wh), premultiplied ? 1 : 0,
                                     interpolation.filter, d.baseAddress!)
            }
        }
        if rc != 0 { throw ImageError(file: name, .corrupt("out of memory while resizing \(w)x\(h) to \(nw)x\(nh)")) }
        return dst
    }

    /// Pillow's 16-bit resampling of an "I;16" image; bytes in and out are little-endian samples.
    private func resampled16(_ src: [UInt8], _ w: Int, _ h: Int, _ nw: Int, _ nh: Int, _ wx: Int, _ wy: Int,
                           _ ww: Int, _ wh: Int, _ name: String) throws(ImageError) -> [UInt8] {
        let samples = (0..<(w * h)).map { UInt16(src[2 * $0]) | UInt16(src[2 * $0 + 1]) << 8 }
        var out = [UInt16](repeating: 0, count: ww * wh)
        let rc = samples.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                clip_resample16_window(s.baseAddress!, Int32(w), Int32(h), Int32(nw), Int32(nh), Int32(wx),
                                       Int32(wy), Int32(ww), Int32(wh), interpolation.filter, d.baseAddress!)
            }
        }
        if rc != 0 { throw ImageError(file: name, .corrupt("out of memory while resizing \(w)x\(h) to \(nw)x\(nh)")) }
        return out.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
    }

    /// Pillow's RGBa → RGBA: colour × 255 / alpha (integer division, clipped), unchanged at alpha 0 or 255.
    func unpremultiply(_ p: inout [UInt8], channels ch: Int) {
        p.withUnsafeMutableBufferPointer { b in
            var i = 0
            while i < b.count {
                let a = UInt32(b[i + ch - 1])
                if a != 0 && a != 255 {
                    for c in 0..<(ch - 1) { b[i + c] = UInt8(min(255, 255 * UInt32(b[i + c]) / a)) }
                }
                i += ch
            }
        }
    }

    /// Pillow's `convert("RGB")` of one pixel.
    @inline(__always)
    func toRGB(_ p: UnsafePointer<UInt8>, _ mode: PixelMode, _ palette: [UInt8]) -> (UInt8, UInt8, UInt8) {
        switch mode {
        case .gray, .grayAlpha, .bilevel: return (p[0], p[0], p[0])
        case .rgb, .rgba: return (p[0], p[1], p[2])
        case .gray16:
            // Pillow's "I;16" → "RGB" clips samples above 255.
            let v = UInt8(min(Int(p[0]) | Int(p[1]) << 8, 255))
            return (v, v, v)
        case .palette:
            let i = Int(p[0]) * 3
            return i + 2 < palette.count ? (palette[i], palette[i + 1], palette[i + 2]) : (0, 0, 0)
        case .cmyk:
            let nk = 255 - Int(p[3])
            func ch(_ c: UInt8) -> UInt8 {
                let t = Int(c) * nk + 128
                return UInt8(max(0, min(255, nk - (((t >> 8) + t) >> 8))))
            }
            return (ch(p[0]), ch(p[1]), ch(p[2]))
        }
    }

}

extension DecodedImage {
    /// The image as Pillow's `ImageOps.exif_transpose` returns it: turned and flipped by its EXIF orientation
    /// (2–8), which then reads 1; as it is for orientation 1, none, or a value outside 1–8.
    public func exifTransposed() -> DecodedImage {
        guard let o = exifOrientation, (2...8).contains(o) else { return self }
        return Self.transposed(self, orientation: o)
    }

    static func transposed(_ img: DecodedImage, orientation: Int) -> DecodedImage {
        let (w, h, ch) = (img.width, img.height, img.mode.channels)
        let swaps = orientation >= 5
        let (ow, oh) = swaps ? (h, w) : (w, h)
        var out = [UInt8](repeating: 0, count: img.pixels.count)
        for y in 0..<oh {
            for x in 0..<ow {
                let (sx, sy): (Int, Int)
                switch orientation {
                case 2: (sx, sy) = (w - 1 - x, y)               // mirror horizontally
                case 3: (sx, sy) = (w - 1 - x, h - 1 - y)       // rotate 180
                case 4: (sx, sy) = (x, h - 1 - y)               // mirror vertically
                case 5: (sx, sy) = (y, x)                       // transpose
                case 6: (sx, sy) = (y, h - 1 - x)               // rotate 90 clockwise
                case 7: (sx, sy) = (w - 1 - y, h - 1 - x)       // transverse
                default: (sx, sy) = (w - 1 - y, x)              // 8: rotate 90 counter-clockwise
                }
                for c in 0..<ch { out[(y * ow + x) * ch + c] = img.pixels[(sy * w + sx) * ch + c] }
            }
        }
        var result = img
        result.width = ow
        result.height = oh
        result.pixels = out
        result.exifOrientation = 1
        return result
    }
}

/// Reads a whole file, refusing directories and reporting the OS error.
/// The bytes of an image file: a regular file only (a FIFO or device is refused without blocking), at most
/// `maxImageFileSize` bytes.
func readFile(_ path: String) throws(ImageError) -> [UInt8] {
    do { return try RegularFile.contents(of: path, limit: maxImageFileSize) } catch {
        throw ImageError(file: path, .unreadable(error.reason))
    }
}

/// The largest image file read (a 178-megapixel PNG at 16 bits per channel, barely compressible, fits).
let maxImageFileSize = 2 << 30

/// Admits decodes while their summed cost stays within `bytes`; one that alone exceeds it runs by itself.
final class DecodeBudget: @unchecked Sendable {
    private let condition = NSCondition()
    private let bytes: Int
    private var inFlight = 0

    init(bytes: Int) { self.bytes = bytes }

    func acquire(_ cost: Int) {
        condition.lock()
        while inFlight > 0 && inFlight + cost > bytes { condition.wait() }
        inFlight += cost
        condition.unlock()
    }

    func release(_ cost: Int) {
        condition.lock()
        inFlight -= cost
        condition.broadcast()
        condition.unlock()
    }
}
