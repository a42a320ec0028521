// PNG through libpng, producing the pixel layout Pillow loads each PNG type into.
#include "clip_image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    char *err;
    size_t errlen;
} reader;

static void read_data(png_structp png, png_bytep dst, png_size_t n) {
    reader *r = png_get_io_ptr(png);
    if (n > r->size - r->pos) png_error(png, "the file ends early (truncated)");
    memcpy(dst, r->data + r->pos, n);
    r->pos += n;
}

static void on_error(png_structp png, png_const_charp msg) {
    reader *r = png_get_error_ptr(png);
    snprintf(r->err, r->errlen, "corrupt PNG data: %s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

// Whether the IHDR chunk (when it is the first chunk) declares more than max_pixels pixels; err says so.
static int ihdr_too_large(const uint8_t *data, size_t size, uint64_t max_pixels, char *err, size_t errlen) {
    if (size < 24 || memcmp(data + 12, "IHDR", 4) != 0) return 0;
    uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
    uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
    uint64_t npix = (uint64_t)w * h;
    if (npix <= max_pixels) return 0;
    snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
             w, h, (unsigned long long)npix, (unsigned long long)max_pixels);
    return 1;
}

// Asks libpng for the layout Pillow loads this color type and depth into, and records mode, channels and
// palette in out. An invalid color type longjmps to the caller's error handler.
static void set_layout(png_structp png, png_infop info, int depth, int color, clip_image *out, char *err,
                       size_t errlen) {
    int gray16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (gray16) {
        png_set_swap(png);  // 16-bit gray stays 16-bit ("I;16"), as native little-endian samples
    } else if (depth == 16) {
        png_set_strip_16(png);  // Pillow keeps the high byte of other 16-bit samples
    }
    switch (color) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
        out->mode = depth == 1 ? CLIP_MODE_1 : (depth == 16 ? CLIP_MODE_I16 : CLIP_MODE_L);
        out->channels = depth == 16 ? 2 : 1;
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        if (depth == 16) {
            // Pillow loads 16-bit gray+alpha as RGBA ("LA;16B" unpacks to RGBA).
            png_set_gray_to_rgb(png);
            out->mode = CLIP_MODE_RGBA;
            out->channels = 4;
        } else {
            out->mode = CLIP_MODE_LA;
            out->channels = 2;
        }
        break;
    case PNG_COLOR_TYPE_RGB:
        out->mode = CLIP_MODE_RGB;
        out->channels = 3;
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        out->mode = CLIP_MODE_RGBA;
        out->channels = 4;
        break;
    case PNG_COLOR_TYPE_PALETTE: {
        if (depth < 8) png_set_packing(png);
        out->mode = CLIP_MODE_P;
        out->channels = 1;
        png_colorp pal = NULL;
        int n = 0;
        if (png_get_PLTE(png, info, &pal, &n) && pal) {
            if (n > 256) n = 256;
            for (int i = 0; i < n; i++) {
                out->palette[i * 3] = pal[i].red;
                out->palette[i * 3 + 1] = pal[i].green;
                out->palette[i * 3 + 2] = pal[i].blue;
            }
            out->palette_size = n;
        }
        break;
    }
    default:
        snprintf(err, errlen, "PNG color type %d is not valid", color);
        png_longjmp(png, 1);
    }
}

int clip_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    // Refuse an oversized image from its IHDR alone, before libpng reads further (a bomb need not be complete).
    if (ihdr_too_large(data, size, max_pixels, err, errlen)) return CLIP_IMAGE_TOO_LARGE;
    reader r = {data, size, 0, err, errlen};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
    if (!png) { snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    png_infop info = png_create_info_struct(png);
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int code = CLIP_IMAGE_CORRUPT;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        clip_image_drop_pixels(out, pixels);
        free(rows);
        clip_image_free(out);
        return code;
    }
    png_set_read_fn(png, &r, read_data);
    // Pillow checks chunk CRCs of critical chunks and ignores ancillary ones' errors.
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_QUIET_USE);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    uint64_t npix = (uint64_t)w * h;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 w, h, (unsigned long long)npix, (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        png_longjmp(png, 1);
    }
    set_layout(png, info, depth, color, out, err, errlen);
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)w * out->channels) {
        snprintf(err, errlen, "unexpected PNG row size");
        png_longjmp(png, 1);
    }
    pixels = clip_image_pixels(out, stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) {
        snprintf(err, errlen, "out of memory for a %ux%u image", w, h);
        code = CLIP_IMAGE_NO_MEMORY;
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + stride * y;
    png_read_image(png, rows);
#ifdef PNG_eXIf_SUPPORTED
    png_bytep exif = NULL;
    png_uint_32 exif_len = 0;
    if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif && exif_len > 0) {
        out->exif = malloc(exif_len);
        if (out->exif) { memcpy(out->exif, exif, exif_len); out->exif_size = exif_len; }
    }
#endif
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->pixels = pixels;
    return CLIP_IMAGE_OK;
}
