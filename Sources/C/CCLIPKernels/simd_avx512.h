// Private to CCLIPKernels: AVX-512 building blocks shared by the kernels (exponential, QuickGELU, the register
// transpose of A panels, the tile store every 12 x 32 micro-kernel ends with).
#ifndef CLIP_SIMD_AVX512_H
#define CLIP_SIMD_AVX512_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "epilogue.h"

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

// The end of every AVX-512 12 x 32 micro-kernel: R finished rows r[i][0..1] (scaled or dequantised) stored as
// act(r + beta·C + bias) by clip_store_row32; GELU, whose erff has no vector form here, as a pass over the tile.
__attribute__((target("avx512f"), always_inline)) static inline void clip_store_tile32(const int R, float *c,
                                                                                       ptrdiff_t ldc, __m512 r[12][2],
                                                                                       float beta,
                                                                                       const clip_epilogue *ep) {
    const float *bias = ep ? ep->bias : NULL;
    const int act = ep ? ep->activation : CLIP_ACTIVATION_NONE;
    const int in_store = CLIP_ACTIVATION_IN_PASS(act) ? CLIP_ACTIVATION_NONE : act;
    #pragma clang loop unroll(full)
    for (int i = 0; i < 12; i++) {
        if (i < R) clip_store_row32(c + i * ldc, r[i][0], r[i][1], beta, bias, in_store);
    }
    if (CLIP_ACTIVATION_IN_PASS(act)) clip_epilogue_tile(c, ldc, R, 32, NULL, act);
}
#endif

#endif
