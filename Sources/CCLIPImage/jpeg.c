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
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            out->exif = malloc(m->data_length - 6);
            if (out->exif) {
                memcpy(out->exif, m->data + 6, m->data_length - 6);
                out->exif_size = m->data_length - 6;
            }
            return;
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

int clip_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    error_ctx e;
    clip_image_reset(out);
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error;
    e.pub.emit_message = on_message;
    e.truncated = 0;
    e.err = err;
    e.errlen = errlen;
    uint8_t *volatile pixels = NULL;
    int code = CLIP_IMAGE_CORRUPT;
    switch (setjmp(e.jump)) {  // longjmp(…, 1): a libjpeg error; 2: the scan limit
    case 0:
        break;
    case 2:
        code = CLIP_IMAGE_TOO_LARGE;
        // fall through
    default:
        jpeg_destroy_decompress(&cinfo);
        clip_image_drop_pixels(out, pixels);
        clip_image_free(out);
        return code;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    if (e.truncated) {
        snprintf(err, errlen, "truncated JPEG: the data ends inside the header");
        jpeg_destroy_decompress(&cinfo);
        return CLIP_IMAGE_CORRUPT;
    }
    uint64_t npix = (uint64_t)cinfo.image_width * cinfo.image_height;
    if (npix > max_pixels) {
        snprintf(err, errlen, "image is %ux%u = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 cinfo.image_width, cinfo.image_height, (unsigned long long)npix, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return CLIP_IMAGE_TOO_LARGE;
    }
    set_layout(&cinfo, out);
    keep_exif(&cinfo, out);
    e.max_scans = scan_limit(npix);
    e.progress.progress_monitor = on_progress;
    cinfo.progress = &e.progress;
    jpeg_start_decompress(&cinfo);
    out->width = (int32_t)cinfo.output_width;
    out->height = (int32_t)cinfo.output_height;
    size_t stride = (size_t)out->width * out->channels;
    pixels = clip_image_pixels(out, stride * out->height);
    if (!pixels) {
        snprintf(err, errlen, "out of memory for a %dx%d image", out->width, out->height);
        jpeg_destroy_decompress(&cinfo);
        clip_image_free(out);
        return CLIP_IMAGE_NO_MEMORY;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
        if (e.truncated) break;
    }
    if (e.truncated) {
        snprintf(err, errlen, "truncated JPEG: the data ends after %u of %u rows", cinfo.output_scanline,
                 cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        clip_image_drop_pixels(out, pixels);
        clip_image_free(out);
        return CLIP_IMAGE_CORRUPT;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (out->mode == CLIP_MODE_CMYK) {
        // Pillow reads CMYK JPEGs with Adobe's inverted convention ("CMYK;I").
        for (size_t i = 0; i < stride * out->height; i++) pixels[i] = (uint8_t)~pixels[i];
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
