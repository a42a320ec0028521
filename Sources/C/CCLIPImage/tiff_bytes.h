// A TIFF-structured file's bytes in its byte order ("II" little-endian, "MM" big-endian), for the few places that
// look at its first IFDs directly rather than through libtiff: telling camera RAW from TIFF, checking a RAW's offsets
// against the file's end, finding out whether a tag is present at all. Callers check offsets against `size`.
#ifndef CLIP_TIFF_BYTES_H
#define CLIP_TIFF_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    int big;
} tiff_bytes;

/// 1 when `d` starts with a classic TIFF header (either byte order), else 0.
static inline int tiff_bytes_open(tiff_bytes *t, const uint8_t *d, size_t size) {
    if (size < 8) return 0;
    if (memcmp(d, "II*\0", 4) == 0) t->big = 0;
    else if (memcmp(d, "MM\0*", 4) == 0) t->big = 1;
    else return 0;
    t->data = d;
    t->size = size;
    return 1;
}

static inline uint32_t tiff_u16(const tiff_bytes *t, uint64_t at) {
    const uint8_t *p = t->data + at;
    return t->big ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static inline uint32_t tiff_u32(const tiff_bytes *t, uint64_t at) {
    const uint8_t *p = t->data + at;
    return t->big ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                  : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/// The first IFD's offset and entry count, when both lie in the file (0 otherwise).
static inline int tiff_first_ifd(const tiff_bytes *t, uint64_t *at, uint32_t *count) {
    *at = tiff_u32(t, 4);
    if (*at + 2 > t->size) return 0;
    *count = tiff_u16(t, *at);
    return 1;
}

#endif
