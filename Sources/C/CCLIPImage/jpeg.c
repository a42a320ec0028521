// JPEG through libjpeg(-turbo) with its default decoding (ISLOW IDCT, fancy upsampling), as Pillow decodes.
#include "clip_image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char *err;
    size_t errlen;
    struct jpeg_progress_mgr progress;
    int max_scans;
} error_ctx;

// Each progressive scan is a pass over every block of the image, and a file may repeat scans at almost no cost in
// bytes: a 1 MB file of 1,000 repeated scans over 144 megapixels decodes for minutes. libjpeg-turbo's tools and
// browsers limit the scans; ordinary encoders write at most about 10 (libjpeg's default progression) or 16.
static int scan_limit(uint64_t pixels) {
    uint64_t budget = 4000000000ull / (pixels ? pixels : 1);  // scans × pixels
    return budget < 20 ? 20 : (budget > 100 ? 100 : (int)budget);
}

static void on_progress(j_common_ptr common) {
    j_decompress_ptr cinfo = (j_decompress_ptr)common;
    error_ctx *e = (error_ctx *)cinfo->err;
    if (cinfo->is_decompressor && cinfo->input_scan_number > e->max_scans) {
        snprintf(e->err, e->errlen, "progressive JPEG with more than %d scans for a %ux%u image (a decoding bomb?)",
                 e->max_scans, cinfo->image_width, cinfo->image_height);
        longjmp(e->jump, 2);
    }
}

static void on_error(j_common_ptr cinfo) {
    error_ctx *e = (error_ctx *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    snprintf(e->err, e->errlen, "corrupt JPEG data: %s", msg);
    longjmp(e->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    // Warnings are ignored as Pillow ignores them, except running out of data: libjpeg would pad the image
    // with grey, Pillow reports the file as truncated.
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ((error_ctx *)cinfo->err)->truncated = 1;
}

static void keep_exif(j_decompress_ptr cinfo, clip_image *out) {
    static const char xmp[] = "http://ns.adobe.com/xap/1.0/";
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        if (!out->exif && m->data_length > 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            out->exif = malloc(m->data_length - 6);
            if (out->exif) {
                memcpy(out->exif, m->data + 6, m->data_length - 6);
                out->exif_size = m->data_length - 6;
            }
        } else if (out->xmp_orientation < 0 && m->data_length > sizeof xmp && memcmp(m->data, xmp, sizeof xmp) == 0) {
            out->xmp_orientation = clip_xmp_orientation(m->data + sizeof xmp, m->data_length - sizeof xmp);
        }
    }
}

// The color space libjpeg converts to, matching the mode Pillow loads this JPEG in.
static void set_layout(struct jpeg_decompress_struct *cinfo, clip_image *out) {
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo->out_color_space = JCS_GRAYSCALE;
        out->mode = CLIP_MODE_L;
        out->channels = 1;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo->out_color_space = JCS_CMYK;
        out->mode = CLIP_MODE_CMYK;
        out->channels = 4;
        break;
    default:
        cinfo->out_color_space = JCS_RGB;
        out->mode = CLIP_MODE_RGB;
        out->channels = 3;
        break;
    }
}

struct clip_jpeg_stream {
    struct jpeg_decompress_struct cinfo;
    error_ctx e;
    int cmyk;
    size_t stride;
};

void clip_jpeg_close(clip_jpeg_stream *s) {
    if (!s) return;
    jpeg_destroy_decompress(&s->cinfo);
    free(s);
}

int clip_jpeg_open(const uint8_t *data, size_t size, uint64_t max_pixels, clip_jpeg_stream **stream, clip_image *out,
                   char *err, size_t errlen) {
    *stream = NULL;
    clip_image_reset(out);
    clip_jpeg_stream *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    s->cinfo.err = jpeg_std_error(&s->e.pub);
    s->e.pub.error_exit = on_error;
    s->e.pub.emit_message = on_message;
    s->e.err = err;
    s->e.errlen = errlen;
    int code = CLIP_IMAGE_CORRUPT;
    switch (setjmp(s->e.jump)) {  // longjmp(…, 1): a libjpeg error; 2: the scan limit (progressive files read
    case 0:                       // their scans in jpeg_start_decompress)
        break;
    case 2:
        code = CLIP_IMAGE_TOO_LARGE;
        // fall through
    default:
        clip_jpeg_close(s);
        clip_image_free(out);
        return code;
    }
    jpeg_create_decompress(&s->cinfo);
    jpeg_mem_src(&s->cinfo, data, (unsigned long)size);
    jpeg_save_markers(&s->cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&s->cinfo, TRUE);
    if (s->e.truncated) {
        snprintf(err, errlen, "truncated JPEG: the data ends inside the header");
        clip_jpeg_close(s);
        return CLIP_IMAGE_CORRUPT;
    }
    uint64_t npix = (uint64_t)s->cinfo.image_width * s->cinfo.image_height;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 s->cinfo.image_width, s->cinfo.image_height, (unsigned long long)npix, (unsigned long long)max_pixels);
        clip_jpeg_close(s);
        return CLIP_IMAGE_TOO_LARGE;
    }
    set_layout(&s->cinfo, out);
    keep_exif(&s->cinfo, out);
    s->cmyk = out->mode == CLIP_MODE_CMYK;
    s->e.max_scans = scan_limit(npix);
    s->e.progress.progress_monitor = on_progress;
    s->cinfo.progress = &s->e.progress;
    jpeg_start_decompress(&s->cinfo);
    out->width = (int32_t)s->cinfo.output_width;
    out->height = (int32_t)s->cinfo.output_height;
    s->stride = (size_t)out->width * out->channels;
    *stream = s;
    return CLIP_IMAGE_OK;
}

// Decodes every scanline in order into `rows` (the whole image) or, with `rs`, one row at a time into the resampler.
static int read_scanlines(clip_jpeg_stream *s, uint8_t *rows, clip_resampler *rs, char *err, size_t errlen) {
    s->e.err = err;
    s->e.errlen = errlen;
    uint8_t *volatile row = NULL;
    int code = CLIP_IMAGE_CORRUPT;
    switch (setjmp(s->e.jump)) {  // longjmp(…, 1): a libjpeg error; 2: the scan limit
    case 0:
        break;
    case 2:
        code = CLIP_IMAGE_TOO_LARGE;
        // fall through
    default:
        free(row);
        return code;
    }
    if (!rows) {
        row = malloc(s->stride ? s->stride : 1);
        if (!row) { snprintf(err, errlen, "out of memory"); return CLIP_IMAGE_NO_MEMORY; }
    }
    const JDIMENSION first = rs ? (JDIMENSION)clip_resampler_first_row(rs) : 0;
    const JDIMENSION end = rs ? first + (JDIMENSION)clip_resampler_row_count(rs) : 0;
    while (s->cinfo.output_scanline < s->cinfo.output_height) {
        const JDIMENSION y = s->cinfo.output_scanline;
        JSAMPROW target = rows ? rows + s->stride * y : row;
        jpeg_read_scanlines(&s->cinfo, &target, 1);
        if (s->e.truncated) break;
        // Pillow reads CMYK JPEGs with Adobe's inverted convention ("CMYK;I").
        if (s->cmyk) for (size_t i = 0; i < s->stride; i++) target[i] = (uint8_t)~target[i];
        if (rs && y >= first && y < end) clip_resampler_push(rs, target);
    }
    free(row);
    row = NULL;
    if (s->e.truncated) {
        snprintf(err, errlen, "truncated JPEG: the data ends after %u of %u rows", s->cinfo.output_scanline,
                 s->cinfo.output_height);
        return CLIP_IMAGE_CORRUPT;
    }
    jpeg_finish_decompress(&s->cinfo);
    return CLIP_IMAGE_OK;
}

int clip_jpeg_read_rows(clip_jpeg_stream *s, clip_resampler *rs, char *err, size_t errlen) {
    return read_scanlines(s, NULL, rs, err, errlen);
}

int clip_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_jpeg_stream *s;
    int code = clip_jpeg_open(data, size, max_pixels, &s, out, err, errlen);
    if (code != CLIP_IMAGE_OK) return code;
    uint8_t *pixels = clip_image_pixels(out, s->stride * (size_t)out->height);
    if (!pixels) {
        snprintf(err, errlen, "out of memory for a %dx%d image", out->width, out->height);
        clip_jpeg_close(s);
        clip_image_free(out);
        return CLIP_IMAGE_NO_MEMORY;
    }
    code = read_scanlines(s, pixels, NULL, err, errlen);
    clip_jpeg_close(s);
    if (code != CLIP_IMAGE_OK) {
        clip_image_drop_pixels(out, pixels);
        clip_image_free(out);
        return code;
    }
    out->pixels = pixels;
    return CLIP_IMAGE_OK;
}

void clip_image_free(clip_image *img) {
    if (img->owns_pixels) free(img->pixels);
    free(img->exif);
    img->pixels = NULL;
    img->owns_pixels = 0;
    img->exif = NULL;
    img->exif_size = 0;
}

void clip_image_reset(clip_image *img) {
    uint8_t *buffer = img->buffer;
    size_t capacity = img->buffer_capacity;
    memset(img, 0, sizeof *img);
    img->buffer = buffer;
    img->buffer_capacity = capacity;
    img->xmp_orientation = -1;
}

uint8_t *clip_image_pixels(clip_image *img, size_t bytes) {
    if (img->buffer && img->buffer_capacity >= bytes) {
        img->owns_pixels = 0;
        return img->buffer;
    }
    img->owns_pixels = 1;
    return malloc(bytes ? bytes : 1);
}

void clip_image_drop_pixels(clip_image *img, uint8_t *pixels) {
    if (img->owns_pixels) free(pixels);
    img->owns_pixels = 0;
}

int clip_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *out_size, char *err,
                     size_t errlen) {
    *out = NULL;
    *out_size = 0;
    if (width <= 0 || height <= 0 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION || quality < 1 ||
        quality > 100) {
        snprintf(err, errlen, "cannot write a %dx%d JPEG at quality %d", width, height, quality);
        return 1;
    }
    struct jpeg_compress_struct cinfo;
    error_ctx e;
    memset(&e, 0, sizeof e);
    e.err = err;
    e.errlen = errlen;
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    // Our own buffer, sized past the largest JPEG these dimensions give (libjpeg-turbo's tjBufSize bound), so libjpeg
    // never reallocates it: the error path then owns exactly one allocation to free.
    size_t capacity = (((size_t)width + 15) & ~(size_t)15) * (((size_t)height + 15) & ~(size_t)15) * 6 + 2048;
    unsigned char *mine = malloc(capacity);
    if (!mine) {
        snprintf(err, errlen, "out of memory for a %dx%d JPEG", width, height);
        return 1;
    }
    unsigned char *b = mine;
    unsigned long size = capacity;
    if (setjmp(e.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(mine);
        return 1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &b, &size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    if (b != mine) free(mine);
    *out = b;
    *out_size = size;
    return 0;
}
