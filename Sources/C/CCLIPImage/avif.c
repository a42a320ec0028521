// AVIF through libavif, as Pillow's AVIF plugin reads it: the first image, RGB or RGBA at 8 bits, libavif's
// chroma upsampling; the pixels as stored, with the file's rotation and mirroring (irot/imir) reported as the EXIF
// orientation they stand for (applied only by callers that apply EXIF orientation), else the Exif item's tag.
#include "clip_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avif/avif.h>

// libavif's avifImageIrotImirToExifOrientation (1.x), for 0.11: irot's angle is anti-clockwise quarter turns, imir's
// mode 0 exchanges top and bottom, 1 left and right.
static int irot_imir_orientation(const avifImage *image) {
    int angle = (image->transformFlags & AVIF_TRANSFORM_IROT) ? image->irot.angle & 3 : 0;
    int mirror = (image->transformFlags & AVIF_TRANSFORM_IMIR) ? image->imir.mode : -1;
    static const int table[4][3] = {{1, 4, 2}, {8, 5, 7}, {3, 2, 4}, {6, 7, 5}};
    return table[angle][mirror + 1];
}

/// The orientation irot/imir stand for, as a TIFF-structured EXIF block of one tag, into `out`. Only these boxes:
/// Pillow's AVIF plugin sets the Orientation from them (1 without), whatever an Exif item says.
static void keep_orientation(const avifImage *image, clip_image *out) {
    if (image->transformFlags & (AVIF_TRANSFORM_IROT | AVIF_TRANSFORM_IMIR)) {
        static const uint8_t block[26] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        out->exif = malloc(sizeof block);
        if (out->exif) {
            memcpy(out->exif, block, sizeof block);
            out->exif[18] = (uint8_t)irot_imir_orientation(image);
            out->exif_size = sizeof block;
        }
    }
}

/// libavif's result with its diagnostic, on one line.
static void describe(char *err, size_t errlen, const char *what, avifResult r, const avifDecoder *decoder) {
    const char *detail = decoder->diag.error[0] ? decoder->diag.error : "";
    snprintf(err, errlen, "%s: %s%s%s", what, avifResultToString(r), detail[0] ? ": " : "", detail);
    for (size_t i = 0; err[i]; i++) if ((unsigned char)err[i] < 0x20) err[i] = ' ';
}

int clip_avif_header(const uint8_t *data, size_t size, clip_image *out) {
    clip_image_reset(out);
    avifDecoder *decoder = avifDecoderCreate();
    if (!decoder) return -1;
    int result = -1;
    decoder->strictFlags = AVIF_STRICT_DISABLED;
    if (avifDecoderSetIOMemory(decoder, data, size) == AVIF_RESULT_OK && avifDecoderParse(decoder) == AVIF_RESULT_OK) {
        out->width = (int32_t)decoder->image->width;
        out->height = (int32_t)decoder->image->height;
        keep_orientation(decoder->image, out);
        result = 0;
    }
    avifDecoderDestroy(decoder);
    return result;
}

int clip_avif_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    avifDecoder *decoder = avifDecoderCreate();
    if (!decoder) return -1;
    int result = -1;
    decoder->strictFlags = AVIF_STRICT_DISABLED;
    if (avifDecoderSetIOMemory(decoder, data, size) == AVIF_RESULT_OK && avifDecoderParse(decoder) == AVIF_RESULT_OK) {
        *width = decoder->image->width;
        *height = decoder->image->height;
        result = 0;
    }
    avifDecoderDestroy(decoder);
    return result;
}

int clip_decode_avif(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    avifDecoder *decoder = avifDecoderCreate();
    if (!decoder) {
        snprintf(err, errlen, "out of memory for the AVIF reader");
        return CLIP_IMAGE_NO_MEMORY;
    }
    // One thread: the caller decodes several images at once, one per core. Of a sequence, the first image is
    // decoded (as Pillow opens it); libavif's default bounds the frames a file may declare.
    decoder->maxThreads = 1;
    decoder->strictFlags = AVIF_STRICT_DISABLED;
    decoder->imageSizeLimit = max_pixels > AVIF_DEFAULT_IMAGE_SIZE_LIMIT ? AVIF_DEFAULT_IMAGE_SIZE_LIMIT : (uint32_t)max_pixels;
    int code = CLIP_IMAGE_OK;
    avifResult r = avifDecoderSetIOMemory(decoder, data, size);
    if (r == AVIF_RESULT_OK) r = avifDecoderParse(decoder);
    if (r != AVIF_RESULT_OK) {
        describe(err, errlen, "corrupt or truncated AVIF", r, decoder);
        // libavif refuses a grid past its size limit while parsing: a size problem, not damage.
        code = r == AVIF_RESULT_NOT_IMPLEMENTED ? CLIP_IMAGE_UNSUPPORTED
             : strstr(decoder->diag.error, "too large") ? CLIP_IMAGE_TOO_LARGE : CLIP_IMAGE_CORRUPT;
        goto done;
    }
    uint32_t w = decoder->image->width, h = decoder->image->height;
    uint64_t npix = (uint64_t)w * h;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 w, h, (unsigned long long)npix, (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        goto done;
    }
    if (w == 0 || h == 0) {
        snprintf(err, errlen, "the AVIF image declares a size of %ux%u", w, h);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    r = avifDecoderNextImage(decoder);
    if (r != AVIF_RESULT_OK) {
        describe(err, errlen, "corrupt AVIF image data", r, decoder);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    avifImage *image = decoder->image;
    // The buffer below is sized from the parsed size: the decoded image must have it.
    if (image->width != w || image->height != h) {
        snprintf(err, errlen, "the AVIF image decoded as %ux%u, not the %ux%u it declares", image->width, image->height, w, h);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    int alpha = image->alphaPlane != NULL;
    avifRGBImage rgb;
    avifRGBImageSetDefaults(&rgb, image);
    rgb.format = alpha ? AVIF_RGB_FORMAT_RGBA : AVIF_RGB_FORMAT_RGB;
    rgb.depth = 8;
    out->channels = alpha ? 4 : 3;
    out->mode = alpha ? CLIP_MODE_RGBA : CLIP_MODE_RGB;
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    rgb.rowBytes = w * (uint32_t)out->channels;
    out->pixels = clip_image_pixels(out, (size_t)rgb.rowBytes * h);
    if (!out->pixels) {
        snprintf(err, errlen, "out of memory for a %ux%u image", w, h);
        code = CLIP_IMAGE_NO_MEMORY;
        goto done;
    }
    rgb.pixels = out->pixels;
    r = avifImageYUVToRGB(image, &rgb);
    if (r != AVIF_RESULT_OK) {
        snprintf(err, errlen, "cannot convert the AVIF image to RGB: %s", avifResultToString(r));
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    // Read by the caller like a JPEG's EXIF.
    keep_orientation(image, out);
done:
    avifDecoderDestroy(decoder);
    if (code != CLIP_IMAGE_OK) clip_image_free(out);
    return code;
}
