// Camera RAW through LibRaw (libraw_r, the thread-safe build): the embedded JPEG preview when it is at least half the
// photo's size (what photo managers show, and far faster than demosaicing), else the sensor data demosaiced as
// rawpy's postprocess(use_camera_wb=True) does it (LibRaw's defaults: AHD, sRGB, the camera's white balance, 8 bits).
// Either way the photo is shown as the camera was held: LibRaw turns what it demosaics, and a preview is reported with
// the turn for the caller to apply (`orientation`), whatever the caller's orientation setting, as every RAW viewer
// does (Pillow, the reference's reader, does not read RAW at all).
#include "clip_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libraw/libraw.h>

#include "tiff_bytes.h"

typedef struct {
    int failed;
    char what[160];
} raw_errors;

static void on_data_error(void *user, const char *file, const int offset) {
    (void)file;
    raw_errors *e = user;
    if (e->failed) return;
    e->failed = 1;
    if (offset < 0) snprintf(e->what, sizeof e->what, "the data ends early");
    else snprintf(e->what, sizeof e->what, "corrupt data at offset %d", offset);
}

static void on_memory_error(void *user, const char *file, const char *where) {
    (void)file;
    raw_errors *e = user;
    if (e->failed) return;
    e->failed = 1;
    snprintf(e->what, sizeof e->what, "out of memory in %s", where ? where : "LibRaw");
}

// LibRaw's largest raw-data allocation, in MiB (its default is 2048).
enum { RAW_MAX_MEMORY_MB = 1024 };

// LibRaw's flip (0, 3, 5, 6) as the EXIF orientation that stands for the same turn.
static int orientation_of_flip(int flip) { return flip == 3 ? 3 : flip == 5 ? 8 : flip == 6 ? 6 : 1; }

typedef struct {
    libraw_data_t *lr;
    raw_errors errors;
    int preview;              // 1: the embedded JPEG is what is shown
    uint32_t width, height;   // as shown
} raw_file;

// A TIFF-structured RAW whose tags or image data point past the end of the file is cut short: LibRaw would read
// the missing values as zeros and demosaic a different photo without a word. Walks the IFD chain, SubIFDs and the
// EXIF IFD (at most 64 IFDs, each once); returns 0, or the offset of the first reference past the end.
static uint64_t tiff_reference_past_end(const uint8_t *d, size_t size) {
    tiff_bytes t;
    if (!tiff_bytes_open(&t, d, size)) return 0;
    static const uint8_t type_size[19] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8};
    uint64_t queue[64], seen[64];
    int nq = 0, ns = 0;
    queue[nq++] = tiff_u32(&t, 4);
    while (nq > 0) {
        uint64_t at = queue[--nq];
        if (at == 0) continue;
        int again = 0;
        for (int i = 0; i < ns; i++) if (seen[i] == at) again = 1;
        if (again || ns == 64) continue;
        seen[ns++] = at;
        if (at + 2 > size) return at;
        uint32_t n = tiff_u16(&t, at);
        if (at + 2 + 12 * (uint64_t)n + 4 > size) return at;
        uint64_t strips[2][2] = {{0, 0}, {0, 0}};  // where the offsets and the byte counts are, and how many
        uint32_t strip_type[2] = {0, 0};
        for (uint32_t i = 0; i < n; i++) {
            uint64_t e = at + 2 + 12 * (uint64_t)i;
            uint32_t tag = tiff_u16(&t, e), type = tiff_u16(&t, e + 2), count = tiff_u32(&t, e + 4);
            uint64_t bytes = (uint64_t)count * (type < 19 ? type_size[type] : 0);
            uint64_t where = bytes <= 4 ? e + 8 : tiff_u32(&t, e + 8);
            if (bytes > 4 && where + bytes > size) return where;
            if ((tag == 330 || tag == 34665) && (type == 4 || type == 13)) {
                for (uint32_t k = 0; k < count && k < 8 && nq < 64; k++) queue[nq++] = tiff_u32(&t, where + 4 * k);
            }
            int slot = tag == 273 || tag == 324 ? 0 : tag == 279 || tag == 325 ? 1 : -1;
            if (slot >= 0 && (type == 3 || type == 4)) {
                strips[slot][0] = where;
                strips[slot][1] = count;
                strip_type[slot] = type;
            }
        }
        if (strips[0][1] && strips[0][1] == strips[1][1]) {
            for (uint64_t k = 0; k < strips[0][1]; k++) {
                uint64_t off = strip_type[0] == 3 ? tiff_u16(&t, strips[0][0] + 2 * k) : tiff_u32(&t, strips[0][0] + 4 * k);
                uint64_t len = strip_type[1] == 3 ? tiff_u16(&t, strips[1][0] + 2 * k) : tiff_u32(&t, strips[1][0] + 4 * k);
                if (off + len > size) return off;
            }
        }
        if (nq < 64) queue[nq++] = tiff_u32(&t, at + 2 + 12 * (uint64_t)n);
    }
    return 0;
}

static int raw_open(raw_file *f, const uint8_t *data, size_t size, uint64_t max_pixels, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    uint64_t past = tiff_reference_past_end(data, size);
    if (past) {
        snprintf(err, errlen, "truncated camera RAW file: data at offset %llu is past its end (%zu bytes)",
                 (unsigned long long)past, size);
        return CLIP_IMAGE_CORRUPT;
    }
    f->lr = libraw_init(0);
    if (!f->lr) { snprintf(err, errlen, "out of memory for the RAW reader"); return CLIP_IMAGE_NO_MEMORY; }
    libraw_set_dataerror_handler(f->lr, on_data_error, &f->errors);
    libraw_set_memerror_handler(f->lr, on_memory_error, &f->errors);
    f->lr->params.max_raw_memory_mb = RAW_MAX_MEMORY_MB;
    int r = libraw_open_buffer(f->lr, (void *)data, size);
    if (r != LIBRAW_SUCCESS) {
        if (r == LIBRAW_FILE_UNSUPPORTED) {
            snprintf(err, errlen, "a camera RAW file LibRaw %s does not read", libraw_version());
            return CLIP_IMAGE_UNSUPPORTED;
        }
        snprintf(err, errlen, "corrupt camera RAW file: %s", f->errors.failed ? f->errors.what : libraw_strerror(r));
        return r == LIBRAW_TOO_BIG ? CLIP_IMAGE_TOO_LARGE : CLIP_IMAGE_CORRUPT;
    }
    libraw_data_t *lr = f->lr;
    uint64_t sensor = (uint64_t)lr->sizes.raw_width * lr->sizes.raw_height;
    uint64_t shown = (uint64_t)lr->sizes.width * lr->sizes.height;
    if (!lr->sizes.width || !lr->sizes.height) {
        snprintf(err, errlen, "corrupt camera RAW file: an image of %ux%u", lr->sizes.width, lr->sizes.height);
        return CLIP_IMAGE_CORRUPT;
    }
    if (sensor > max_pixels || shown > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 lr->sizes.raw_width, lr->sizes.raw_height, (unsigned long long)(sensor > shown ? sensor : shown),
                 (unsigned long long)max_pixels);
        return CLIP_IMAGE_TOO_LARGE;
    }
    int swap = lr->sizes.flip & 4;
    f->width = swap ? lr->sizes.height : lr->sizes.width;
    f->height = swap ? lr->sizes.width : lr->sizes.height;
    // A JPEG preview stands for the photo when it is at least half its size on the shorter side.
    if (libraw_unpack_thumb(lr) == LIBRAW_SUCCESS && lr->thumbnail.tformat == LIBRAW_THUMBNAIL_JPEG &&
        lr->thumbnail.thumb && lr->thumbnail.tlength > 0) {
        uint32_t tw = 0, th = 0;
        if (clip_image_probe((const uint8_t *)lr->thumbnail.thumb, lr->thumbnail.tlength, &tw, &th) == 0) {
            uint32_t short_side = lr->sizes.width < lr->sizes.height ? lr->sizes.width : lr->sizes.height;
            uint32_t thumb_short = tw < th ? tw : th;
            if ((uint64_t)thumb_short * 2 >= short_side && (uint64_t)tw * th <= max_pixels) {
                f->preview = 1;
                int turn = orientation_of_flip(lr->sizes.flip) >= 5;
                f->width = turn ? th : tw;
                f->height = turn ? tw : th;
            }
        }
    }
    f->errors.failed = 0;  // a damaged thumbnail is not the photo: only the path taken counts
    return CLIP_IMAGE_OK;
}

int clip_raw_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    raw_file f;
    char err[8];
    int code = raw_open(&f, data, size, UINT64_MAX, err, sizeof err);
    if (f.lr) libraw_close(f.lr);
    if (code != CLIP_IMAGE_OK) return -1;
    *width = f.width;
    *height = f.height;
    return 0;
}

int clip_decode_raw(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    raw_file f;
    int code = raw_open(&f, data, size, max_pixels, err, errlen);
    libraw_processed_image_t *img = NULL;
    if (code != CLIP_IMAGE_OK) goto done;
    libraw_data_t *lr = f.lr;
    if (f.preview) {
        code = clip_decode_jpeg((const uint8_t *)lr->thumbnail.thumb, lr->thumbnail.tlength, max_pixels, out, err, errlen);
        if (code != CLIP_IMAGE_OK) {
            char inner[400];
            snprintf(inner, sizeof inner, "%s", err);
            snprintf(err, errlen, "the camera RAW file's JPEG preview: %s", inner);
            goto done;
        }
        // The preview is stored as the sensor lies; the file's turn is applied to it (not a JPEG tag of its own).
        free(out->exif);
        out->exif = NULL;
        out->exif_size = 0;
        out->orientation = orientation_of_flip(lr->sizes.flip);
        goto done;
    }
    lr->params.use_camera_wb = 1;
    lr->params.output_bps = 8;
    int r = libraw_unpack(lr);
    if (r == LIBRAW_SUCCESS && !f.errors.failed) r = libraw_dcraw_process(lr);
    if (r != LIBRAW_SUCCESS || f.errors.failed) {
        int unsupported = r == LIBRAW_FILE_UNSUPPORTED || r == LIBRAW_NOT_IMPLEMENTED;
        snprintf(err, errlen, "%s: %s", unsupported ? "a camera RAW file LibRaw cannot demosaic" : "corrupt camera RAW data",
                 f.errors.failed ? f.errors.what : libraw_strerror(r));
        code = unsupported ? CLIP_IMAGE_UNSUPPORTED : r == LIBRAW_UNSUFFICIENT_MEMORY ? CLIP_IMAGE_NO_MEMORY : CLIP_IMAGE_CORRUPT;
        goto done;
    }
    int e = 0;
    img = libraw_dcraw_make_mem_image(lr, &e);
    if (!img || img->type != LIBRAW_IMAGE_BITMAP || img->colors != 3 || img->bits != 8 ||
        (size_t)img->data_size < (size_t)img->width * img->height * 3) {
        snprintf(err, errlen, "LibRaw produced no 8-bit RGB image (%s)", libraw_strerror(e));
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    size_t bytes = (size_t)img->width * img->height * 3;
    uint8_t *pixels = clip_image_pixels(out, bytes);
    if (!pixels) {
        snprintf(err, errlen, "out of memory for a %ux%u image", img->width, img->height);
        code = CLIP_IMAGE_NO_MEMORY;
        goto done;
    }
    memcpy(pixels, img->data, bytes);
    out->pixels = pixels;
    out->width = img->width;
    out->height = img->height;
    out->channels = 3;
    out->mode = CLIP_MODE_RGB;
done:
    if (img) libraw_dcraw_clear_mem(img);
    if (f.lr) libraw_close(f.lr);
    if (code != CLIP_IMAGE_OK) clip_image_free(out);
    return code;
}

// Camera RAW by signature: RAF, ORF, RW2 and CR3 by their own magic; TIFF-structured ones (CR2, NEF, ARW, DNG, PEF,
// SRW, …) by what a plain TIFF's first IFD does not hold: Canon's "CR" marker, a DNG version, a reduced-resolution
// first page (the thumbnail NEF and ARW files open with), a colour filter array, or a vendor compression.
int clip_is_camera_raw(const uint8_t *d, size_t size) {
    if (size >= 16 && memcmp(d, "FUJIFILMCCD-RAW", 15) == 0) return 1;
    if (size >= 4 && (memcmp(d, "IIRO", 4) == 0 || memcmp(d, "IIRS", 4) == 0 || memcmp(d, "MMOR", 4) == 0)) return 1;
    if (size >= 4 && memcmp(d, "IIU\0", 4) == 0) return 1;
    if (size >= 12 && memcmp(d + 4, "ftypcrx ", 8) == 0) return 1;
    tiff_bytes t;
    uint64_t at;
    uint32_t n;
    if (size < 16 || !tiff_bytes_open(&t, d, size)) return 0;
    if (d[8] == 'C' && d[9] == 'R') return 1;
    if (!tiff_first_ifd(&t, &at, &n)) return 0;
    for (uint32_t i = 0; i < n && at + 2 + 12 * (uint64_t)(i + 1) <= size; i++) {
        uint64_t e = at + 2 + 12 * (uint64_t)i;
        uint32_t tag = tiff_u16(&t, e), type = tiff_u16(&t, e + 2);
        uint32_t value = type == 3 ? tiff_u16(&t, e + 8) : type == 4 ? tiff_u32(&t, e + 8) : 0;
        if (tag == 50706) return 1;                                           // DNGVersion
        if (tag == 254 && (type == 3 || type == 4) && (value & 1)) return 1;  // NewSubfileType: reduced resolution
        if (tag == 262 && (value == 32803 || value == 34892)) return 1;       // CFA, LinearRaw
        if (tag == 259 && (type == 3 || type == 4) && value >= 32767 && value != 32773 && value != 32946 &&
            value != 34712 && value != 34887 && value != 50000 && value != 50001 && value != 32909 && value != 34676 &&
            value != 34677 && value != 34925 && value != 34933 && value != 34934)
            return 1;                                                         // a vendor's compression (Pentax, Nikon, Sony)
    }
    return 0;
}
