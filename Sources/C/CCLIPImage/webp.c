// WebP through libwebp: RGBA when the file has alpha, else RGB, as Pillow loads it.
#include "clip_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>

int clip_decode_webp(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(data, size, &f) != VP8_STATUS_OK) {
        snprintf(err, errlen, "corrupt or truncated WebP header");
        return CLIP_IMAGE_CORRUPT;
    }
    uint64_t npix = (uint64_t)f.width * f.height;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %dx%d = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 f.width, f.height, (unsigned long long)npix, (unsigned long long)max_pixels);
        return CLIP_IMAGE_TOO_LARGE;
    }
    if (f.has_animation) {
        snprintf(err, errlen, "animated WebP is not supported");
        return CLIP_IMAGE_UNSUPPORTED;
    }
    out->channels = f.has_alpha ? 4 : 3;
    out->mode = f.has_alpha ? CLIP_MODE_RGBA : CLIP_MODE_RGB;
    out->width = f.width;
    out->height = f.height;
    size_t stride = (size_t)f.width * out->channels;
    out->pixels = clip_image_pixels(out, stride * f.height);
    if (!out->pixels) {
        snprintf(err, errlen, "out of memory for a %dx%d image", f.width, f.height);
        return CLIP_IMAGE_NO_MEMORY;
    }
    uint8_t *ok = f.has_alpha ? WebPDecodeRGBAInto(data, size, out->pixels, stride * f.height, (int)stride)
                              : WebPDecodeRGBInto(data, size, out->pixels, stride * f.height, (int)stride);
    if (!ok) {
        clip_image_free(out);
        snprintf(err, errlen, "corrupt or truncated WebP data");
        return CLIP_IMAGE_CORRUPT;
    }
    clip_webp_metadata(data, size, out);
    return CLIP_IMAGE_OK;
}
