// Which part of an image the model sees: the resize and crop of each resize mode, and NaFlex's uncropped resize to
// its patch budget.

extension ImagePreprocessor {
    /// Where the centre crop lies in the resized image, and the part of it that the resized image covers.
    struct CropGeometry {
        /// Size of the resized image (shorter side = resolution).
        let width, height: Int
        /// torchvision's CenterCrop offsets (negative when the crop is larger than the image: zero padding).
        let top, left: Int
        /// The window of the resized image inside the crop: the only part that is computed.
        let x, y, w, h: Int
        /// Size of the crop: resolution × resolution, or for NaFlex the resized image's.
        var outWidth, outHeight: Int

        init(width: Int, height: Int, top: Int, left: Int, x: Int, y: Int, w: Int, h: Int, square r: Int) {
            (self.width, self.height, self.top, self.left) = (width, height, top, left)
            (self.x, self.y, self.w, self.h, self.outWidth, self.outHeight) = (x, y, w, h, r, r)
        }

        /// The whole image resized to `width` × `height`, nothing cropped (NaFlex).
        init(uncropped width: Int, _ height: Int) {
            self.init(width: width, height: height, top: 0, left: 0, x: 0, y: 0, w: width, h: height, square: 0)
            (outWidth, outHeight) = (width, height)
        }
    }

    func cropGeometry(width: Int, height: Int, name: String) throws(ImageError) -> CropGeometry {
        let r = resolution
        if let budget = preprocessing.patchBudget {
            let size = budget.targetSize(width: width, height: height)
            // The search's smallest scale still gives one patch per side; an image more elongated than the budget
            // allows (1×16,000,001 for one 16-pixel patch) gets more patches than the budget holds.
            let patches = (size.width / budget.patchSize) * (size.height / budget.patchSize)
            guard patches <= budget.maxPatches else {
                throw ImageError(file: name, .unsupported("a \(width)x\(height) image is too elongated for a budget of \(budget.maxPatches) patches of \(budget.patchSize) pixels: at the smallest scale it still takes \(patches)"))
            }
            return CropGeometry(uncropped: size.width, size.height)
        }
        switch resizeMode {
        case .squash:
            return CropGeometry(width: r, height: r, top: 0, left: 0, x: 0, y: 0, w: r, h: r, square: r)
        case .longest:
            // ResizeKeepRatio(longest=1): ratio = the larger of h/r and w/r, sides round(side / ratio) with Python's
            // rounding; then center_crop_or_pad puts the image at ((r - w) // 2, (r - h) // 2) on zeros.
            let ratio = max(Double(height) / Double(r), Double(width) / Double(r))
            let nw = max(Int((Double(width) / ratio).rounded(.toNearestOrEven)), 1)
            let nh = max(Int((Double(height) / ratio).rounded(.toNearestOrEven)), 1)
            let left = -((r - min(nw, r)) / 2), top = -((r - min(nh, r)) / 2)
            return CropGeometry(width: nw, height: nh, top: top, left: left, x: 0, y: 0, w: min(nw, r), h: min(nh, r),
                                square: r)
        case .shortest:
            break
        }
        let (nw, nh) = Self.resizedSize(width: width, height: height, resolution: r)
        // An extreme aspect ratio (say 100000×1) scales to billions of pixels; the reference would try to allocate
        // them. Refuse it like an oversized image.
        let (resizedPixels, overflow) = nw.multipliedReportingOverflow(by: nh)
        guard !overflow, resizedPixels <= maxPixels else {
            throw ImageError(file: name, .tooManyPixels("a \(width)x\(height) image resizes to \(nw)x\(nh) for a \(r)-pixel crop, more than the limit of \(maxPixels) pixels"))
        }
        // torchvision's CenterCrop offsets: int(round((size - crop) / 2)), rounding half to even.
        let top = Int(((Double(nh - r)) / 2).rounded(.toNearestOrEven))
        let left = Int(((Double(nw - r)) / 2).rounded(.toNearestOrEven))
        let wx = max(left, 0), wy = max(top, 0)
        return CropGeometry(width: nw, height: nh, top: top, left: left, x: wx, y: wy, w: min(left + r, nw) - wx,
                            h: min(top + r, nh) - wy, square: r)
    }
}
