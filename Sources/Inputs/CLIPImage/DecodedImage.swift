import CCLIPImage
import Foundation

/// How decoded pixels are laid out, named after the Pillow mode the reference pipeline holds them in; the
/// mode decides how the image is resized (palette and bilevel images with NEAREST, alpha premultiplied).
public enum PixelMode: Sendable, Equatable {
    case gray, grayAlpha, rgb, rgba, cmyk, palette, bilevel
    /// 16-bit gray (Pillow's "I;16"), two little-endian bytes per pixel.
    case gray16

    /// Bytes per pixel.
    public var channels: Int {
        switch self {
        case .gray, .palette, .bilevel: return 1
        case .grayAlpha, .gray16: return 2
        case .rgb: return 3
        case .rgba, .cmyk: return 4
        }
    }
}

/// An image as decoded, before any resampling: `width × height × mode.channels` bytes, rows top to bottom.
public struct DecodedImage: Sendable {
    /// Pixels per row.
    public var width: Int
    /// Rows.
    public var height: Int
    /// How each pixel is stored (channels and their meaning).
    public var mode: PixelMode
    /// `width × height × mode.channels` bytes (two little-endian bytes per sample for `.gray16`), rows top to bottom.
    public var pixels: [UInt8]
    /// RGB triples for `.palette` images.
    public var palette: [UInt8]
    /// The EXIF orientation tag (1–8) when the file carries one.
    public var exifOrientation: Int?

    /// An image from its parts; `pixels` must hold `width × height × mode.channels` bytes.
    public init(width: Int, height: Int, mode: PixelMode, pixels: [UInt8], palette: [UInt8] = [], exifOrientation: Int? = nil) {
        self.width = width
        self.height = height
        self.mode = mode
        self.pixels = pixels
        self.palette = palette
        self.exifOrientation = exifOrientation
    }
}

/// Why an image could not be read. `description` names the file and the problem.
public struct ImageError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public enum Problem: Equatable, Sendable {
        case unreadable(String)
        case empty
        /// What the data looks like instead ("text", "a PDF document"): its kind, never its bytes, since an
        /// error may be stored, logged or served where the file itself must not be.
        case unknownFormat(looksLike: String)
        case unsupported(String)
        case corrupt(String)
        case tooManyPixels(String)
        case invalidBuffer(String)
    }

    /// The file (or the name given for an in-memory image).
    public let file: String
    /// What went wrong with it.
    public let problem: Problem

    /// An error for `file`.
    public init(file: String, _ problem: Problem) {
        self.file = file
        self.problem = problem
    }

    public var description: String {
        let what: String
        switch problem {
        case .unreadable(let m): what = "cannot read: \(m)"
        case .empty: what = "file is empty (0 bytes)"
        case .unknownFormat(let kind): what = "not a JPEG, PNG, WebP, HEIC, AVIF, GIF, BMP or TIFF image (it looks like \(kind))"
        case .unsupported(let m): what = m
        case .corrupt(let m): what = m
        case .tooManyPixels(let m): what = m
        case .invalidBuffer(let m): what = m
        }
        return "\(file): \(what)"
    }
}

/// The image formats the decoders read.
public enum ImageFormat: String, Sendable {
    case jpeg, png, webp
    /// HEIF (HEIC from iPhones) and AVIF, through libheif.
    case heif
    /// GIF (the first frame), BMP and TIFF (the first page, turned by its Orientation tag as Pillow turns it).
    case gif, bmp, tiff
    /// Camera RAW through LibRaw (CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2, PEF, …): the full-size JPEG preview, else
    /// the demosaiced sensor data, shown as the camera was held.
    case cameraRaw

    /// File-name extensions (lowercase, without the dot) of the formats the decoders read.
    public static let fileExtensions: Set<String> = ["jpg", "jpeg", "png", "webp", "heic", "heif", "hif", "avif",
                                                     "gif", "bmp", "dib", "tif", "tiff",
                                                     // camera RAW
                                                     "dng", "cr2", "cr3", "crw", "nef", "nrw", "arw", "srf", "sr2", "raf",
                                                     "orf", "rw2", "rwl", "pef", "srw", "3fr", "iiq", "erf", "kdc", "mrw", "x3f"]

    /// ISO-media brands of still images libheif decodes (HEVC-coded HEIF and AV1-coded AVIF, single images and
    /// collections); other `ftyp` files are videos.
    static let heifBrands: Set<String> = ["heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1",
                                          "avif", "avis"]

    /// Extensions of the formats every browser shows as they are (HEIC only Safari, TIFF and RAW none: those are
    /// shown as a preview decoded here).
    public static let browserExtensions: Set<String> = ["jpg", "jpeg", "png", "webp", "avif", "gif", "bmp", "dib"]

    /// Whether a path's extension names a format every browser shows (case-insensitive).
    public static func isBrowserViewable(_ path: String) -> Bool {
        lowercasedExtension(path).map(browserExtensions.contains) ?? false
    }

    /// Whether a path's extension names a readable format (case-insensitive).
    public static func hasImageExtension(_ path: String) -> Bool {
        lowercasedExtension(path).map(fileExtensions.contains) ?? false
    }

    /// A path's file-name extension, lowercased, without the dot; nil when the last component has none.
    static func lowercasedExtension(_ path: String) -> String? {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return nil }
        return path[path.index(after: dot)...].lowercased()
    }

    /// Width and height from an encoded image's header, without decoding it; nil when the header cannot be read.
    public static func dimensions(_ data: [UInt8]) -> (width: Int, height: Int)? {
        var w: UInt32 = 0, h: UInt32 = 0
        let ok = data.withUnsafeBytes { raw in
            raw.baseAddress.map { clip_image_probe($0.assumingMemoryBound(to: UInt8.self), raw.count, &w, &h) == 0 } ?? false
        }
        return ok ? (Int(w), Int(h)) : nil
    }

    /// Whether ISO-media bytes are AVIF (read by libavif) rather than HEIC (libheif): the major brand, or a general
    /// one (mif1) that lists AVIF and not HEIC among the compatible brands.
    public static func isAVIF(_ data: [UInt8]) -> Bool {
        data.withUnsafeBufferPointer { $0.baseAddress.map { clip_isobmff_is_avif($0, data.count) != 0 } ?? false }
    }

    /// The format named by a file's first bytes, or nil.
    package static func sniff(_ bytes: UnsafeRawBufferPointer) -> ImageFormat? {
        if let base = bytes.baseAddress, clip_is_camera_raw(base.assumingMemoryBound(to: UInt8.self), bytes.count) != 0 {
            return .cameraRaw
        }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8 && Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        if bytes.count >= 12 && Array(bytes[0..<4]) == Array("RIFF".utf8) && Array(bytes[8..<12]) == Array("WEBP".utf8) {
            return .webp
        }
        if bytes.count >= 12 && Array(bytes[4..<8]) == Array("ftyp".utf8),
           heifBrands.contains(String(decoding: bytes[8..<12], as: UTF8.self)) {
            return .heif
        }
        if bytes.count >= 6 && (Array(bytes[0..<6]) == Array("GIF87a".utf8) || Array(bytes[0..<6]) == Array("GIF89a".utf8)) {
            return .gif
        }
        if bytes.count >= 14 && bytes[0] == 0x42 && bytes[1] == 0x4D { return .bmp }
        if bytes.count >= 8 && (Array(bytes[0..<4]) == [0x49, 0x49, 0x2A, 0x00] || Array(bytes[0..<4]) == [0x4D, 0x4D, 0x00, 0x2A]) {
            return .tiff
        }
        return nil
    }
}

/// What unrecognised data looks like, by its signature or, failing that, its bytes' range: a kind, never content.
func describeContent(_ bytes: UnsafeRawBufferPointer) -> String {
    let head = Array(bytes.prefix(64))
    func starts(_ s: String) -> Bool { head.starts(with: Array(s.utf8)) }
    if starts("GIF8") { return "a GIF file of an unknown version" }
    if starts("BM") { return "a truncated BMP image" }
    if head.starts(with: [0x49, 0x49, 0x2A, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { return "a truncated TIFF image" }
    if head.starts(with: [0x49, 0x49, 0x2B, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2B]) {
        return "a BigTIFF image, which is not supported"
    }
    if head.count >= 12 && Array(head[4..<8]) == Array("ftyp".utf8) {
        return "an MP4/QuickTime video or other ISO media file"
    }
    if starts("%PDF") { return "a PDF document" }
    if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return "a ZIP archive (or a document stored as one)" }
    if head.starts(with: [0x1F, 0x8B]) { return "gzip-compressed data" }
    if starts("SQLite format 3") { return "an SQLite database" }
    if head.starts(with: [0x7F, 0x45, 0x4C, 0x46]) { return "an executable (ELF)" }
    let text = head.allSatisfy { $0 == 0x09 || $0 == 0x0A || $0 == 0x0D || ($0 >= 0x20 && $0 != 0x7F) }
    if text, String(validating: head.prefix { $0 < 0x80 }, as: UTF8.self) != nil {
        let trimmed = head.drop { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        return trimmed.first == UInt8(ascii: "<") ? "HTML or XML text" : "text"
    }
    return "binary data of no known image format"
}

/// Decodes JPEG, PNG, WebP, HEIF/HEIC, AVIF, GIF, BMP and TIFF data. `maxPixels` is checked against the header before pixel memory is
/// allocated (Pillow refuses above 178,956,970 pixels, twice its warning threshold).
public func decodeImage(_ data: [UInt8], name: String, maxPixels: Int = 178_956_970) throws(ImageError) -> DecodedImage {
    guard !data.isEmpty else { throw ImageError(file: name, .empty) }
    let result = data.withUnsafeBytes { raw in
        Result { () throws(ImageError) -> DecodedImage in try decode(raw, name, maxPixels) }
    }
    return try result.get()
}

private func decode(_ raw: UnsafeRawBufferPointer, _ name: String, _ maxPixels: Int) throws(ImageError) -> DecodedImage {
    guard let format = ImageFormat.sniff(raw) else {
        throw ImageError(file: name, .unknownFormat(looksLike: describeContent(raw)))
    }
    let base = raw.bindMemory(to: UInt8.self).baseAddress!
    // The pixels are decoded straight into the array that keeps them (at most 4 bytes a pixel; pages past what
    // the decoder writes are never touched), so a large image is not held twice while it is copied.
    var w: UInt32 = 0, h: UInt32 = 0
    let probed = clip_image_probe(base, raw.count, &w, &h) == 0 && UInt64(w) * UInt64(h) <= UInt64(max(maxPixels, 0))
    let capacity = probed ? Int(w) * Int(h) * 4 : 0
    var img = clip_image()
    var failure: ImageError?
    let pixels = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
        img.buffer = buffer.baseAddress
        img.buffer_capacity = buffer.count
        var err = [CChar](repeating: 0, count: 512)
        let limit = UInt64(max(maxPixels, 0))
        let code: Int32
        switch format {
        case .jpeg: code = clip_decode_jpeg(base, raw.count, limit, &img, &err, err.count)
        case .png: code = clip_decode_png(base, raw.count, limit, &img, &err, err.count)
        case .webp: code = clip_decode_webp(base, raw.count, limit, &img, &err, err.count)
        case .heif:
            code = clip_isobmff_is_avif(base, raw.count) != 0 ? clip_decode_avif(base, raw.count, limit, &img, &err, err.count)
                : clip_decode_heif(base, raw.count, limit, &img, &err, err.count)
        case .gif: code = clip_decode_gif(base, raw.count, limit, &img, &err, err.count)
        case .bmp: code = clip_decode_bmp(base, raw.count, limit, &img, &err, err.count)
        case .tiff: code = clip_decode_tiff(base, raw.count, limit, &img, &err, err.count)
        case .cameraRaw: code = clip_decode_raw(base, raw.count, limit, &img, &err, err.count)
        }
        failure = decodeError(code, err, name: name)
        initialized = failure == nil && img.owns_pixels == 0 ? Int(img.width) * Int(img.height) * Int(img.channels) : 0
    }
    defer { clip_image_free(&img) }
    if let failure { throw failure }
    let mode = PixelMode(decoded: img.mode)
    let count = Int(img.width) * Int(img.height) * mode.channels
    // Decoded elsewhere (a header the probe could not read): copied once.
    let owned = img.owns_pixels == 0 ? pixels : Array(UnsafeBufferPointer(start: img.pixels, count: count))
    let palette = withUnsafeBytes(of: img.palette) { Array($0.prefix(Int(img.palette_size) * 3)) }
    let image = DecodedImage(width: Int(img.width), height: Int(img.height), mode: mode, pixels: owned,
                             palette: palette, exifOrientation: declaredOrientation(img))
    // Pillow turns a TIFF as it loads it (and forgets the tag), RAW viewers turn a RAW's preview: so does this,
    // whatever the caller's setting.
    if (2...8).contains(Int(img.orientation)) {
        var turned = DecodedImage.transposed(image, orientation: Int(img.orientation))
        turned.exifOrientation = nil
        return turned
    }
    return image
}

extension PixelMode {
    /// The mode a C decoder reported (`CLIP_MODE_*`).
    init(decoded mode: Int32) {
        switch Int(mode) {
        case Int(CLIP_MODE_L): self = .gray
        case Int(CLIP_MODE_LA): self = .grayAlpha
        case Int(CLIP_MODE_RGB): self = .rgb
        case Int(CLIP_MODE_RGBA): self = .rgba
        case Int(CLIP_MODE_CMYK): self = .cmyk
        case Int(CLIP_MODE_P): self = .palette
        case Int(CLIP_MODE_I16): self = .gray16
        default: self = .bilevel
        }
    }
}

/// The error a C decoder's result code and message stand for, or nil for success.
func decodeError(_ code: Int32, _ err: [CChar], name: String) -> ImageError? {
    let message = String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    switch Int(code) {
    case Int(CLIP_IMAGE_OK): return nil
    case Int(CLIP_IMAGE_TOO_LARGE): return ImageError(file: name, .tooManyPixels(message))
    case Int(CLIP_IMAGE_UNSUPPORTED): return ImageError(file: name, .unsupported(message))
    default: return ImageError(file: name, .corrupt(message))
    }
}

/// The orientation a decoded header declares, as Pillow's `getexif` reads it: EXIF's Orientation tag, else XMP's
/// tiff:Orientation; nil for none.
func declaredOrientation(_ img: clip_image) -> Int? {
    if let exif = img.exif, img.exif_size > 0, let tag = exifOrientationTag(UnsafeRawBufferPointer(start: exif, count: img.exif_size)) {
        // The tag is there: Pillow looks no further, and a value outside 1–8 turns nothing.
        return (1...8).contains(tag) ? tag : nil
    }
    return (1...8).contains(Int(img.xmp_orientation)) ? Int(img.xmp_orientation) : nil
}

/// Reads the Orientation tag (0x0112) from a TIFF-structured EXIF block; nil when absent or malformed.
func exifOrientation(_ b: UnsafeRawBufferPointer) -> Int? {
    exifOrientationTag(b).flatMap { (1...8).contains($0) ? $0 : nil }
}

/// The Orientation tag's value, whatever it is, when the block holds the tag as SHORT or LONG; nil when it does not.
func exifOrientationTag(_ b: UnsafeRawBufferPointer) -> Int? {
    guard b.count >= 8 else { return nil }
    let little: Bool
    if b[0] == 0x49 && b[1] == 0x49 { little = true } else if b[0] == 0x4D && b[1] == 0x4D { little = false } else { return nil }
    func u16(_ o: Int) -> Int? {
        guard o >= 0, o + 2 <= b.count else { return nil }
        return little ? Int(b[o]) | Int(b[o + 1]) << 8 : Int(b[o]) << 8 | Int(b[o + 1])
    }
    func u32(_ o: Int) -> Int? {
        guard let a = u16(o), let c = u16(o + 2) else { return nil }
        return little ? a | c << 16 : a << 16 | c
    }
    guard let ifd = u32(4), let n = u16(ifd) else { return nil }
    for i in 0..<min(n, 1000) {
        let e = ifd + 2 + i * 12
        guard let tag = u16(e) else { return nil }
        // SHORT as the standard says, or LONG as some writers store it (Pillow reads either).
        if tag == 0x0112, let type = u16(e + 2), let v = type == 3 ? u16(e + 8) : type == 4 ? u32(e + 8) : nil { return v }
    }
    return nil
}
