// int8 micro-kernel for AArch64 with the DotProd extension (sdot): 8 x 12, each instruction four signed products per
// 32-bit lane, accumulated exactly. Both operands are signed codes, so no offset correction is needed.
#include "int8_kernels.h"

#if defined(__aarch64__)
#include "simd_neon.h"

#include <string.h>

enum { MR = 8, NR = 12 };

#define DOTPROD __attribute__((target("dotprod")))

DOTPROD __attribute__((always_inline))
static inline void ukr_rows(const int R, ptrdiff_t quads, const uint32_t *pa, const int8_t *pb, float *c,
                            ptrdiff_t ldc, const float *sa, const float *sb, const int32_t *sums, float beta,
                            const clip_epilogue *ep) {
    (void)sums;
    int32x4_t acc[MR][3];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        #pragma clang loop unroll(full)
        for (int v = 0; v < 3; v++) acc[i][v] = vdupq_n_s32(0);
    }
    for (ptrdiff_t q = 0; q < quads; q++) {
        const int8_t *bq = pb + q * NR * 4;
        const int8x16_t b0 = vld1q_s8(bq), b1 = vld1q_s8(bq + 16), b2 = vld1q_s8(bq + 32);
        const int8x16_t a0 = vld1q_s8((const int8_t *)(pa + q * MR)), a1 = vld1q_s8((const int8_t *)(pa + q * MR + 4));
#define ROW(I, A, L)                                                                                                 \
    if (I < R) {                                                                                                     \
        acc[I][0] = vdotq_laneq_s32(acc[I][0], b0, A, L);                                                            \
        acc[I][1] = vdotq_laneq_s32(acc[I][1], b1, A, L);                                                            \
        acc[I][2] = vdotq_laneq_s32(acc[I][2], b2, A, L);                                                            \
    }
        ROW(0, a0, 0) ROW(1, a0, 1) ROW(2, a0, 2) ROW(3, a0, 3)
        ROW(4, a1, 0) ROW(5, a1, 1) ROW(6, a1, 2) ROW(7, a1, 3)
#undef ROW
    }
    float32x4_t r[MR][3];
    const float32x4_t s[3] = {vld1q_f32(sb), vld1q_f32(sb + 4), vld1q_f32(sb + 8)};
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        #pragma clang loop unroll(full)
        for (int v = 0; v < 3; v++) {
            r[i][v] = i < R ? vmulq_f32(vcvtq_f32_s32(acc[i][v]), vmulq_n_f32(s[v], sa[i])) : vdupq_n_f32(0.0f);
        }
    }
    clip_store_tile12(R, c, ldc, r, beta, ep);
}

DOTPROD static void ukr(ptrdiff_t rows, ptrdiff_t quads, const uint32_t *pa, const int8_t *pb, float *c, ptrdiff_t ldc,
                        const float *sa, const float *sb, const int32_t *sums, float beta, const clip_epilogue *ep) {
    switch (rows) {
    case 8: ukr_rows(8, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 7: ukr_rows(7, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 6: ukr_rows(6, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 5: ukr_rows(5, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 4: ukr_rows(4, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 3: ukr_rows(3, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 2: ukr_rows(2, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    default: ukr_rows(1, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    }
}

// Signed byte codes, four to a word.
static float quantize(const float *row, ptrdiff_t k, ptrdiff_t quads, uint32_t *words) {
    int8_t *out = (int8_t *)words;
    const ptrdiff_t k4 = quads * 4;
    float32x4_t mx = vdupq_n_f32(0.0f);
    ptrdiff_t p = 0;
    for (; p + 4 <= k; p += 4) mx = vmaxq_f32(mx, vabsq_f32(vld1q_f32(row + p)));
    float m = vmaxvq_f32(mx);
    for (; p < k; p++) { float v = __builtin_fabsf(row[p]); m = v > m ? v : m; }
    if (m == 0.0f) {
        memset(out, 0, (size_t)k4);
        return 0.0f;
    }
    const float inv = 127.0f / m;
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
    for (p = 0; p + 8 <= k; p += 8) {
        int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(row + p), inv));  // round half to even
        int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(row + p + 4), inv));
        q0 = vminq_s32(vmaxq_s32(q0, lo), hi);
        q1 = vminq_s32(vmaxq_s32(q1, lo), hi);
        vst1_s8(out + p, vmovn_s16(vcombine_s16(vmovn_s32(q0), vmovn_s32(q1))));
    }
    for (; p < k; p++) out[p] = (int8_t)clip_quantize_code(row[p], inv);
    for (; p < k4; p++) out[p] = 0;
    return m / 127.0f;
}

const clip_int8_desc clip_int8_neon = {MR, NR, 4, 0, ukr, quantize};
#endif
