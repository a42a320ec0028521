// Image dimensions from the header alone, so callers can budget the memory a decode will take before starting it.
#include "clip_image.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <webp/decode.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
} probe_error;

static void probe_on_error(j_common_ptr cinfo) { longjmp(((probe_error *)cinfo->err)->jump, 1); }
static void probe_on_message(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

static int probe_jpeg(const uint8_t *data, size_t size, uint32_t *w, uint32_t *h) {
    struct jpeg_decompress_struct cinfo;
    probe_error e;
    cinfo.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = probe_on_error;
    e.pub.emit_message = probe_on_message;
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    *w = cinfo.image_width;
    *h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

int clip_image_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    *width = *height = 0;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return probe_jpeg(data, size, width, height);
    if (size >= 24 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(data + 12, "IHDR", 4) == 0) {
        uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
        uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
        // The PNG specification's range (1 ... 2^31 - 1): callers multiply width and height as signed 64-bit.
        if (w == 0 || h == 0 || w > 0x7FFFFFFFu || h > 0x7FFFFFFFu) return -1;
        *width = w;
        *height = h;
        return 0;
    }
    if (size >= 12 && memcmp(data + 4, "ftyp", 4) == 0) {
        if (clip_isobmff_is_avif(data, size)) return clip_avif_probe(data, size, width, height);
        return clip_heif_probe(data, size, width, height);
    }
    if (clip_is_camera_raw(data, size)) return clip_raw_probe(data, size, width, height);
    if (size >= 4 && memcmp(data, "GIF8", 4) == 0) return clip_gif_probe(data, size, width, height);
    if (size >= 2 && memcmp(data, "BM", 2) == 0) return clip_bmp_probe(data, size, width, height);
    if (size >= 4 && (memcmp(data, "II*\0", 4) == 0 || memcmp(data, "MM\0*", 4) == 0)) return clip_tiff_probe(data, size, width, height);
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) {
        int w = 0, h = 0;
        if (!WebPGetInfo(data, size, &w, &h)) return -1;
        *width = (uint32_t)w;
        *height = (uint32_t)h;
        return 0;
    }
    return -1;
}
