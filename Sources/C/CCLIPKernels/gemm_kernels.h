// Private to CCLIPKernels: what the fp32 GEMM drivers (sgemm.c) need from each instruction set's micro-kernel. Each
// ISA's file (gemm_portable.c, gemm_avx2.c, gemm_avx512.c, gemm_neon.c) fills one descriptor; the drivers pack,
// block and loop the same way for all of them.
#ifndef CLIP_GEMM_KERNELS_H
#define CLIP_GEMM_KERNELS_H

#include "CCLIPKernels.h"
#include "epilogue.h"

#include <stddef.h>

// One full MR x NR tile: C = alpha · A·B + beta · C (C read only when beta ≠ 0), then `ep` (bias offset to the tile's
// first column). `pa` is an MR-row panel (k-major), `pb` an NR-column panel (k-major).
typedef void (*clip_ukr_fn)(ptrdiff_t kc, const float *pa, const float *pb, float *c, ptrdiff_t ldc, float alpha,
                            float beta, const clip_epilogue *ep);

// The same for `rows` < MR rows of a panel (full NR columns), written straight to C.
typedef void (*clip_edge_fn)(ptrdiff_t rows, ptrdiff_t kc, const float *pa, const float *pb, float *c, ptrdiff_t ldc,
                             float alpha, float beta, const clip_epilogue *ep);

// A full MR-row panel of row-major A (rows at a + i·lda), k-major, vector blocks at a time through a register
// transpose; returns the k values done (the driver packs the rest).
typedef ptrdiff_t (*clip_pack_rows_fn)(const float *a, ptrdiff_t lda, ptrdiff_t kc, float *dst);

// A full MR-row panel of the implicit im2col (pixels r0 …, k range [p0, p0 + kc)), for channel counts that are a
// multiple of `conv_channels` and p0 a multiple of it; returns the k values done.
typedef ptrdiff_t (*clip_pack_conv_fn)(const clip_conv_geometry *g, ptrdiff_t r0, ptrdiff_t p0, ptrdiff_t kc,
                                       float *dst);

typedef struct {
    int mr, nr;
    clip_ukr_fn ukr;
    clip_edge_fn edge;              // NULL: partial row panels go through a tile buffer
    clip_pack_rows_fn pack_rows;    // NULL: scalar packing
    clip_pack_conv_fn pack_conv;    // NULL: scalar packing
    int conv_channels;
} clip_gemm_desc;

extern const clip_gemm_desc clip_gemm_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const clip_gemm_desc clip_gemm_avx2;
extern const clip_gemm_desc clip_gemm_avx512;
#endif
#if defined(__aarch64__)
extern const clip_gemm_desc clip_gemm_neon;
#endif

// Source of im2col row `r` (an output pixel) for the kernel offset (dy, dx): the input pixel's channels, or NULL
// outside the image.
static inline const float *clip_conv_field(const clip_conv_geometry *g, ptrdiff_t r, ptrdiff_t dy, ptrdiff_t dx) {
    const ptrdiff_t oy = r / g->out_width, ox = r % g->out_width;
    const ptrdiff_t iy = oy * g->stride + dy - g->padding, ix = ox * g->stride + dx - g->padding;
    if (iy < 0 || iy >= g->height || ix < 0 || ix >= g->width) return NULL;
    return g->image + (iy * g->width + ix) * g->channels;
}

#endif
