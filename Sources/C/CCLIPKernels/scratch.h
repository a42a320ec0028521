// Private to CCLIPKernels: per-thread working buffers, grown on demand and reused. A fresh multi-megabyte allocation
// per call would page-fault on every small GEMM or attention head (a forward pass runs thousands of them).
#ifndef CLIP_SCRATCH_H
#define CLIP_SCRATCH_H

#include <stdlib.h>

typedef struct {
    float *ptr;
    size_t cap;
} clip_scratch;

// At least `count` floats, 64-byte aligned, or NULL when the allocation fails (the old buffer is gone then too).
static inline float *clip_scratch_get(clip_scratch *s, size_t count) {
    if (s->cap < count) {
        free(s->ptr);
        size_t bytes = (count * sizeof(float) + 63) & ~(size_t)63;
        s->ptr = (float *)aligned_alloc(64, bytes);
        s->cap = s->ptr ? count : 0;
    }
    return s->ptr;
}

#endif
