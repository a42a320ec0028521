// Private to CCLIPKernels: AArch64 NEON building blocks shared by the kernels (exponential, QuickGELU, the tile store
// every 8 x 12 micro-kernel ends with).
#ifndef CLIP_SIMD_NEON_H
#define CLIP_SIMD_NEON_H

#if defined(__aarch64__)
#include <arm_neon.h>

#include "epilogue.h"

#define CLIP_NEON __attribute__((always_inline)) static inline

// e^x with the polynomial of elementwise.c (error ≤ 2 ulp), 4 lanes at a time; 2^n built in the exponent bits.
CLIP_NEON float32x4_t clip_exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.3f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vaddq_f32(vfmaq_f32(r, vmulq_f32(p, r), r), vdupq_n_f32(1.0f));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

// QuickGELU x·σ(1.702x) = x / (1 + e^(−1.702x)).
CLIP_NEON float32x4_t clip_quick_gelu4(float32x4_t x) {
    return vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0f), clip_exp4(vmulq_f32(x, vdupq_n_f32(-1.702f)))));
}

// One 12-wide row of a C tile: ci[0..12) = act(r + beta · ci + bias) (C is read only when beta ≠ 0); `act` is
// never GELU here.
CLIP_NEON void clip_store_row12(float *ci, float32x4_t r[3], float beta, const float *bias, int act) {
    #pragma clang loop unroll(full)
    for (int v = 0; v < 3; v++) {
        float32x4_t x = r[v];
        if (beta != 0.0f) x = vfmaq_n_f32(x, vld1q_f32(ci + 4 * v), beta);
        if (bias) x = vaddq_f32(x, vld1q_f32(bias + 4 * v));
        if (act == CLIP_ACTIVATION_QUICK_GELU) x = clip_quick_gelu4(x);
        else if (act == CLIP_ACTIVATION_RELU) x = vmaxq_f32(x, vdupq_n_f32(0.0f));
        vst1q_f32(ci + 4 * v, x);
    }
}

// The end of every 8 x 12 micro-kernel: R finished rows stored by clip_store_row12; GELU as a pass over the tile.
CLIP_NEON void clip_store_tile12(const int R, float *c, ptrdiff_t ldc, float32x4_t r[8][3], float beta,
                                 const clip_epilogue *ep) {
    const float *bias = ep ? ep->bias : NULL;
    const int act = ep ? ep->activation : CLIP_ACTIVATION_NONE;
    const int in_store = CLIP_ACTIVATION_IN_PASS(act) ? CLIP_ACTIVATION_NONE : act;
    #pragma clang loop unroll(full)
    for (int i = 0; i < 8; i++) {
        if (i < R) clip_store_row12(c + i * ldc, r[i], beta, bias, in_store);
    }
    if (CLIP_ACTIVATION_IN_PASS(act)) clip_epilogue_tile(c, ldc, R, 12, NULL, act);
}

// Four rows of 4 values transposed: out[c] = (r0[c], r1[c], r2[c], r3[c]).
CLIP_NEON void clip_transpose4(const float32x4_t r[4], float32x4_t out[4]) {
    const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
    const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
    out[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    out[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    out[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    out[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

// Eight rows of 4 values written column by column: dst[c * 8 + i] = r[i][c] — the k-major layout of an 8-row panel.
CLIP_NEON void clip_store_columns8(const float32x4_t r[8], float *dst) {
    float32x4_t lo[4], hi[4];
    clip_transpose4(r, lo);
    clip_transpose4(r + 4, hi);
    #pragma clang loop unroll(full)
    for (int c = 0; c < 4; c++) {
        vst1q_f32(dst + c * 8, lo[c]);
        vst1q_f32(dst + c * 8 + 4, hi[c]);
    }
}

#endif
#endif
