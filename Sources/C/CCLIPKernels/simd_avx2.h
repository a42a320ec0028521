// Private to CCLIPKernels: AVX2 + FMA building blocks shared by the kernels (exponential, QuickGELU, the register
// transpose of A panels, the tile store every 6 x 16 micro-kernel ends with).
#ifndef CLIP_SIMD_AVX2_H
#define CLIP_SIMD_AVX2_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "epilogue.h"

#define CLIP_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

// e^x with the polynomial of elementwise.c (error ≤ 2 ulp), 8 lanes at a time; 2^n is built in the exponent bits
// (n is in [−126, 127] after the clamp, so the result is a normal float).
CLIP_AVX2 __m256 clip_exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// QuickGELU x·σ(1.702x) = x / (1 + e^(−1.702x)).
CLIP_AVX2 __m256 clip_quick_gelu8(__m256 x) {
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), clip_exp8(_mm256_mul_ps(x, _mm256_set1_ps(-1.702f)))));
}

// Horizontal sum and maximum of 8 lanes.
CLIP_AVX2 float clip_sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CLIP_AVX2 float clip_max8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Six rows of 8 values (r[0..5]) written column by column: dst[c * 6 + i] = r[i][c] for the 8 columns c — the
// k-major panel layout of a 6-row micro-kernel. An 8 x 8 transpose with two zero rows; each column is stored as
// 4 + 2 lanes, so nothing is written past dst[47].
CLIP_AVX2 void clip_store_columns6(const __m256 r[6], float *dst) {
    const __m256 z = _mm256_setzero_ps();
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    // u[q] holds column q (low lane) and q + 4 (high lane) of rows 0-3; v[q] the same of rows 4-5 (then zeros).
    const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                         _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
    const __m256 v[4] = {_mm256_shuffle_ps(t4, z, 0x44), _mm256_shuffle_ps(t4, z, 0xEE),
                         _mm256_shuffle_ps(t5, z, 0x44), _mm256_shuffle_ps(t5, z, 0xEE)};
    #pragma clang loop unroll(full)
    for (int q = 0; q < 4; q++) {
        _mm_storeu_ps(dst + q * 6, _mm256_castps256_ps128(u[q]));
        _mm_storel_pi((__m64 *)(dst + q * 6 + 4), _mm256_castps256_ps128(v[q]));
        _mm_storeu_ps(dst + (q + 4) * 6, _mm256_extractf128_ps(u[q], 1));
        _mm_storel_pi((__m64 *)(dst + (q + 4) * 6 + 4), _mm256_extractf128_ps(v[q], 1));
    }
}

// One 16-wide row of a C tile: ci[0..16) = act(r + beta · ci + bias) (C is read only when beta ≠ 0, so it may hold
// garbage). Bias, QuickGELU and ReLU are applied in registers; `act` is never GELU here.
CLIP_AVX2 void clip_store_row16(float *ci, __m256 r0, __m256 r1, float beta, const float *bias, int act) {
    if (beta != 0.0f) {
        const __m256 vb = _mm256_set1_ps(beta);
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
    }
    if (bias) {
        r0 = _mm256_add_ps(r0, _mm256_loadu_ps(bias));
        r1 = _mm256_add_ps(r1, _mm256_loadu_ps(bias + 8));
    }
    if (act == CLIP_ACTIVATION_QUICK_GELU) {
        r0 = clip_quick_gelu8(r0);
        r1 = clip_quick_gelu8(r1);
    } else if (act == CLIP_ACTIVATION_RELU) {
        r0 = _mm256_max_ps(r0, _mm256_setzero_ps());
        r1 = _mm256_max_ps(r1, _mm256_setzero_ps());
    }
    _mm256_storeu_ps(ci, r0);
    _mm256_storeu_ps(ci + 8, r1);
}

// The end of every 6 x 16 micro-kernel: R finished rows r[i][0..1] stored by clip_store_row16; GELU, whose erff has
// no vector form here, as a pass over the tile.
CLIP_AVX2 void clip_store_tile16(const int R, float *c, ptrdiff_t ldc, __m256 r[6][2], float beta,
                                 const clip_epilogue *ep) {
    const float *bias = ep ? ep->bias : NULL;
    const int act = ep ? ep->activation : CLIP_ACTIVATION_NONE;
    const int in_store = CLIP_ACTIVATION_IN_PASS(act) ? CLIP_ACTIVATION_NONE : act;
    #pragma clang loop unroll(full)
    for (int i = 0; i < 6; i++) {
        if (i < R) clip_store_row16(c + i * ldc, r[i][0], r[i][1], beta, bias, in_store);
    }
    if (CLIP_ACTIVATION_IN_PASS(act)) clip_epilogue_tile(c, ldc, R, 16, NULL, act);
}

#endif
#endif
