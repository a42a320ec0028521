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

struct clip_png_stream {
    reader r;  // libpng's I/O and error pointers point here, so the stream owns it
    png_structp png;
    png_infop info;
    png_uint_32 w, h;
    int interlace;
    size_t stride;
};

void clip_png_close(clip_png_stream *s) {
    if (!s) return;
    png_destroy_read_struct(&s->png, &s->info, NULL);
    free(s);
}

int clip_png_open(const uint8_t *data, size_t size, uint64_t max_pixels, clip_png_stream **stream, clip_image *out,
                  char *err, size_t errlen) {
    *stream = NULL;
    clip_image_reset(out);
    // Refuse an oversized image from its IHDR alone, before libpng reads further (a bomb need not be complete).
    if (ihdr_too_large(data, size, max_pixels, err, errlen)) return CLIP_IMAGE_TOO_LARGE;
    clip_png_stream *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    s->r = (reader){data, size, 0, err, errlen};
    s->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s->r, on_error, on_warning);
    if (s->png) s->info = png_create_info_struct(s->png);
    if (!s->png || !s->info) { clip_png_close(s); snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    volatile int code = CLIP_IMAGE_CORRUPT;
    if (setjmp(png_jmpbuf(s->png))) {
        clip_png_close(s);
        clip_image_free(out);
        return code;
    }
    png_set_read_fn(s->png, &s->r, read_data);
    // libpng refuses sides over 1,000,000 pixels by default; Pillow reads up to the format's 2^31 - 1, and the pixel
    // limit above bounds the memory (a 1 x 2,000,000 strip is a valid photo panorama's shape for SigLIP 2 NaFlex).
    png_set_user_limits(s->png, 0x7fffffff, 0x7fffffff);
    // Pillow checks chunk CRCs of critical chunks and ignores ancillary ones' errors.
    png_set_crc_action(s->png, PNG_CRC_DEFAULT, PNG_CRC_QUIET_USE);
    png_read_info(s->png, s->info);
    int depth, color;
    png_get_IHDR(s->png, s->info, &s->w, &s->h, &depth, &color, &s->interlace, NULL, NULL);
    uint64_t npix = (uint64_t)s->w * s->h;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 s->w, s->h, (unsigned long long)npix, (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        png_longjmp(s->png, 1);
    }
    set_layout(s->png, s->info, depth, color, out, err, errlen);
    if (s->interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(s->png);
    png_read_update_info(s->png, s->info);
    s->stride = png_get_rowbytes(s->png, s->info);
    if (s->stride != (size_t)s->w * out->channels) {
        snprintf(err, errlen, "unexpected PNG row size");
        png_longjmp(s->png, 1);
    }
#ifdef PNG_eXIf_SUPPORTED
    // Chunks before the image data have been read; the rest of the file is walked for an eXIf after it below.
    png_bytep exif = NULL;
    png_uint_32 exif_len = 0;
    if (png_get_eXIf_1(s->png, s->info, &exif_len, &exif) && exif && exif_len > 0) {
        out->exif = malloc(exif_len);
        if (out->exif) { memcpy(out->exif, exif, exif_len); out->exif_size = exif_len; }
    }
#endif
    clip_png_metadata(data, size, out);
    out->width = (int32_t)s->w;
    out->height = (int32_t)s->h;
    *stream = s;
    return CLIP_IMAGE_OK;
}

int clip_png_streamable(const clip_png_stream *s) { return s->interlace == PNG_INTERLACE_NONE; }

int clip_png_read_rows(clip_png_stream *s, clip_resampler *rs, char *err, size_t errlen) {
    s->r.err = err;
    s->r.errlen = errlen;
    uint8_t *volatile row = NULL;
    if (setjmp(png_jmpbuf(s->png))) {
        free(row);
        return CLIP_IMAGE_CORRUPT;
    }
    if (s->interlace != PNG_INTERLACE_NONE) { snprintf(err, errlen, "an interlaced PNG cannot be read row by row"); return CLIP_IMAGE_UNSUPPORTED; }
    row = malloc(s->stride ? s->stride : 1);
    if (!row) { snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    const png_uint_32 first = (png_uint_32)clip_resampler_first_row(rs);
    const png_uint_32 end = first + (png_uint_32)clip_resampler_row_count(rs);
    // Every row is decoded, those past the window too: a corrupt or truncated tail is an error here as it is for
    // the full decode, never a partial image taken for whole.
    for (png_uint_32 y = 0; y < s->h; y++) {
        png_read_row(s->png, row, NULL);
        if (y >= first && y < end) clip_resampler_push(rs, row);
    }
    free(row);
    return CLIP_IMAGE_OK;
}

int clip_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_png_stream *s;
    int code = clip_png_open(data, size, max_pixels, &s, out, err, errlen);
    if (code != CLIP_IMAGE_OK) return code;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int failure = CLIP_IMAGE_CORRUPT;
    if (setjmp(png_jmpbuf(s->png))) {
        clip_png_close(s);
        clip_image_drop_pixels(out, pixels);
        free(rows);
        clip_image_free(out);
        return failure;
    }
    pixels = clip_image_pixels(out, s->stride * s->h);
    rows = malloc(sizeof(png_bytep) * (s->h ? s->h : 1));
    if (!pixels || !rows) {
        snprintf(err, errlen, "out of memory for a %ux%u image", s->w, s->h);
        failure = CLIP_IMAGE_NO_MEMORY;
        png_longjmp(s->png, 1);
    }
    for (png_uint_32 y = 0; y < s->h; y++) rows[y] = pixels + s->stride * y;
    png_read_image(s->png, rows);
    clip_png_close(s);
    free(rows);
    out->pixels = pixels;
    return CLIP_IMAGE_OK;
}

typedef struct {
    uint8_t *data;
    size_t size, capacity;
    int failed;
} writer;

static void write_data(png_structp png, png_bytep src, png_size_t n) {
    writer *w = png_get_io_ptr(png);
    if (w->size + n > w->capacity) {
        size_t cap = w->capacity ? w->capacity : 4096;
        while (cap < w->size + n) cap *= 2;
        uint8_t *grown = realloc(w->data, cap);
        if (!grown) png_error(png, "out of memory");
        w->data = grown;
        w->capacity = cap;
    }
    memcpy(w->data + w->size, src, n);
    w->size += n;
}

static void flush_data(png_structp png) { (void)png; }

int clip_encode_png(const uint8_t *rgb, int width, int height, uint8_t **out, size_t *out_size, char *err,
                    size_t errlen) {
    *out = NULL;
    *out_size = 0;
    if (width <= 0 || height <= 0) {
        snprintf(err, errlen, "cannot write a %dx%d PNG", width, height);
        return 1;
    }
    reader r = {NULL, 0, 0, err, errlen};
    writer w = {NULL, 0, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(w.data);
        return 1;
    }
    png_set_write_fn(png, &w, write_data, flush_data);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)width * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = w.data;
    *out_size = w.size;
    return 0;
}
