// TIFF through libtiff: the first page, in the mode Pillow's TiffImagePlugin gives it (its OPEN_INFO table for the
// layouts below), with the Orientation tag applied as Pillow applies it on load. libtiff does the decompression
// (none, LZW, Deflate, PackBits, JPEG, CCITT, …) and the fill order; the samples are unpacked here as Pillow's raw
// modes unpack them. Stripped images are read a row at a time and tiles one at a time, so memory is the image's
// pixels plus one row or tile. Layouts Pillow reads into modes CLIP has no use for (float, 32-bit, LAB, premultiplied
// alpha, big-endian 16-bit gray) are refused by name.
#include "clip_image.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "tiff_bytes.h"

typedef struct {
    const uint8_t *data;
    size_t size;
    toff_t at;
    char *err;
    size_t errlen;
    int failed;
} tiff_source;

static tmsize_t src_read(thandle_t h, void *buf, tmsize_t n) {
    tiff_source *s = h;
    if (n <= 0 || s->at >= s->size) return 0;
    size_t take = (size_t)n < s->size - s->at ? (size_t)n : s->size - (size_t)s->at;
    memcpy(buf, s->data + s->at, take);
    s->at += take;
    return (tmsize_t)take;
}
static tmsize_t src_write(thandle_t h, void *buf, tmsize_t n) { (void)h; (void)buf; (void)n; return -1; }
static toff_t src_seek(thandle_t h, toff_t off, int whence) {
    tiff_source *s = h;
    uint64_t base = whence == SEEK_CUR ? s->at : whence == SEEK_END ? s->size : 0;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return (toff_t)-1;
    s->at = base + off;  // past the end reads nothing
    return s->at;
}
static int src_close(thandle_t h) { (void)h; return 0; }
static toff_t src_size(thandle_t h) { return ((tiff_source *)h)->size; }
static int src_map(thandle_t h, void **base, toff_t *size) { (void)h; (void)base; (void)size; return 0; }
static void src_unmap(thandle_t h, void *base, toff_t size) { (void)h; (void)base; (void)size; }

// The first error libtiff reports, on one line, is the one the caller sees.
static int on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    tiff_source *s = user;
    if (!s || s->failed) return 1;
    s->failed = 1;
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *c = msg; *c; c++) if ((unsigned char)*c < 0x20) *c = ' ';
    snprintf(s->err, s->errlen, "corrupt TIFF (%s: %s)", module ? module : "libtiff", msg);
    return 1;
}
// Warnings are ignored but one: a compressed strip that ends early (libjpeg's "Premature end of JPEG file", the fax
// decoder's "Premature EOF"), after which libtiff fills the rest with grey or garbage: an image with missing pixels.
static int on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    tiff_source *s = user;
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (s && !s->failed && strstr(msg, "Premature")) {
        s->failed = 1;
        for (char *c = msg; *c; c++) if ((unsigned char)*c < 0x20) *c = ' ';
        snprintf(s->err, s->errlen, "truncated TIFF data (%s: %s)", module ? module : "libtiff", msg);
    }
    return 1;
}

// The largest single buffer libtiff may allocate for one strip, tile or tag (its own default is 256 MiB too).
enum { TIFF_MAX_ALLOC = 256 << 20 };

static TIFF *open_tiff(tiff_source *s) {
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) return NULL;
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, TIFF_MAX_ALLOC);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, s);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, s);
    // "m": no memory mapping (the data is in memory already); "h"-less: the first directory is read.
    TIFF *tif = TIFFClientOpenExt("TIFF", "rm", s, src_read, src_write, src_seek, src_close, src_size, src_map,
                                  src_unmap, opts);
    TIFFOpenOptionsFree(opts);
    return tif;
}

static uint16_t orientation_of(TIFF *tif) {
    uint16_t o = 1;
    if (!TIFFGetField(tif, TIFFTAG_ORIENTATION, &o) || o < 1 || o > 8) o = 1;
    return o;
}

int clip_tiff_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    char err[8];
    tiff_source s = {data, size, 0, err, sizeof err, 0};
    TIFF *tif = open_tiff(&s);
    if (!tif) return -1;
    uint32_t w = 0, h = 0;
    int ok = TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) && TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) && w && h;
    // As shown: Pillow turns the image on load.
    if (ok && orientation_of(tif) >= 5) { uint32_t t = w; w = h; h = t; }
    TIFFClose(tif);
    if (!ok) return -1;
    *width = w;
    *height = h;
    return 0;
}

// How the samples of a pixel become the bytes of the output mode.
typedef struct {
    int bits, spp, planar, mode, channels;
    int invert;          // MinIsWhite: Pillow's ";I" raw modes
    int scale;           // 1/2/4-bit gray: Pillow's L;2 / L;4 spread (×85, ×17); bilevel: 0/255
    int map[8];          // output channel of each input sample, -1 for ignored extra samples
} layout;

static int refuse(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "unsupported TIFF: %s", msg);
    return CLIP_IMAGE_UNSUPPORTED;
}

// Whether the first IFD holds `tag` itself: libtiff fills in ExtraSamples for an RGB image with a fourth sample and
// no tag, where Pillow reads that sample as alpha.
// IFD 0's entry for `tag`: its value count, and its first value when that is a SHORT or LONG stored inline.
static int ifd0_entry(const uint8_t *d, size_t size, uint16_t tag, uint32_t *count, uint32_t *value) {
    tiff_bytes t;
    uint64_t at;
    uint32_t n;
    if (!tiff_bytes_open(&t, d, size) || !tiff_first_ifd(&t, &at, &n)) return 0;
    for (uint32_t i = 0; i < n && at + 2 + 12 * (uint64_t)(i + 1) <= size; i++) {
        uint64_t e = at + 2 + 12 * (uint64_t)i;
        if (tiff_u16(&t, e) != tag) continue;
        uint32_t type = tiff_u16(&t, e + 2);
        *count = tiff_u32(&t, e + 4);
        *value = type == 3 ? tiff_u16(&t, e + 8) : tiff_u32(&t, e + 8);
        return 1;
    }
    return 0;
}

static int ifd0_has_tag(const uint8_t *d, size_t size, uint16_t tag) {
    uint32_t count, value;
    return ifd0_entry(d, size, tag, &count, &value);
}

// Pillow's OPEN_INFO, for the layouts kept: gray (1, 2, 4, 8, 16 bits; extra samples ignored or alpha), palette
// (1–8 bits), RGB and RGBA (8 and 16 bits, the 16-bit ones keeping each sample's high byte), CMYK (8, 16 bits),
// and YCbCr JPEG, which libtiff converts to RGB as Pillow asks it to.
static int choose_layout(TIFF *tif, const uint8_t *data, size_t size, uint32_t h, layout *L, clip_image *out, char *err,
                         size_t errlen) {
    uint16_t photometric = 0, bits = 1, spp = 1, planar = 1, format = 1, compression = 1;
    uint16_t nextra = 0, *extra = NULL;
    int has_photometric = TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &format);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
    TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
    if (!has_photometric) photometric = 0;  // Pillow's default when the required tag is missing
    int tagged = ifd0_has_tag(data, size, TIFFTAG_EXTRASAMPLES);
    if (!tagged) nextra = 0;
    // One strip or tile offset per strip or tile: Pillow's own reader takes the last of several for a single strip,
    // libtiff the first; a file that disagrees with itself is refused rather than shown one way.
    // (Counted from the file's own tags: libtiff cuts a large uncompressed strip into virtual ones as it reads.)
    int tiled = TIFFIsTiled(tif);
    uint32_t noffsets = 0, first = 0, rows = 0xFFFFFFFF, rows_count = 0;
    if (!tiled && h > 0 && ifd0_entry(data, size, TIFFTAG_STRIPOFFSETS, &noffsets, &first)) {
        ifd0_entry(data, size, TIFFTAG_ROWSPERSTRIP, &rows_count, &rows);
        uint64_t per = rows == 0 || rows > h ? h : rows;
        uint64_t expected = (h + per - 1) / per * (planar == PLANARCONFIG_SEPARATE ? spp : 1);
        if (noffsets != expected) {
            snprintf(err, errlen, "corrupt TIFF: %u strip offsets for the %llu strips the image has", noffsets,
                     (unsigned long long)expected);
            return CLIP_IMAGE_CORRUPT;
        }
    } else if (tiled && ifd0_entry(data, size, TIFFTAG_TILEOFFSETS, &noffsets, &first) && noffsets != TIFFNumberOfTiles(tif)) {
        snprintf(err, errlen, "corrupt TIFF: %u tile offsets for the %u tiles the image has", noffsets, TIFFNumberOfTiles(tif));
        return CLIP_IMAGE_CORRUPT;
    }
    // Camera RAW files are TIFF-structured; their first page is a thumbnail or sensor data, not the photo.
    void *dng = NULL;
    uint32_t subfile = 0;
    if (TIFFGetField(tif, TIFFTAG_DNGVERSION, &dng)) return refuse(err, errlen, "a DNG camera RAW file");
    if (TIFFGetField(tif, TIFFTAG_SUBFILETYPE, &subfile) && (subfile & FILETYPE_REDUCEDIMAGE))
        return refuse(err, errlen, "the first page is a reduced-resolution preview (a camera RAW file?)");
    if (compression == COMPRESSION_OJPEG) return refuse(err, errlen, "old-style JPEG compression");
    if (spp < 1 || spp > 8) return refuse(err, errlen, "%u samples per pixel", spp);
    if (nextra > spp) return refuse(err, errlen, "%u extra samples of %u", nextra, spp);
    // Separate planes with unspecified extras: Pillow drops the extras (their planes are read and ignored).
    int dropped = 0;
    if (planar == PLANARCONFIG_SEPARATE && nextra > 0) {
        int unspecified = 1;
        for (int i = 0; i < nextra; i++) if (extra[i] != EXTRASAMPLE_UNSPECIFIED) unspecified = 0;
        if (unspecified) { dropped = nextra; nextra = 0; }
    }
    if (format != SAMPLEFORMAT_UINT && !(format == SAMPLEFORMAT_INT && bits == 8 && spp == 1 && photometric == PHOTOMETRIC_MINISBLACK))
        return refuse(err, errlen, "sample format %u at %u bits (only unsigned integers are read)", format, bits);
    memset(L, 0, sizeof *L);
    L->bits = bits;
    L->spp = spp;
    L->planar = planar;
    for (int i = 0; i < 8; i++) L->map[i] = i < spp ? i : -1;
    // Four RGB samples and no ExtraSamples tag: Pillow reads the fourth as alpha.
    int rgba4 = photometric == PHOTOMETRIC_RGB && spp == 4 && !tagged;
    int base = rgba4 ? 3 : spp - nextra - dropped;  // colour samples
    int alpha_at = rgba4 ? 3 : -1;        // the extra sample Pillow reads as alpha, if any
    if (nextra >= 1 && (extra[0] == EXTRASAMPLE_ASSOCALPHA))
        return refuse(err, errlen, "premultiplied (associated) alpha");
    // Pillow's table: the first extra sample alpha (2; 999 from Corel Draw, for RGB) or unspecified, the rest unspecified.
    if (nextra >= 1 && (extra[0] == EXTRASAMPLE_UNASSALPHA || (extra[0] == 999 && photometric == PHOTOMETRIC_RGB && nextra == 1)))
        alpha_at = base;
    else if (nextra >= 1 && extra[0] != EXTRASAMPLE_UNSPECIFIED)
        return refuse(err, errlen, "extra sample of kind %u", extra[0]);
    for (int i = 1; i < nextra; i++)
        if (extra[i] != EXTRASAMPLE_UNSPECIFIED) return refuse(err, errlen, "extra sample %d of kind %u", i, extra[i]);
    for (int i = base; i < spp; i++) if (i != alpha_at) L->map[i] = -1;

    switch (photometric) {
    case PHOTOMETRIC_MINISWHITE:
    case PHOTOMETRIC_MINISBLACK:
        if (base != 1) return refuse(err, errlen, "%d gray samples per pixel", base);
        L->invert = photometric == PHOTOMETRIC_MINISWHITE;
        if (bits == 16) {
            if (nextra) return refuse(err, errlen, "16-bit gray with extra samples");
            if (TIFFIsBigEndian(tif)) return refuse(err, errlen, "big-endian 16-bit gray (Pillow's I;16B)");
            L->invert = 0;  // Pillow reads MinIsWhite 16-bit as it reads MinIsBlack
            L->mode = CLIP_MODE_I16;
            L->channels = 2;
        } else if (bits == 1 || bits == 2 || bits == 4 || bits == 8) {
            if (bits != 8 && nextra) return refuse(err, errlen, "%u-bit gray with extra samples", bits);
            if (nextra && !(spp == 2 && (alpha_at == 1 || extra[0] == EXTRASAMPLE_UNSPECIFIED)))
                return refuse(err, errlen, "gray with %u extra samples", nextra);
            L->mode = bits == 1 ? CLIP_MODE_1 : alpha_at == 1 ? CLIP_MODE_LA : CLIP_MODE_L;
            L->channels = alpha_at == 1 ? 2 : 1;
            L->scale = bits == 1 ? 255 : bits == 2 ? 85 : bits == 4 ? 17 : 1;
        } else {
            return refuse(err, errlen, "%u-bit gray", bits);
        }
        break;
    case PHOTOMETRIC_PALETTE: {
        if (spp != 1 && !(spp == 2 && nextra == 1 && extra[0] == EXTRASAMPLE_UNSPECIFIED))
            return refuse(err, errlen, "a palette image with %u samples per pixel", spp);
        if (bits != 1 && bits != 2 && bits != 4 && bits != 8) return refuse(err, errlen, "%u-bit palette", bits);
        uint16_t *r = NULL, *g = NULL, *b = NULL;
        if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &r, &g, &b)) {
            snprintf(err, errlen, "corrupt TIFF: a palette image without a colour map");
            return CLIP_IMAGE_CORRUPT;
        }
        int n = 1 << bits;
        // Pillow keeps each 16-bit entry's high byte.
        for (int i = 0; i < n; i++) {
            out->palette[i * 3] = (uint8_t)(r[i] >> 8);
            out->palette[i * 3 + 1] = (uint8_t)(g[i] >> 8);
            out->palette[i * 3 + 2] = (uint8_t)(b[i] >> 8);
        }
        out->palette_size = n;
        L->mode = CLIP_MODE_P;
        L->channels = 1;
        break;
    }
    case PHOTOMETRIC_YCBCR:
        if (compression == COMPRESSION_JPEG && base == 3 && bits == 8 && planar == PLANARCONFIG_CONTIG) {
            if (!TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB)) {
                snprintf(err, errlen, "corrupt TIFF: libtiff cannot convert its JPEG data to RGB");
                return CLIP_IMAGE_CORRUPT;
            }
        } else if (base == 1 && bits == 8 && !nextra) {
            L->mode = CLIP_MODE_L;  // Pillow reads one YCbCr sample as gray
            L->channels = 1;
            L->scale = 1;
            break;
        } else {
            return refuse(err, errlen, "YCbCr without JPEG compression");
        }
        /* fall through: RGB from here on */
    case PHOTOMETRIC_RGB:
        if (base != 3) return refuse(err, errlen, "RGB with %d colour samples", base);
        if (bits != 8 && bits != 16) return refuse(err, errlen, "%u-bit RGB", bits);
        L->mode = alpha_at == 3 ? CLIP_MODE_RGBA : CLIP_MODE_RGB;
        if (nextra > 3 || (bits == 16 && nextra > 1)) return refuse(err, errlen, "RGB with %u extra samples", nextra);
        L->channels = L->mode == CLIP_MODE_RGBA ? 4 : 3;
        break;
    case PHOTOMETRIC_SEPARATED: {
        uint16_t inkset = INKSET_CMYK;
        TIFFGetFieldDefaulted(tif, TIFFTAG_INKSET, &inkset);
        if (base != 4 || (bits != 8 && bits != 16)) return refuse(err, errlen, "separated (%d inks at %u bits)", base, bits);
        if (alpha_at >= 0 || nextra > (bits == 8 ? 2 : 0)) return refuse(err, errlen, "CMYK with extra samples");
        L->mode = CLIP_MODE_CMYK;
        L->channels = 4;
        break;
    }
    default:
        return refuse(err, errlen, "photometric interpretation %u", photometric);
    }
    if (L->mode == CLIP_MODE_P && nextra) L->map[1] = -1;
    return CLIP_IMAGE_OK;
}

// One sample of an 8-bit or 16-bit row, or of a packed 1/2/4-bit row.
static inline unsigned sample_at(const uint8_t *row, int bits, size_t i) {
    switch (bits) {
    case 8: return row[i];
    case 16: {
        uint16_t v;  // libtiff hands 16-bit samples over in the machine's order
        memcpy(&v, row + 2 * i, 2);
        return v;
    }
    default: {
        size_t bit = i * (size_t)bits;
        return (row[bit >> 3] >> (8 - bits - (bit & 7))) & ((1u << bits) - 1);
    }
    }
}

// Writes `count` pixels' samples from `src` (holding `nsamples` interleaved samples a pixel, starting with sample
// `first`) into output row `dst` at pixel `x0`.
static void put_samples(const layout *L, const uint8_t *src, int nsamples, int first, uint8_t *dst, size_t x0, size_t count) {
    for (size_t x = 0; x < count; x++) {
        for (int k = 0; k < nsamples; k++) {
            int c = L->map[first + k];
            if (c < 0) continue;
            unsigned v = sample_at(src, L->bits, x * (size_t)nsamples + (size_t)k);
            uint8_t *o = dst + (x0 + x) * (size_t)L->channels;
            if (L->mode == CLIP_MODE_I16) {
                o[0] = (uint8_t)(v & 0xFF);  // stored little-endian, as Pillow's I;16
                o[1] = (uint8_t)(v >> 8);
                continue;
            }
            if (L->bits == 16) v >>= 8;
            if (c == 0 && (L->mode == CLIP_MODE_L || L->mode == CLIP_MODE_LA || L->mode == CLIP_MODE_1)) {
                unsigned top = L->bits == 8 ? 255 : (1u << L->bits) - 1;
                if (L->invert) v = top - v;
                if (L->bits < 8) v *= (unsigned)L->scale;
            }
            o[c] = (uint8_t)v;
        }
    }
}

int clip_decode_tiff(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    tiff_source s = {data, size, 0, err, errlen, 0};
    snprintf(err, errlen, "corrupt or truncated TIFF header");
    TIFF *tif = open_tiff(&s);
    if (!tif) return CLIP_IMAGE_CORRUPT;
    int code = CLIP_IMAGE_OK;
    uint8_t *pixels = NULL, *buf = NULL;
    uint32_t w = 0, h = 0;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h) || !w || !h ||
        w > 0x7FFFFFFF || h > 0x7FFFFFFF) {
        snprintf(err, errlen, "corrupt TIFF: the first page declares a size of %ux%u", w, h);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    if ((uint64_t)w * h > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)", w, h,
                 (unsigned long long)((uint64_t)w * h), (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        goto done;
    }
    layout L;
    if ((code = choose_layout(tif, data, size, h, &L, out, err, errlen)) != CLIP_IMAGE_OK) goto done;
    size_t row = (size_t)w * (size_t)L.channels;
    pixels = clip_image_pixels(out, row * h);
    if (!pixels) {
        snprintf(err, errlen, "out of memory for a %ux%u image", w, h);
        code = CLIP_IMAGE_NO_MEMORY;
        goto done;
    }
    // Not zeroed first: every output channel is written by the reads below (a file that ends early is an error and
    // its pixels are dropped), and zeroing 700 MB for a header without data is what a hostile file would ask for.
    int planes = L.planar == PLANARCONFIG_SEPARATE ? L.spp : 1;
    int per_pixel = L.planar == PLANARCONFIG_SEPARATE ? 1 : L.spp;
    if (TIFFIsTiled(tif)) {
        uint32_t tw = 0, th = 0;
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
        tmsize_t tsize = TIFFTileSize(tif);
        if (!tw || !th || tsize <= 0) {
            if (!s.failed) snprintf(err, errlen, "corrupt TIFF: tiles of %ux%u", tw, th);
            code = CLIP_IMAGE_CORRUPT;
            goto done;
        }
        // A tile larger than the image (beyond the multiple of 16 the specification asks for) or than libtiff's own
        // allocation cap: a 16x16 image in one 16384x16384 tile would take 800 MB to read 256 pixels.
        if ((uint64_t)tw > ((uint64_t)w + 15) / 16 * 16 || (uint64_t)th > ((uint64_t)h + 15) / 16 * 16 || tsize > TIFF_MAX_ALLOC) {
            snprintf(err, errlen, "corrupt TIFF: tiles of %ux%u (%lld bytes) for a %ux%u image", tw, th, (long long)tsize, w, h);
            code = CLIP_IMAGE_CORRUPT;
            goto done;
        }
        size_t tile_row = ((size_t)tw * (size_t)per_pixel * (size_t)L.bits + 7) / 8;
        if ((uint64_t)tile_row * th > (uint64_t)tsize) {
            snprintf(err, errlen, "corrupt TIFF: a %ux%u tile does not fit libtiff's %lld-byte tile", tw, th, (long long)tsize);
            code = CLIP_IMAGE_CORRUPT;
            goto done;
        }
        buf = malloc((size_t)tsize);
        if (!buf) { snprintf(err, errlen, "out of memory for a TIFF tile"); code = CLIP_IMAGE_NO_MEMORY; goto done; }
        for (int p = 0; p < planes; p++)
            for (uint32_t ty = 0; ty < h; ty += th)
                for (uint32_t tx = 0; tx < w; tx += tw) {
                    ttile_t t = TIFFComputeTile(tif, tx, ty, 0, (uint16_t)p);
                    if (TIFFReadEncodedTile(tif, t, buf, tsize) < 0) {
                        if (!s.failed) snprintf(err, errlen, "corrupt or truncated TIFF tile %u", t);
                        code = CLIP_IMAGE_CORRUPT;
                        goto done;
                    }
                    uint32_t cw = tw < w - tx ? tw : w - tx, ch = th < h - ty ? th : h - ty;
                    for (uint32_t y = 0; y < ch; y++)
                        put_samples(&L, buf + (size_t)y * tile_row, per_pixel, p, pixels + (size_t)(ty + y) * row, tx, cw);
                }
    } else {
        tmsize_t lsize = TIFFScanlineSize(tif);
        size_t need = ((size_t)w * (size_t)per_pixel * (size_t)L.bits + 7) / 8;
        if (lsize <= 0 || (size_t)lsize < need) {
            if (!s.failed) snprintf(err, errlen, "corrupt TIFF: rows of %lld bytes for %u pixels", (long long)lsize, w);
            code = CLIP_IMAGE_CORRUPT;
            goto done;
        }
        buf = malloc((size_t)lsize);
        if (!buf) { snprintf(err, errlen, "out of memory for a TIFF row"); code = CLIP_IMAGE_NO_MEMORY; goto done; }
        for (int p = 0; p < planes; p++)
            for (uint32_t y = 0; y < h; y++) {
                if (TIFFReadScanline(tif, buf, y, (uint16_t)p) < 0) {
                    if (!s.failed) snprintf(err, errlen, "corrupt or truncated TIFF data at row %u", y);
                    code = CLIP_IMAGE_CORRUPT;
                    goto done;
                }
                put_samples(&L, buf, per_pixel, p, pixels + (size_t)y * row, 0, w);
            }
    }
    if (s.failed) {  // an error libtiff reported without failing the read
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->channels = L.channels;
    out->mode = L.mode;
    out->pixels = pixels;
    pixels = NULL;
    // Pillow turns TIFF pixels on load (ImageOps.exif_transpose in its load_end); the caller does the same with this.
    out->orientation = orientation_of(tif);
done:
    free(buf);
    if (pixels) clip_image_drop_pixels(out, pixels);
    TIFFClose(tif);
    if (code != CLIP_IMAGE_OK) clip_image_free(out);
    return code;
}
