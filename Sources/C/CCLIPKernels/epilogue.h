// Private to CCLIPKernels: the epilogue every packed GEMM applies to its finished tiles, and the helpers its drivers
// share for edge tiles.
#ifndef CLIP_EPILOGUE_H
#define CLIP_EPILOGUE_H

#include "CCLIPKernels.h"

// A row count 1 ... (MR − 1) handed to CALL(R) as a compile-time constant, for the edge variants of the micro-kernels
// (a last row panel of `rows` rows computed directly instead of as a full tile into a buffer).
#define CLIP_EDGE_ROWS(rows, CALL)                                                                                   \
    switch (rows) {                                                                                                  \
    case 1: CALL(1); break;                                                                                          \
    case 2: CALL(2); break;                                                                                          \
    case 3: CALL(3); break;                                                                                          \
    case 4: CALL(4); break;                                                                                          \
    case 5: CALL(5); break;                                                                                          \
    case 6: CALL(6); break;                                                                                          \
    case 7: CALL(7); break;                                                                                          \
    case 8: CALL(8); break;                                                                                          \
    case 9: CALL(9); break;                                                                                          \
    case 10: CALL(10); break;                                                                                        \
    default: CALL(11); break;                                                                                        \
    }

// The epilogue on one finished tile of C (rows x cols at c), vectorised for this CPU in elementwise.c.
void clip_epilogue_tile(float *c, ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols, const float *bias, int activation);

static inline void clip_tile_epilogue(const clip_epilogue *ep, float *c, ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols,
                                      ptrdiff_t col0) {
    if (ep) clip_epilogue_tile(c, ldc, rows, cols, ep->bias ? ep->bias + col0 : NULL, ep->activation);
}

// The epilogue as a micro-kernel receives it for one full tile: bias already offset to the tile's first column.
static inline clip_epilogue clip_tile_local(const clip_epilogue *ep, ptrdiff_t col0) {
    clip_epilogue local = {NULL, CLIP_ACTIVATION_NONE};
    if (ep) {
        local.bias = ep->bias ? ep->bias + col0 : NULL;
        local.activation = ep->activation;
    }
    return local;
}

// An edge tile computed into a buffer (`rows` x `cols` of `tile`, row stride `tile_ld`) merged into C as
// alpha·tile + beta·C (C read only when beta ≠ 0), then the epilogue for columns from col0.
static inline void clip_merge_tile(float *c, ptrdiff_t ldc, const float *tile, ptrdiff_t tile_ld, ptrdiff_t rows,
                                   ptrdiff_t cols, float alpha, float beta, const clip_epilogue *ep, ptrdiff_t col0) {
    for (ptrdiff_t i = 0; i < rows; i++) {
        float *ci = c + i * ldc;
        const float *ti = tile + i * tile_ld;
        if (beta == 0.0f) {
            for (ptrdiff_t j = 0; j < cols; j++) ci[j] = alpha * ti[j];
        } else {
            for (ptrdiff_t j = 0; j < cols; j++) ci[j] = alpha * ti[j] + beta * ci[j];
        }
    }
    clip_tile_epilogue(ep, c, ldc, rows, cols, col0);
}

#endif
