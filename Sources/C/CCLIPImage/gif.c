// GIF through giflib: the first frame as Pillow's Image.open gives it. Pillow keeps frame 0 as palette indices
// ("P"), or as gray ("L") when the frame's colour table is missing or is the identity ramp (index i = gray i); the
// canvas is the logical screen, grown to hold the frame, filled with the frame's transparent index (else 0) outside
// the frame. Only the records before the first image are read: a file of a million frames costs what its first does.
#include "clip_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

typedef struct {
    const uint8_t *data;
    size_t size, at;
} gif_source;

static int gif_read(GifFileType *gif, GifByteType *buf, int n) {
    gif_source *s = gif->UserData;
    if (n <= 0) return 0;
    size_t left = s->size - s->at;
    size_t take = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, s->data + s->at, take);
    s->at += take;
    return (int)take;
}

static int gif_fail(char *err, size_t errlen, int code, const char *what) {
    const char *why = GifErrorString(code);
    snprintf(err, errlen, "%s: %s", what, why ? why : "unknown giflib error");
    return code == D_GIF_ERR_NOT_ENOUGH_MEM ? CLIP_IMAGE_NO_MEMORY : CLIP_IMAGE_CORRUPT;
}

// Pillow's _is_palette_needed: a table whose entry i is (i, i, i) throughout carries no colour.
static int palette_needed(const ColorMapObject *map) {
    for (int i = 0; i < map->ColorCount; i++) {
        const GifColorType *c = &map->Colors[i];
        if (!(c->Red == i && c->Green == i && c->Blue == i)) return 1;
    }
    return 0;
}

// The canvas size from the blocks before the first image (the screen, grown to hold the frame), without decoding.
int clip_gif_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height) {
    if (size < 13 || memcmp(data, "GIF8", 4) != 0) return -1;
    uint32_t w = data[6] | (uint32_t)data[7] << 8, h = data[8] | (uint32_t)data[9] << 8;
    size_t at = 13;
    if (data[10] & 0x80) at += (size_t)3 << ((data[10] & 7) + 1);
    while (at < size && data[at] == 0x21) {  // extension: introducer, label, sub-blocks up to an empty one
        at += 2;
        while (at < size && data[at]) at += (size_t)data[at] + 1;
        at++;
    }
    if (at + 10 > size || data[at] != 0x2C) return -1;
    uint32_t x1 = (data[at + 1] | (uint32_t)data[at + 2] << 8) + (data[at + 5] | (uint32_t)data[at + 6] << 8);
    uint32_t y1 = (data[at + 3] | (uint32_t)data[at + 4] << 8) + (data[at + 7] | (uint32_t)data[at + 8] << 8);
    if (x1 > w) w = x1;
    if (y1 > h) h = y1;
    if (w == 0 || h == 0) return -1;
    *width = w;
    *height = h;
    return 0;
}

int clip_decode_gif(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen) {
    clip_image_reset(out);
    gif_source src = {data, size, 0};
    int e = 0;
    GifFileType *gif = DGifOpen(&src, gif_read, &e);
    if (!gif) return gif_fail(err, errlen, e, "corrupt or truncated GIF header");
    int code = CLIP_IMAGE_OK;
    uint8_t *line = NULL, *pixels = NULL;
    int transparency = -1;
    GifRecordType type;
    for (;;) {
        if (DGifGetRecordType(gif, &type) == GIF_ERROR) { code = gif_fail(err, errlen, gif->Error, "corrupt or truncated GIF"); goto done; }
        if (type == TERMINATE_RECORD_TYPE) {
            snprintf(err, errlen, "the GIF file holds no image");
            code = CLIP_IMAGE_CORRUPT;
            goto done;
        }
        if (type == EXTENSION_RECORD_TYPE) {
            int ext_code = 0;
            GifByteType *ext = NULL;
            if (DGifGetExtension(gif, &ext_code, &ext) == GIF_ERROR) { code = gif_fail(err, errlen, gif->Error, "corrupt GIF extension"); goto done; }
            // Graphic control: the transparent index applies to the image that follows (the last such block wins).
            if (ext_code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1)) transparency = ext[4];
            while (ext) {
                if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) { code = gif_fail(err, errlen, gif->Error, "corrupt GIF extension"); goto done; }
            }
            continue;
        }
        if (type == IMAGE_DESC_RECORD_TYPE) break;
    }
    if (DGifGetImageDesc(gif) == GIF_ERROR) { code = gif_fail(err, errlen, gif->Error, "corrupt GIF image descriptor"); goto done; }
    GifImageDesc *d = &gif->Image;
    // An empty first frame has nothing to show (Pillow fails on it too); a blank canvas would pass for a picture.
    if (d->Width <= 0 || d->Height <= 0) {
        snprintf(err, errlen, "the GIF's first frame is empty (%dx%d)", d->Width, d->Height);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    uint64_t x1 = (uint64_t)d->Left + (uint64_t)d->Width, y1 = (uint64_t)d->Top + (uint64_t)d->Height;
    uint64_t w = x1 > (uint64_t)gif->SWidth ? x1 : (uint64_t)gif->SWidth;
    uint64_t h = y1 > (uint64_t)gif->SHeight ? y1 : (uint64_t)gif->SHeight;
    if (w == 0 || h == 0) {
        snprintf(err, errlen, "the GIF image declares a size of %llux%llu", (unsigned long long)w, (unsigned long long)h);
        code = CLIP_IMAGE_CORRUPT;
        goto done;
    }
    if (w * h > max_pixels) {
        snprintf(err, errlen, "image is %llux%llu = %llu pixels, more than the limit of %llu (a decompression bomb?)",
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h), (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        goto done;
    }
    // The frame's own table, else the screen's; a table that is the identity ramp makes a gray image (Pillow
    // decides per table: an identity local table hides a coloured global one).
    const ColorMapObject *map = d->ColorMap ? d->ColorMap : gif->SColorMap;
    int colour = map && palette_needed(map);
    if (d->ColorMap && !colour) map = NULL;
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->channels = 1;
    out->mode = colour ? CLIP_MODE_P : CLIP_MODE_L;
    if (colour) {
        out->palette_size = map->ColorCount > 256 ? 256 : map->ColorCount;
        for (int i = 0; i < out->palette_size; i++) {
            out->palette[i * 3] = map->Colors[i].Red;
            out->palette[i * 3 + 1] = map->Colors[i].Green;
            out->palette[i * 3 + 2] = map->Colors[i].Blue;
        }
    }
    pixels = clip_image_pixels(out, (size_t)(w * h));
    line = malloc(d->Width > 0 ? (size_t)d->Width : 1);
    if (!pixels || !line) {
        snprintf(err, errlen, "out of memory for a %llux%llu image", (unsigned long long)w, (unsigned long long)h);
        code = CLIP_IMAGE_NO_MEMORY;
        goto done;
    }
    memset(pixels, transparency >= 0 ? transparency : 0, (size_t)(w * h));
    {
        // Interlaced images arrive in four passes: every 8th row from 0, every 8th from 4, every 4th from 2, every 2nd from 1.
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        int passes = d->Interlace ? 4 : 1;
        for (int p = 0; p < passes; p++) {
            int first = d->Interlace ? start[p] : 0, stride = d->Interlace ? step[p] : 1;
            for (int y = first; y < d->Height; y += stride) {
                if (DGifGetLine(gif, line, d->Width) == GIF_ERROR) {
                    code = gif_fail(err, errlen, gif->Error, "corrupt or truncated GIF image data");
                    goto done;
                }
                memcpy(pixels + ((size_t)(d->Top + y) * (size_t)w + (size_t)d->Left), line, (size_t)d->Width);
            }
        }
    }
    out->pixels = pixels;
    pixels = NULL;
done:
    free(line);
    if (pixels) clip_image_drop_pixels(out, pixels);
    DGifCloseFile(gif, &e);
    if (code != CLIP_IMAGE_OK) clip_image_free(out);
    return code;
}
