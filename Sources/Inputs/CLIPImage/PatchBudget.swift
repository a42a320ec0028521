import CLIPTensor

// SigLIP 2's NaFlex input (transformers' Siglip2ImageProcessor): the patch budget and the layout of its patch rows.

extension Preprocessing {
    /// NaFlex's input: each image resized (both sides, aspect ratio kept, with `interpolation`) to the largest size
    /// whose sides are multiples of `patchSize` and whose patches number at most `maxPatches` (transformers'
    /// `get_image_size_for_max_num_patches`), normalised, and cut into patch rows. One image is `valuesPerImage`
    /// values: its grid's rows and columns, then `maxPatches` rows of 3·p·p values in (y, x, channel) order — the
    /// image's patches row by row, zeros past them. That is the processor's `pixel_values` with its `spatial_shapes`
    /// in front, so a batch of images of any shapes is one [N, valuesPerImage] tensor.
    public struct PatchBudget: Sendable, Hashable {
        /// Side of the square patches, in pixels.
        public var patchSize: Int
        /// Most patches an image becomes (`max_num_patches`).
        public var maxPatches: Int

        /// Largest patch side accepted.
        public static let maximumPatchSize = 64
        /// Most values one image may take (64 MiB of fp32): bounds what a configuration can make every image cost.
        public static let maximumValues = 1 << 24

        /// A budget of `maxPatches` patches of `patchSize` pixels.
        public init(patchSize: Int, maxPatches: Int) { (self.patchSize, self.maxPatches) = (patchSize, maxPatches) }

        /// Values per preprocessed image: the grid's two sides, then the patch rows.
        public var valuesPerImage: Int { 2 + maxPatches * 3 * patchSize * patchSize }

        /// Whether the sizes are within the limits (patch 1...64, at least one patch, at most `maximumValues`).
        public var isValid: Bool {
            guard (1...Self.maximumPatchSize).contains(patchSize), maxPatches >= 1 else { return false }
            let (values, overflow) = maxPatches.multipliedReportingOverflow(by: 3 * patchSize * patchSize)
            return !overflow && values <= Self.maximumValues - 2
        }

        /// The size a `width` × `height` image is resized to: the largest scale (binary search between 1e-6 and 100
        /// to 1e-5, in doubles, as transformers searches) whose sides, rounded up to patch multiples and at least one
        /// patch, make at most `maxPatches` patches.
        public func targetSize(width: Int, height: Int) -> (width: Int, height: Int) {
            let p = Double(patchSize)
            func side(_ scale: Double, _ size: Int) -> Int {
                max(patchSize, Int((Double(size) * scale / p).rounded(.up)) * patchSize)
            }
            let eps = 1e-5
            var (low, high) = (eps / 10, 100.0)
            while high - low >= eps {
                let scale = (low + high) / 2
                let patches = Double(side(scale, height) / patchSize) * Double(side(scale, width) / patchSize)
                if patches <= Double(maxPatches) { low = scale } else { high = scale }
            }
            return (side(low, width), side(low, height))
        }
    }
}

extension ImagePreprocessor {
    /// NaFlex's layout of a resized image whose sides are patch multiples: rows and columns of its grid, then each
    /// patch (row by row) as 3·p·p values in (y, x, channel) order, normalised as `normalize` does (transformers
    /// rescales by 1/255 and normalises in float32: the same two operations), zeros for the patches past the grid.
    func patchRows(_ rgb: [UInt8], width: Int, height: Int, budget: Preprocessing.PatchBudget,
                           into out: UnsafeMutablePointer<Float>) {
        let p = budget.patchSize, (rows, cols) = (height / p, width / p), patch = 3 * p * p
        out[0] = Float(rows)
        out[1] = Float(cols)
        let t = normalizationTable()
        rgb.withUnsafeBufferPointer { px in
            for gy in 0..<rows {
                for gx in 0..<cols {
                    let row = out + 2 + (gy * cols + gx) * patch
                    for y in 0..<p {
                        let src = ((gy * p + y) * width + gx * p) * 3
                        for i in 0..<(3 * p) { row[y * 3 * p + i] = t[(i % 3) * 256 + Int(px[src + i])] }
                    }
                }
            }
        }
        (out + 2 + rows * cols * patch).update(repeating: 0, count: (budget.maxPatches - rows * cols) * patch)
    }

    /// `image` converted to RGB pixel by pixel as Pillow's `convert("RGB")` converts.
    func rgbConverted(_ image: DecodedImage) -> DecodedImage {
        let (count, ch) = (image.width * image.height, image.mode.channels)
        var rgb = [UInt8](repeating: 0, count: count * 3)
        image.pixels.withUnsafeBufferPointer { src in
            for i in 0..<count {
                (rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]) = toRGB(src.baseAddress! + i * ch, image.mode, image.palette)
            }
        }
        return DecodedImage(width: image.width, height: image.height, mode: .rgb, pixels: rgb)
    }
}
