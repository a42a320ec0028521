// Where Pillow finds an image's orientation besides a JPEG's APP1 EXIF: XMP's tiff:Orientation (when EXIF has none),
// a PNG's eXIf chunk after the image data (read when the image loads), WebP's EXIF and XMP chunks. Read from the
// encoded bytes without decoding, every length checked against the data.
#include "clip_image.h"

#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

int clip_xmp_orientation(const uint8_t *xmp, size_t size) {
    static const char key[] = "tiff:Orientation";
    const size_t k = sizeof key - 1;
    for (size_t i = 0; i + k < size; i++) {
        if (xmp[i] != 't' || memcmp(xmp + i, key, k) != 0) continue;
        size_t j = i + k;
        // Pillow's pattern: tiff:Orientation(="|>)([0-9]).
        if (j + 2 < size && xmp[j] == '=' && xmp[j + 1] == '"' && xmp[j + 2] >= '0' && xmp[j + 2] <= '9') return xmp[j + 2] - '0';
        if (j + 1 < size && xmp[j] == '>' && xmp[j + 1] >= '0' && xmp[j + 1] <= '9') return xmp[j + 1] - '0';
    }
    return -1;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

void clip_png_metadata(const uint8_t *data, size_t size, clip_image *out) {
    static const char xmp_key[] = "XML:com.adobe.xmp";
    size_t at = 8;
    while (at + 12 <= size) {
        uint32_t n = be32(data + at);
        if (n > size - at - 12) return;  // a chunk past the end: nothing more to find
        const uint8_t *type = data + at + 4, *body = data + at + 8;
        // Pillow keeps the last of each (its chunk handlers overwrite), the one after the image data included.
        if (memcmp(type, "eXIf", 4) == 0 && n > 0) {
            uint8_t *copy = malloc(n);
            if (copy) {
                memcpy(copy, body, n);
                free(out->exif);
                out->exif = copy;
                out->exif_size = n;
            }
        } else if (memcmp(type, "iTXt", 4) == 0 && n > sizeof xmp_key + 2 &&
                   memcmp(body, xmp_key, sizeof xmp_key) == 0 && body[sizeof xmp_key] == 0) {
            // keyword NUL, compression flag, method, language NUL, translated keyword NUL, text. A compressed
            // packet is not inflated (writers leave XMP uncompressed so that it can be found).
            size_t p = sizeof xmp_key + 2;
            for (int fields = 0; fields < 2 && p < n; p++) if (body[p] == 0) fields++;
            if (p <= n) out->xmp_orientation = clip_xmp_orientation(body + p, n - p);
        } else if (memcmp(type, "IEND", 4) == 0) {
            return;
        }
        at += 12 + (size_t)n;
    }
}

int clip_webp_metadata(const uint8_t *data, size_t size, clip_image *out) {
    WebPData whole = {data, size};
    WebPDemuxer *demux = WebPDemux(&whole);
    if (!demux) return -1;
    WebPChunkIterator it;
    if (!out->exif && WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
        const uint8_t *p = it.chunk.bytes;
        size_t n = it.chunk.size;
        // Some writers keep JPEG's prefix; Pillow drops it.
        if (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) { p += 6; n -= 6; }
        if (n > 0 && (out->exif = malloc(n))) { memcpy(out->exif, p, n); out->exif_size = n; }
        WebPDemuxReleaseChunkIterator(&it);
    }
    if (out->xmp_orientation < 0 && WebPDemuxGetChunk(demux, "XMP ", 1, &it)) {
        out->xmp_orientation = clip_xmp_orientation(it.chunk.bytes, it.chunk.size);
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(demux);
    return 0;
}
