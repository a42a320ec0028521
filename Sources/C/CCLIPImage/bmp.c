// BMP as Pillow's BmpImagePlugin reads it, written by hand: Debian has no BMP library, and what the reference
// `preprocess` sees is Pillow's reading, quirks included (which headers, bit depths, bit-field layouts and RLE
// streams it accepts, palettes of gray ramps read as "L" or "1", the RLE decoder's handling of short rows). Files
// Pillow reads into nonsense (a gray-ramp palette on a 4-bit image, RLE on a depth it is not for) are refused here.
#include "clip_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t u16le(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32le(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

// Pixel layouts, after Pillow's raw modes.
enum { RAW_P1, RAW_P4, RAW_P8, RAW_BILEVEL, RAW_L, RAW_BGR15, RAW_BGR16, RAW_BGR, RAW_BGRX, RAW_XBGR, RAW_BGXR,
       RAW_ABGR, RAW_RGBA, RAW_BGRA, RAW_BGAR };

typedef struct {
    uint32_t header_size, width, height, bits, compression, colors, padding;
    uint64_t offset;      // where the pixel data starts
    int bottom_up;
    int raw, mode;
    uint32_t masks[4];
} bmp_info;

static int bad(char *err, size_t errlen, int code, const char *msg) {
    snprintf(err, errlen, "%s", msg);
    return code;
}

// The headers: the file header, one of the info headers Pillow knows, the bit-field masks.
static int read_header(const uint8_t *d, size_t size, bmp_info *b, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    if (size < 18) return bad(err, errlen, CLIP_IMAGE_CORRUPT, "truncated BMP: the file ends inside its header");
    b->offset = u32le(d + 10);
    b->header_size = u32le(d + 14);
    if (b->header_size < 4 || (uint64_t)14 + b->header_size > size)
        return bad(err, errlen, CLIP_IMAGE_CORRUPT, "truncated BMP: the file ends inside its header");
    const uint8_t *h = d + 18;  // the header after its size field
    size_t hlen = b->header_size - 4;
    b->bottom_up = 1;
    if (b->header_size == 12) {
        b->width = u16le(h);
        b->height = u16le(h + 2);
        b->bits = u16le(h + 6);
        b->compression = 0;
        b->padding = 3;
    } else if (b->header_size == 40 || b->header_size == 52 || b->header_size == 56 || b->header_size == 64 ||
               b->header_size == 108 || b->header_size == 124) {
        // A negative height (top-down rows) is recognised, as Pillow does, by its high byte alone.
        int flip = h[7] == 0xFF;
        b->bottom_up = !flip;
        b->width = u32le(h);
        b->height = flip ? (uint32_t)(0u - u32le(h + 4)) : u32le(h + 4);
        b->bits = u16le(h + 10);
        b->compression = u32le(h + 12);
        b->colors = u32le(h + 28);
        b->padding = 4;
        if (b->compression == 3) {
            if (hlen >= 48) {
                for (int i = 0; i < 3; i++) b->masks[i] = u32le(h + 36 + i * 4);
                b->masks[3] = hlen >= 52 ? u32le(h + 48) : 0;
            } else {
                // A 40-byte header keeps its three masks after itself.
                if ((uint64_t)14 + b->header_size + 12 > size)
                    return bad(err, errlen, CLIP_IMAGE_CORRUPT, "truncated BMP: the file ends inside its bit-field masks");
                for (int i = 0; i < 3; i++) b->masks[i] = u32le(d + 14 + b->header_size + i * 4);
                b->masks[3] = 0;
            }
        }
    } else {
        snprintf(err, errlen, "unsupported BMP header type (%u bytes)", b->header_size);
        return CLIP_IMAGE_UNSUPPORTED;
    }
    if (b->bits <= 8 && b->colors == 0) b->colors = 1u << b->bits;
    if (b->offset == 14 + (uint64_t)b->header_size && b->bits <= 8) b->offset += (uint64_t)b->padding * b->colors;

    switch (b->bits) {
    case 1: b->raw = RAW_P1; b->mode = CLIP_MODE_P; break;
    case 4: b->raw = RAW_P4; b->mode = CLIP_MODE_P; break;
    case 8: b->raw = RAW_P8; b->mode = CLIP_MODE_P; break;
    case 16: b->raw = RAW_BGR15; b->mode = CLIP_MODE_RGB; break;
    case 24: b->raw = RAW_BGR; b->mode = CLIP_MODE_RGB; break;
    case 32: b->raw = RAW_BGRX; b->mode = CLIP_MODE_RGB; break;
    default:
        snprintf(err, errlen, "unsupported BMP pixel depth (%u bits)", b->bits);
        return CLIP_IMAGE_UNSUPPORTED;
    }
    if (b->compression == 3) {
        static const struct { uint32_t bits, m[4]; int raw; } layouts[] = {
            {32, {0xFF0000, 0xFF00, 0xFF, 0}, RAW_BGRX},
            {32, {0xFF000000, 0xFF0000, 0xFF00, 0}, RAW_XBGR},
            {32, {0xFF000000, 0xFF00, 0xFF, 0}, RAW_BGXR},
            {32, {0xFF000000, 0xFF0000, 0xFF00, 0xFF}, RAW_ABGR},
            {32, {0xFF, 0xFF00, 0xFF0000, 0xFF000000}, RAW_RGBA},
            {32, {0xFF0000, 0xFF00, 0xFF, 0xFF000000}, RAW_BGRA},
            {32, {0xFF000000, 0xFF00, 0xFF, 0xFF0000}, RAW_BGAR},
            {32, {0, 0, 0, 0}, RAW_BGRA},
            {24, {0xFF0000, 0xFF00, 0xFF, 0}, RAW_BGR},
            {16, {0xF800, 0x7E0, 0x1F, 0}, RAW_BGR16},
            {16, {0x7C00, 0x3E0, 0x1F, 0}, RAW_BGR15},
        };
        int found = 0;
        for (size_t i = 0; i < sizeof layouts / sizeof layouts[0] && !found; i++) {
            // 24- and 16-bit layouts are matched on their colour masks only.
            int n = layouts[i].bits == 32 ? 4 : 3;
            if (layouts[i].bits != b->bits || memcmp(layouts[i].m, b->masks, (size_t)n * sizeof(uint32_t)) != 0) continue;
            b->raw = layouts[i].raw;
            found = 1;
        }
        if (!found) {
            snprintf(err, errlen, "unsupported BMP bit-field layout (%u bits, masks %08x %08x %08x %08x)", b->bits,
                     b->masks[0], b->masks[1], b->masks[2], b->masks[3]);
            return CLIP_IMAGE_UNSUPPORTED;
        }
        int alpha = b->raw == RAW_ABGR || b->raw == RAW_RGBA || b->raw == RAW_BGRA || b->raw == RAW_BGAR;
        b->mode = alpha ? CLIP_MODE_RGBA : CLIP_MODE_RGB;
    } else if (b->compression == 1 || b->compression == 2) {
        if (b->bits != (b->compression == 1 ? 8u : 4u)) {
            snprintf(err, errlen, "unsupported BMP: %s compression on a %u-bit image", b->compression == 1 ? "RLE8" : "RLE4", b->bits);
            return CLIP_IMAGE_UNSUPPORTED;
        }
    } else if (b->compression != 0) {
        snprintf(err, errlen, "unsupported BMP compression (%u%s)", b->compression,
                 b->compression == 4 ? ": JPEG inside BMP" : b->compression == 5 ? ": PNG inside BMP" : "");
        return CLIP_IMAGE_UNSUPPORTED;
    }
    // No data offset: the pixels follow what was read (Pillow's fp.tell()): header, masks, palette.
    if (b->offset == 0)
        b->offset = 14 + (uint64_t)b->header_size + (b->compression == 3 && hlen < 48 ? 12 : 0) +
                    (b->bits <= 8 ? (uint64_t)b->padding * b->colors : 0);
    if (b->width == 0 || b->height == 0 || b->width > 0x7FFFFFFF || b->height > 0x7FFFFFFF) {
        snprintf(err, errlen, "the BMP image declares a size of %ux%u", b->width, b->height);
        return CLIP_IMAGE_CORRUPT;
    }
    return CLIP_IMAGE_OK;
}

int clip_bmp_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    bmp_info b;
    char err[8];
    if (size < 2 || memcmp(data, "BM", 2) != 0 || read_header(data, size, &b, err, sizeof err) != CLIP_IMAGE_OK) return -1;
    *width = b.width;
    *height = b.height;
    return 0;
}

// The palette (mode P), or the gray ramp Pillow reads as "L" (or "1" for black and white).
static int read_palette(const uint8_t *d, size_t size, bmp_info *b, clip_image *out, char *err, size_t errlen) {
    if (b->colors > 256) {
        snprintf(err, errlen, "unsupported BMP palette of %u colours (at most 256)", b->colors);
        return CLIP_IMAGE_UNSUPPORTED;
    }
    uint64_t at = 14 + (uint64_t)b->header_size;
    if (at + (uint64_t)b->padding * b->colors > size)
        return bad(err, errlen, CLIP_IMAGE_CORRUPT, "truncated BMP: the file ends inside its palette");
    const uint8_t *p = d + at;
    int gray = 1;
    for (uint32_t i = 0; i < b->colors && gray; i++) {
        uint32_t v = b->colors == 2 ? (i ? 255 : 0) : i;
        const uint8_t *e = p + i * b->padding;
        if (!(e[0] == v && e[1] == v && e[2] == v)) gray = 0;
    }
    if (gray) {
        int bilevel = b->colors <= 2;
        if ((bilevel && b->bits != 1) || (!bilevel && b->bits != 8)) {
            snprintf(err, errlen, "unsupported BMP: a %u-colour gray palette on a %u-bit image", b->colors, b->bits);
            return CLIP_IMAGE_UNSUPPORTED;
        }
        b->mode = bilevel ? CLIP_MODE_1 : CLIP_MODE_L;
        b->raw = bilevel ? RAW_BILEVEL : RAW_L;
        return CLIP_IMAGE_OK;
    }
    out->palette_size = (int32_t)b->colors;
    for (uint32_t i = 0; i < b->colors; i++) {
        out->palette[i * 3] = p[i * b->padding + 2];
        out->palette[i * 3 + 1] = p[i * b->padding + 1];
        out->palette[i * 3 + 2] = p[i * b->padding];
    }
    return CLIP_IMAGE_OK;
}

static void unpack_row(const uint8_t *s, uint8_t *o, uint32_t w, int raw) {
    for (uint32_t x = 0; x < w; x++) {
        switch (raw) {
        case RAW_P1: o[x] = (s[x >> 3] >> (7 - (x & 7))) & 1; break;
        case RAW_BILEVEL: o[x] = ((s[x >> 3] >> (7 - (x & 7))) & 1) ? 255 : 0; break;
        case RAW_P4: o[x] = (x & 1) ? (s[x >> 1] & 15) : (s[x >> 1] >> 4); break;
        case RAW_P8: case RAW_L: o[x] = s[x]; break;
        case RAW_BGR15: case RAW_BGR16: {
            uint32_t v = u16le(s + 2 * x);
            uint8_t *q = o + 3 * x;
            q[2] = (uint8_t)((v & 31) * 255 / 31);
            if (raw == RAW_BGR15) {
                q[1] = (uint8_t)(((v >> 5) & 31) * 255 / 31);
                q[0] = (uint8_t)(((v >> 10) & 31) * 255 / 31);
            } else {
                q[1] = (uint8_t)(((v >> 5) & 63) * 255 / 63);
                q[0] = (uint8_t)(((v >> 11) & 31) * 255 / 31);
            }
            break;
        }
        case RAW_BGR: { const uint8_t *p = s + 3 * x; uint8_t *q = o + 3 * x; q[0] = p[2]; q[1] = p[1]; q[2] = p[0]; break; }
        default: {
            // 32-bit layouts: the byte holding each of R, G, B (and A) within the pixel.
            static const int8_t at[][4] = {
                [RAW_BGRX] = {2, 1, 0, -1}, [RAW_XBGR] = {3, 2, 1, -1}, [RAW_BGXR] = {3, 1, 0, -1},
                [RAW_ABGR] = {3, 2, 1, 0}, [RAW_RGBA] = {0, 1, 2, 3}, [RAW_BGRA] = {2, 1, 0, 3}, [RAW_BGAR] = {3, 1, 0, 2},
            };
            const uint8_t *p = s + 4 * x;
            int alpha = at[raw][3] >= 0;
            uint8_t *q = o + (alpha ? 4 : 3) * x;
            for (int c = 0; c < 3; c++) q[c] = p[at[raw][c]];
            if (alpha) q[3] = p[at[raw][3]];
        }
        }
    }
}

// Pillow's BmpRleDecoder, step for step: indices into `dst` (w*h bytes, rows in file order); a stream that ends
// before every pixel is set is an error, as it is for Pillow ("not enough image data").
static int decode_rle(const uint8_t *d, size_t size, const bmp_info *b, uint8_t *dst, char *err, size_t errlen) {
    int rle4 = b->compression == 2;
    uint64_t w = b->width, total = w * (uint64_t)b->height, n = 0, x = 0;
    size_t at = (size_t)b->offset;
    while (n < total) {
        if (at + 2 > size) break;
        uint32_t count = d[at], byte = d[at + 1];
        at += 2;
        if (count) {
            // A run past the row's end is cut at it (Pillow's `x` drifts after absolute runs; so does this one).
            uint64_t run = x + count > w ? (x < w ? w - x : 0) : count;
            uint64_t kept = run < total - n ? run : total - n;
            for (uint64_t i = 0; i < kept; i++) dst[n++] = rle4 ? ((i & 1) ? (byte & 15) : (byte >> 4)) : (uint8_t)byte;
            x += run;
        } else if (byte == 0) {  // end of line
            uint64_t pad = (w - n % w) % w;
            memset(dst + n, 0, pad);
            n += pad;
            x = 0;
        } else if (byte == 1) {  // end of bitmap
            break;
        } else if (byte == 2) {  // delta: skip right and up, the skipped pixels 0
            if (at + 2 > size) break;
            uint64_t skip = d[at] + (uint64_t)d[at + 1] * w;
            at += 2;
            if (skip > total - n) skip = total - n;
            memset(dst + n, 0, skip);
            n += skip;
            x = n % w;
        } else {  // absolute run of `byte` pixels, padded to a 16-bit boundary of the file
            uint64_t want = byte < total - n ? byte : total - n;
            uint64_t bytes = rle4 ? (want + 1) / 2 : want;
            uint64_t got = bytes < size - at ? bytes : size - at;
            for (uint64_t i = 0; i < got; i++) {
                uint8_t v = d[at + i];
                if (rle4) {
                    dst[n++] = v >> 4;
                    if (i * 2 + 1 < want) dst[n++] = v & 15;
                } else {
                    dst[n++] = v;
                }
            }
            at += got;
            if (got < bytes || n == total) break;
            x += byte;
            if (at % 2) at++;
        }
    }
    if (n < total) {
        snprintf(err, errlen, "truncated BMP: the RLE data ends after %llu of %llu pixels", (unsigned long long)n,
                 (unsigned long long)total);
        return CLIP_IMAGE_CORRUPT;
    }
    return CLIP_IMAGE_OK;
}

int clip_decode_bmp(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    bmp_info b;
    int code = read_header(data, size, &b, err, errlen);
    if (code != CLIP_IMAGE_OK) return code;
    uint64_t npix = (uint64_t)b.width * b.height;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 b.width, b.height, (unsigned long long)npix, (unsigned long long)max_pixels);
        return CLIP_IMAGE_TOO_LARGE;
    }
    if (b.mode == CLIP_MODE_P && (code = read_palette(data, size, &b, out, err, errlen)) != CLIP_IMAGE_OK) return code;
    int channels = b.mode == CLIP_MODE_RGBA ? 4 : b.mode == CLIP_MODE_RGB ? 3 : 1;
    uint64_t row = (uint64_t)b.width * channels;
    int rle = b.compression == 1 || b.compression == 2;
    uint64_t stride = (((uint64_t)b.width * b.bits + 31) >> 3) & ~(uint64_t)3;
    // The last row needs its pixels, not its padding (Pillow's raw decoder reads no further).
    uint64_t needed = stride * (b.height - 1) + (((uint64_t)b.width * b.bits + 7) >> 3);
    if (!rle && (b.offset > size || needed > size - b.offset)) {
        snprintf(err, errlen, "truncated BMP: %llu bytes of pixel data expected at offset %llu, the file has %zu",
                 (unsigned long long)needed, (unsigned long long)b.offset, size);
        return CLIP_IMAGE_CORRUPT;
    }
    uint8_t *pixels = clip_image_pixels(out, (size_t)(row * b.height));
    uint8_t *rows = rle ? malloc((size_t)npix) : NULL;
    if (!pixels || (rle && !rows)) {
        free(rows);
        if (pixels) clip_image_drop_pixels(out, pixels);
        snprintf(err, errlen, "out of memory for a %ux%u image", b.width, b.height);
        return CLIP_IMAGE_NO_MEMORY;
    }
    if (rle && (b.offset > size || (code = decode_rle(data, size, &b, rows, err, errlen)) != CLIP_IMAGE_OK)) {
        if (code == CLIP_IMAGE_OK) {
            snprintf(err, errlen, "truncated BMP: pixel data at offset %llu, past the file's %zu bytes", (unsigned long long)b.offset, size);
            code = CLIP_IMAGE_CORRUPT;
        }
        free(rows);
        clip_image_drop_pixels(out, pixels);
        clip_image_free(out);
        return code;
    }
    for (uint64_t y = 0; y < b.height; y++) {
        uint64_t dy = b.bottom_up ? b.height - 1 - y : y;
        if (rle) memcpy(pixels + dy * row, rows + y * b.width, (size_t)row);
        else unpack_row(data + b.offset + y * stride, pixels + dy * row, b.width, b.raw);
    }
    free(rows);
    out->width = (int32_t)b.width;
    out->height = (int32_t)b.height;
    out->channels = channels;
    out->mode = b.mode;
    out->pixels = pixels;
    return CLIP_IMAGE_OK;
}
