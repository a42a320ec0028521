// AArch64 NEON fp32 micro-kernel: 8 x 12 (24 q-register accumulators, 3 for B, 2 for the A column, of the 32),
// multiply-adds by vector lane, with edge variants for 1-7 rows, bias/activation applied in registers as tiles are
// stored, and register-transpose packing of full 8-row A panels.
#include "gemm_kernels.h"

#if defined(__aarch64__)
#include "simd_neon.h"

enum { MR = 8, NR = 12 };

// R <= 8 rows (a compile-time constant after inlining); A panels keep their stride of 8.
__attribute__((always_inline))
static inline void ukr_rows(const int R, ptrdiff_t kc, const float *restrict pa, const float *restrict pb,
                            float *restrict c, ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    float32x4_t acc[MR][3];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        #pragma clang loop unroll(full)
        for (int v = 0; v < 3; v++) acc[i][v] = vdupq_n_f32(0.0f);
    }
    for (ptrdiff_t p = 0; p < kc; p++) {
        const float32x4_t b0 = vld1q_f32(pb + p * NR), b1 = vld1q_f32(pb + p * NR + 4), b2 = vld1q_f32(pb + p * NR + 8);
        const float32x4_t a0 = vld1q_f32(pa + p * MR), a1 = vld1q_f32(pa + p * MR + 4);
#define ROW(I, A, L)                                                                                                 \
    if (I < R) {                                                                                                     \
        acc[I][0] = vfmaq_laneq_f32(acc[I][0], b0, A, L);                                                            \
        acc[I][1] = vfmaq_laneq_f32(acc[I][1], b1, A, L);                                                            \
        acc[I][2] = vfmaq_laneq_f32(acc[I][2], b2, A, L);                                                            \
    }
        ROW(0, a0, 0) ROW(1, a0, 1) ROW(2, a0, 2) ROW(3, a0, 3)
        ROW(4, a1, 0) ROW(5, a1, 1) ROW(6, a1, 2) ROW(7, a1, 3)
#undef ROW
    }
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        #pragma clang loop unroll(full)
        for (int v = 0; v < 3; v++) acc[i][v] = vmulq_n_f32(acc[i][v], alpha);
    }
    clip_store_tile12(R, c, ldc, acc, beta, ep);
}

static void ukr(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c, ptrdiff_t ldc,
                float alpha, float beta, const clip_epilogue *ep) {
    ukr_rows(MR, kc, pa, pb, c, ldc, alpha, beta, ep);
}

static void edge(ptrdiff_t rows, ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                 ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    switch (rows) {
    case 1: ukr_rows(1, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 2: ukr_rows(2, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 3: ukr_rows(3, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 4: ukr_rows(4, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 5: ukr_rows(5, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 6: ukr_rows(6, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    default: ukr_rows(7, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    }
}

// A full 8-row panel of row-major A, 4 columns at a time through two 4 x 4 register transposes.
static ptrdiff_t pack_rows(const float *a, ptrdiff_t lda, ptrdiff_t kc, float *dst) {
    ptrdiff_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        float32x4_t r[8];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 8; i++) r[i] = vld1q_f32(a + i * lda + p);
        clip_store_columns8(r, dst + p * 8);
    }
    return p;
}

// A full 8-row panel of the implicit im2col, 4 k values at a time (channels a multiple of 4).
static ptrdiff_t pack_conv(const clip_conv_geometry *g, ptrdiff_t r0, ptrdiff_t p0, ptrdiff_t kc, float *dst) {
    const ptrdiff_t c = g->channels, k = g->kernel;
    ptrdiff_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        const ptrdiff_t q = p0 + p, span = q / c, ch = q % c;
        const ptrdiff_t dy = span / k, dx = span % k;
        float32x4_t r[8];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 8; i++) {
            const float *src = clip_conv_field(g, r0 + i, dy, dx);
            r[i] = src ? vld1q_f32(src + ch) : vdupq_n_f32(0.0f);
        }
        clip_store_columns8(r, dst + p * 8);
    }
    return p;
}

const clip_gemm_desc clip_gemm_neon = {MR, NR, ukr, edge, pack_rows, pack_conv, 4};
#endif
