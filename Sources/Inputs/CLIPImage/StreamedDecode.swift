import CCLIPImage

// Large JPEGs and PNGs are decoded a row at a time straight into the resampler, which keeps only the horizontally
// resampled rows of the crop window: a 179-megapixel RGBA PNG needs about 13 MB instead of 716 MB, so several decode
// at once within the memory budget. Pillow resizes exactly this way (horizontal pass per source row, then the
// vertical pass), so the bytes are the same as decoding the whole image first; the tests compare both paths.

extension ImagePreprocessor {
    /// Below this many pixels an image is decoded whole: the streamed path saves memory, not time.
    static let streamingThreshold = 4 << 20

    /// Decodes `data` and preprocesses it into `out` ([3, resolution, resolution] values), holding at most
    /// `budget`'s share of memory while decoding.
    func decodeAndProcess(_ data: [UInt8], name: String, budget: DecodeBudget,
                          into out: UnsafeMutablePointer<Float>) throws(ImageError) {
        if let (rgb, width, height) = try streamedCrop(data, name: name, budget: budget) {
            normalize(rgb, width: width, height: height, into: out)
            return
        }
        // A size the crop refuses (an extreme aspect ratio) is refused from the header, before seconds of decoding.
        let size = ImageFormat.dimensions(data)
        if let size { _ = try cropGeometry(width: size.width, height: size.height, name: name) }
        // Large images decoded whole take turns: two 178-megapixel RGBA PNGs at once would need gigabytes.
        let cost = Self.decodeCost(size)
        budget.acquire(cost)
        defer { budget.release(cost) }
        try process(decodeImage(data, name: name, maxPixels: maxPixels), name: name, into: out)
    }

    /// The crop's RGB bytes of an encoded image through the streamed path whatever its size, or nil where that
    /// path does not apply: for tests, which compare it with decoding whole.
    package func streamedCroppedRGB(_ data: [UInt8], name: String) throws(ImageError) -> [UInt8]? {
        try validate(name: name)
        return try streamedCrop(data, name: name, budget: DecodeBudget(bytes: Self.decodeMemoryBudget), anySize: true)?.rgb
    }

    /// The crop's RGB bytes by streaming, or nil when this image is decoded whole instead: small images, other
    /// formats, interlaced PNGs, palette, bilevel and 16-bit images (resized by other filters), and images an EXIF
    /// orientation must turn first.
    func streamedCrop(_ data: [UInt8], name: String, budget: DecodeBudget,
                      anySize: Bool = false) throws(ImageError) -> (rgb: [UInt8], width: Int, height: Int)? {
        guard !data.isEmpty, anySize || Self.decodeCost(data) / 8 >= Self.streamingThreshold else { return nil }
        let format = data.withUnsafeBytes { ImageFormat.sniff($0) }
        guard format == .png || format == .jpeg else { return nil }
        return try data.withUnsafeBufferPointer { (bytes) throws(ImageError) -> (rgb: [UInt8], width: Int, height: Int)? in
            var stream = DecoderStream(format: format == .png ? .png : .jpeg)
            defer { stream.close() }
            var header = clip_image()
            defer { clip_image_free(&header) }
            var err = [CChar](repeating: 0, count: 512)
            let opened = stream.open(bytes.baseAddress!, bytes.count, UInt64(max(maxPixels, 0)), &header, &err)
            if let error = decodeError(opened, err, name: name) { throw error }
            let mode = PixelMode(decoded: header.mode)
            // Turned images are decoded whole (the turn needs every row first).
            let orientation = declaredOrientation(header)
            // NaFlex converts to RGB before resizing: only modes for which that changes nothing stream.
            let modes: [PixelMode] = preprocessing.patchBudget == nil ? [.gray, .grayAlpha, .rgb, .rgba, .cmyk] : [.gray, .rgb]
            guard stream.streamable, modes.contains(mode),
                  !(applyEXIFOrientation && orientation != nil && orientation != 1) else { return nil }
            let (w, h, ch) = (Int(header.width), Int(header.height), mode.channels)
            let g = try cropGeometry(width: w, height: h, name: name)
            let premultiply = mode == .rgba || mode == .grayAlpha
            guard let resampler = clip_resampler_new(Int32(w), Int32(h), Int32(ch), Int32(g.width), Int32(g.height),
                                                     Int32(g.x), Int32(g.y), Int32(g.w), Int32(g.h),
                                                     premultiply ? 1 : 0, interpolation.filter) else {
                throw ImageError(file: name, .corrupt("out of memory while resizing \(w)x\(h) to \(g.width)x\(g.height)"))
            }
            defer { clip_resampler_free(resampler) }
            // The resampler's rows and its whole-width row, and one source row.
            let cost = Int(clip_resampler_bytes(resampler)) + w * ch
            budget.acquire(cost)
            defer { budget.release(cost) }
            if let error = decodeError(stream.readRows(resampler, &err), err, name: name) { throw error }
            var region = [UInt8](repeating: 0, count: g.w * g.h * ch)
            let finished = region.withUnsafeMutableBufferPointer { clip_resampler_finish(resampler, $0.baseAddress!) }
            guard finished == 0 else { throw ImageError(file: name, .corrupt("the decoder delivered fewer rows than the image has")) }
            if premultiply { unpremultiply(&region, channels: ch) }
            return (rgbCrop(region, g, mode: mode, palette: []), g.outWidth, g.outHeight)
        }
    }
}

extension ImageFormat {
    /// What an encoded image's header says of its EXIF orientation, read as the decoders read it, without
    /// decoding its pixels (a progressive JPEG's scans are read).
    package enum OrientationRead: Equatable, Sendable {
        /// The header was read: the orientation (1–8) it declares (EXIF, else XMP's tiff:Orientation, as Pillow
        /// reads them), or nil for none. Formats whose orientation the decoders do not read declare none.
        case read(Int?)
        /// The header could not be read (damaged, over `maxPixels`, out of memory): nothing is known.
        case unreadable
    }

    package static func orientationRead(encoded data: [UInt8], maxPixels: Int = 178_956_970) -> OrientationRead {
        let format = data.withUnsafeBytes { sniff($0) }
        guard let format else { return .unreadable }
        if format == .heif {
            // AVIF reports irot/imir as an orientation (as Pillow does); libheif turns HEIC pixels itself.
            return data.withUnsafeBufferPointer { bytes -> OrientationRead in
                guard clip_isobmff_is_avif(bytes.baseAddress!, bytes.count) != 0 else { return .read(nil) }
                var header = clip_image()
                defer { clip_image_free(&header) }
                guard clip_avif_header(bytes.baseAddress!, bytes.count, &header) == 0 else { return .unreadable }
                guard let exif = header.exif, header.exif_size > 0 else { return .read(nil) }
                return .read(CLIPImage.exifOrientation(UnsafeRawBufferPointer(start: exif, count: header.exif_size)))
            }
        }
        if format == .webp {
            return data.withUnsafeBufferPointer { bytes -> OrientationRead in
                var header = clip_image()
                clip_image_reset(&header)
                defer { clip_image_free(&header) }
                guard clip_webp_metadata(bytes.baseAddress!, bytes.count, &header) == 0 else { return .unreadable }
                return .read(declaredOrientation(header))
            }
        }
        guard format == .png || format == .jpeg else { return .read(nil) }
        return data.withUnsafeBufferPointer { bytes -> OrientationRead in
            var stream = DecoderStream(format: format == .png ? .png : .jpeg)
            defer { stream.close() }
            var header = clip_image()
            defer { clip_image_free(&header) }
            var err = [CChar](repeating: 0, count: 512)
            guard stream.open(bytes.baseAddress!, bytes.count, UInt64(max(maxPixels, 0)), &header, &err) == 0 else {
                return .unreadable
            }
            return .read(declaredOrientation(header))
        }
    }

    /// The EXIF orientation (1–8) the header declares; nil when it declares none or cannot be read
    /// (`orientationRead` tells the two apart).
    package static func exifOrientation(encoded data: [UInt8], maxPixels: Int = 178_956_970) -> Int? {
        if case .read(let o) = orientationRead(encoded: data, maxPixels: maxPixels) { return o }
        return nil
    }
}

/// A JPEG or PNG decoder positioned after the header, reading rows in order.
private struct DecoderStream {
    enum Format { case png, jpeg }
    let format: Format
    private var png: OpaquePointer?
    private var jpeg: OpaquePointer?

    init(format: Format) { self.format = format }

    mutating func open(_ data: UnsafePointer<UInt8>, _ size: Int, _ maxPixels: UInt64, _ header: inout clip_image,
                       _ err: inout [CChar]) -> Int32 {
        switch format {
        case .png: return clip_png_open(data, size, maxPixels, &png, &header, &err, err.count)
        case .jpeg: return clip_jpeg_open(data, size, maxPixels, &jpeg, &header, &err, err.count)
        }
    }

    /// Whether rows arrive in order (not an interlaced PNG).
    var streamable: Bool {
        switch format {
        case .png: return png.map { clip_png_streamable($0) != 0 } ?? false
        case .jpeg: return jpeg != nil
        }
    }

    func readRows(_ resampler: OpaquePointer, _ err: inout [CChar]) -> Int32 {
        switch format {
        case .png: return clip_png_read_rows(png, resampler, &err, err.count)
        case .jpeg: return clip_jpeg_read_rows(jpeg, resampler, &err, err.count)
        }
    }

    mutating func close() {
        clip_png_close(png)
        clip_jpeg_close(jpeg)
        (png, jpeg) = (nil, nil)
    }
}
