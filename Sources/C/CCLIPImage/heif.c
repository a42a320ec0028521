// HEIF (iPhones' HEIC, HEVC-coded) through libheif: the primary image, with the file's rotation and mirroring
// (irot/imir) applied as libheif and pillow-heif apply them, as 8-bit RGB, or RGBA when the image has alpha. Grids
// and tiles are assembled by libheif. (AVIF goes through libavif, as Pillow reads it: avif.c.)
#include "clip_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

// libheif's messages may end in or hold line breaks: one line, for an error that names its file on one line.
static int fail(char *err, size_t errlen, struct heif_error e, const char *what, int code) {
    snprintf(err, errlen, "%s: %s", what, e.message ? e.message : "unknown libheif error");
    size_t n = strlen(err);
    for (size_t i = 0; i < n; i++) if ((unsigned char)err[i] < 0x20) err[i] = ' ';
    while (n > 0 && err[n - 1] == ' ') err[--n] = 0;
    return code;
}

int clip_isobmff_is_avif(const uint8_t *data, size_t size) {
    if (size < 16 || memcmp(data + 4, "ftyp", 4) != 0) return 0;
    if (memcmp(data + 8, "avif", 4) == 0 || memcmp(data + 8, "avis", 4) == 0) return 1;
    // A general major brand (mif1, msf1) with AVIF among the compatible ones, and not HEIC.
    uint32_t box = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
    size_t end = box < 16 ? 16 : (box > size ? size : box);
    int avif = 0, heic = 0;
    for (size_t i = 16; i + 4 <= end; i += 4) {
        if (memcmp(data + i, "avif", 4) == 0 || memcmp(data + i, "avis", 4) == 0) avif = 1;
        if (memcmp(data + i, "heic", 4) == 0 || memcmp(data + i, "heix", 4) == 0) heic = 1;
    }
    return avif && !heic;
}

int clip_heif_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    if (size < 12 || size > 0x7fffffff || memcmp(data + 4, "ftyp", 4) != 0) return -1;
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) return -1;
    int result = -1;
    struct heif_image_handle *handle = NULL;
    if (heif_context_read_from_memory_without_copy(ctx, data, size, NULL).code == heif_error_Ok &&
        heif_context_get_primary_image_handle(ctx, &handle).code == heif_error_Ok) {
        *width = (uint32_t)heif_image_handle_get_width(handle);
        *height = (uint32_t)heif_image_handle_get_height(handle);
        result = 0;
    }
    if (handle) heif_image_handle_release(handle);
    heif_context_free(ctx);
    return result;
}

int clip_decode_heif(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    // The brands are libheif's to judge as it reads (a mif1 file with HEIC inside is common); only the size is
    // checked here, for the int libheif takes.
    if (size < 12 || size > 0x7fffffff) {
        snprintf(err, errlen, "a HEIF file of %zu bytes (at most 2 GiB are read)", size);
        return CLIP_IMAGE_CORRUPT;
    }
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) {
        snprintf(err, errlen, "out of memory for the HEIF reader");
        return CLIP_IMAGE_NO_MEMORY;
    }
    // No threads of its own for grid tiles: callers decode one image per core already.
    heif_context_set_max_decoding_threads(ctx, 0);
    // libheif's own security limits stay at their defaults (a side of 32768, and more): a file whose boxes claim
    // more is refused as it is read; the pixel limit below applies to the size the image will have.
    struct heif_image_handle *handle = NULL;
    struct heif_image *img = NULL;
    int code = CLIP_IMAGE_OK;
    struct heif_error e = heif_context_read_from_memory_without_copy(ctx, data, size, NULL);
    if (e.code != heif_error_Ok) { code = fail(err, errlen, e, "corrupt or truncated HEIF", CLIP_IMAGE_CORRUPT); goto done; }
    e = heif_context_get_primary_image_handle(ctx, &handle);
    if (e.code != heif_error_Ok) { code = fail(err, errlen, e, "the HEIF file has no primary image", CLIP_IMAGE_CORRUPT); goto done; }
    int w = heif_image_handle_get_width(handle), h = heif_image_handle_get_height(handle);
    uint64_t npix = (uint64_t)(w > 0 ? w : 0) * (uint64_t)(h > 0 ? h : 0);
    if (w <= 0 || h <= 0) {
        snprintf(err, errlen, "the HEIF image declares a size of %dx%d", w, h);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %dx%d = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 w, h, (unsigned long long)npix, (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        goto done;
    }
    int alpha = heif_image_handle_has_alpha_channel(handle);
    struct heif_decoding_options *options = heif_decoding_options_alloc();
    e = heif_decode_image(handle, &img, heif_colorspace_RGB,
                          alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB, options);
    heif_decoding_options_free(options);
    if (e.code != heif_error_Ok) {
        int unsupported = e.code == heif_error_Unsupported_feature || e.code == heif_error_Unsupported_filetype;
        code = fail(err, errlen, e, unsupported ? "a HEIF image this libheif cannot decode" : "corrupt HEIF image data",
                    unsupported ? CLIP_IMAGE_UNSUPPORTED : CLIP_IMAGE_CORRUPT);
        goto done;
    }
    int stride = 0;
    const uint8_t *plane = heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride);
    int iw = heif_image_get_width(img, heif_channel_interleaved), ih = heif_image_get_height(img, heif_channel_interleaved);
    int bits = heif_image_get_bits_per_pixel_range(img, heif_channel_interleaved);
    if (!plane || iw != w || ih != h || bits != 8 || stride < iw * (alpha ? 4 : 3)) {
        snprintf(err, errlen, "libheif decoded %dx%d at %d bits, not the %dx%d 8-bit image the file declares", iw, ih, bits, w, h);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    out->channels = alpha ? 4 : 3;
    out->mode = alpha ? CLIP_MODE_RGBA : CLIP_MODE_RGB;
    out->width = w;
    out->height = h;
    size_t row = (size_t)w * out->channels;
    out->pixels = clip_image_pixels(out, row * (size_t)h);
    if (!out->pixels) {
        snprintf(err, errlen, "out of memory for a %dx%d image", w, h);
        code = CLIP_IMAGE_NO_MEMORY;
        goto done;
    }
    for (int y = 0; y < h; y++) memcpy(out->pixels + (size_t)y * row, plane + (size_t)y * (size_t)stride, row);
done:
    if (img) heif_image_release(img);
    if (handle) heif_image_handle_release(handle);
    heif_context_free(ctx);
    if (code != CLIP_IMAGE_OK) clip_image_free(out);
    return code;
}
