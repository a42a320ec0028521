// AVX2 + FMA fp32 micro-kernel: 6 x 16 (12 ymm accumulators, 2 for B, 1 broadcast), with edge variants for 1-5 rows,
// bias/activation applied in registers as tiles are stored, and register-transpose packing of full 6-row A panels.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include "simd_avx2.h"

enum { MR = 6, NR = 16 };

// The kernel for R <= 6 rows (R a compile-time constant after inlining); A panels keep their stride of 6.
// no_builtin("memset"): see gemm_avx512.c.
__attribute__((target("avx2,fma"), no_builtin("memset"), always_inline))
static inline void ukr_rows(const int R, ptrdiff_t kc, const float *restrict pa, const float *restrict pb,
                            float *restrict c, ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    __m256 acc[MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < R) { acc[i][0] = _mm256_setzero_ps(); acc[i][1] = _mm256_setzero_ps(); }
    }
    #pragma clang loop unroll_count(4)
    for (ptrdiff_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_loadu_ps(pb + p * NR), b1 = _mm256_loadu_ps(pb + p * NR + 8);
        const float *ap = pa + p * MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            if (i >= R) continue;
            const __m256 av = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha);
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < R) { acc[i][0] = _mm256_mul_ps(acc[i][0], va); acc[i][1] = _mm256_mul_ps(acc[i][1], va); }
    }
    clip_store_tile16(R, c, ldc, acc, beta, ep);
}

__attribute__((target("avx2,fma")))
static void ukr(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c, ptrdiff_t ldc,
                float alpha, float beta, const clip_epilogue *ep) {
    ukr_rows(MR, kc, pa, pb, c, ldc, alpha, beta, ep);
}

__attribute__((target("avx2,fma")))
static void edge(ptrdiff_t rows, ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                 ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    switch (rows) {
    case 1: ukr_rows(1, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 2: ukr_rows(2, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 3: ukr_rows(3, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    case 4: ukr_rows(4, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    default: ukr_rows(5, kc, pa, pb, c, ldc, alpha, beta, ep); break;
    }
}

// A full 6-row panel of row-major A, 8 columns at a time through a register transpose.
__attribute__((target("avx2,fma")))
static ptrdiff_t pack_rows(const float *a, ptrdiff_t lda, ptrdiff_t kc, float *dst) {
    ptrdiff_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[6];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(a + i * lda + p);
        clip_store_columns6(r, dst + p * 6);
    }
    return p;
}

// A full 6-row panel of the implicit im2col, 8 k values at a time (channels a multiple of 8: a block never
// straddles two kernel offsets).
__attribute__((target("avx2,fma")))
static ptrdiff_t pack_conv(const clip_conv_geometry *g, ptrdiff_t r0, ptrdiff_t p0, ptrdiff_t kc, float *dst) {
    const ptrdiff_t c = g->channels, k = g->kernel;
    ptrdiff_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        const ptrdiff_t q = p0 + p, span = q / c, ch = q % c;
        const ptrdiff_t dy = span / k, dx = span % k;
        __m256 r[6];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 6; i++) {
            const float *src = clip_conv_field(g, r0 + i, dy, dx);
            r[i] = src ? _mm256_loadu_ps(src + ch) : _mm256_setzero_ps();
        }
        clip_store_columns6(r, dst + p * 6);
    }
    return p;
}

const clip_gemm_desc clip_gemm_avx2 = {MR, NR, ukr, edge, pack_rows, pack_conv, 8};
#endif
