// Private to CCLIPKernels: the store step every AVX-512 micro-kernel ends with, and the epilogue every packed GEMM
// applies to its finished tiles.
#ifndef CLIP_TILE_STORE_H
#define CLIP_TILE_STORE_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// e^x with the polynomial of elementwise.c (error ≤ 2 ulp), 16 lanes at a time; scalef applies the 2^n.
__attribute__((target("avx512f"), always_inline)) static inline __m512 clip_exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// QuickGELU x·σ(1.702x) = x / (1 + e^(−1.702x)).
__attribute__((target("avx512f"), always_inline)) static inline __m512 clip_quick_gelu16(__m512 x) {
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), clip_exp16(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f)))));
}

// Twelve rows of 16 values (r[0..11], 32-bit lanes) written column by column: dst[c * 12 + i] = r[i][c] for the 16
// columns c — the k-major panel layout of a 12-row micro-kernel. A 16 x 16 transpose with four zero rows (in-lane
// unpack and shuffle, then two rounds of 128-bit lane shuffles), each column stored as 12 lanes.
__attribute__((target("avx512f"), always_inline)) static inline void clip_store_columns12(const __m512 r[12],
                                                                                          float *dst) {
    __m512 t[16], u[16], v[16];
    #pragma clang loop unroll(full)
    for (int i = 0; i < 16; i += 2) {
        const __m512 a = i < 12 ? r[i] : _mm512_setzero_ps(), b = i + 1 < 12 ? r[i + 1] : _mm512_setzero_ps();
        t[i] = _mm512_unpacklo_ps(a, b);
        t[i + 1] = _mm512_unpackhi_ps(a, b);
    }
    // u[4g + q]: lane L holds column 4L + q of rows 4g..4g+3.
    #pragma clang loop unroll(full)
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    #pragma clang loop unroll(full)
    for (int q = 0; q < 4; q++) {
        v[q] = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        v[4 + q] = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
        v[8 + q] = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        v[12 + q] = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
    }
    #pragma clang loop unroll(full)
    for (int c = 0; c < 16; c++) {
        const __m512 col = c < 8 ? _mm512_shuffle_f32x4(v[c], v[c + 8], 0x88)
                                 : _mm512_shuffle_f32x4(v[c - 8], v[c], 0xDD);
        _mm512_mask_storeu_ps(dst + c * 12, (__mmask16)0x0FFF, col);
    }
}

// One 32-wide row of a C tile: ci[0..32) = act(r + beta · ci + bias) (C is read only when beta ≠ 0, so it may hold
// garbage). Bias and QuickGELU are applied in registers: a separate pass would reload the tile right after these
// stores. `act` is CLIP_ACTIVATION_NONE, _QUICK_GELU or _RELU here (GELU's erff runs as a pass over the tile).
// Inlined into each kernel, which compiles it for its own ISA (all include avx512f).
__attribute__((target("avx512f"), always_inline)) static inline void clip_store_row32(float *ci, __m512 r0, __m512 r1,
                                                                                      float beta, const float *bias,
                                                                                      int act) {
    if (beta != 0.0f) {
        __m512 vb = _mm512_set1_ps(beta);
        r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), r1);
    }
    if (bias) {
        r0 = _mm512_add_ps(r0, _mm512_loadu_ps(bias));
        r1 = _mm512_add_ps(r1, _mm512_loadu_ps(bias + 16));
    }
    if (act == 1) {  // CLIP_ACTIVATION_QUICK_GELU
        r0 = clip_quick_gelu16(r0);
        r1 = clip_quick_gelu16(r1);
    } else if (act == 3) {  // CLIP_ACTIVATION_RELU
        r0 = _mm512_max_ps(r0, _mm512_setzero_ps());
        r1 = _mm512_max_ps(r1, _mm512_setzero_ps());
    }
    _mm512_storeu_ps(ci, r0);
    _mm512_storeu_ps(ci + 16, r1);
}
#endif

#include "CCLIPKernels.h"

// A row count 1...11 handed to CALL(R) as a compile-time constant, for the edge variants of the 12-row kernels.
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

// The epilogue on one finished tile of C (rows x cols at c, first column col0 of the whole matrix), vectorised for
// this CPU in elementwise.c.
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

#if defined(__x86_64__) || defined(__i386__)
// The end of every AVX-512 12 x 32 micro-kernel: R finished rows r[i][0..1] (scaled or dequantised) stored as
// act(r + beta·C + bias) by clip_store_row32; GELU, whose erff has no vector form here, as a pass over the tile.
__attribute__((target("avx512f"), always_inline)) static inline void clip_store_tile32(const int R, float *c,
                                                                                       ptrdiff_t ldc, __m512 r[12][2],
                                                                                       float beta,
                                                                                       const clip_epilogue *ep) {
    const float *bias = ep ? ep->bias : NULL;
    const int act = ep ? ep->activation : CLIP_ACTIVATION_NONE;
    const int in_store = act == CLIP_ACTIVATION_GELU ? CLIP_ACTIVATION_NONE : act;
    #pragma clang loop unroll(full)
    for (int i = 0; i < 12; i++) {
        if (i < R) clip_store_row32(c + i * ldc, r[i][0], r[i][1], beta, bias, in_store);
    }
    if (act == CLIP_ACTIVATION_GELU) clip_epilogue_tile(c, ldc, R, 32, NULL, act);
}
#endif

#endif
