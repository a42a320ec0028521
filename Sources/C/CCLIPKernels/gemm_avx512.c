// AVX-512F fp32 micro-kernel: 12 x 32 (24 zmm accumulators, 2 for B, 1 broadcast), with edge variants for 1-11 rows
// and register-transpose packing of full 12-row A panels.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include "simd_avx512.h"

enum { MR = 12, NR = 32 };

// The kernel for R <= 12 rows (R a compile-time constant after inlining); A panels keep their stride of 12.
// no_builtin: otherwise the accumulator zeroing becomes a memset of a stack array that is then reloaded into
// registers, costing ~100 cycles per call (most of a short-k attention tile).
__attribute__((target("avx512f"), no_builtin("memset"), always_inline))
static inline void ukr_rows(const int R, ptrdiff_t kc, const float *restrict pa, const float *restrict pb,
                            float *restrict c, ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    __m512 acc[MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < R) { acc[i][0] = _mm512_setzero_ps(); acc[i][1] = _mm512_setzero_ps(); }
    }
    // Four k steps per loop pass: the panels stream from L2 (a 384-deep B panel and the A sliver overflow a 48 KiB
    // L1), and the longer body lets more of their loads issue ahead of the FMAs waiting on them. On an Intel Xeon
    // (Ice Lake, family 6 model 106) the packed products of ViT-B, ConvNeXt and training shapes ran 13-17 % faster
    // on one core (bitwise the same sums: each accumulator still adds its k terms in order).
    #pragma clang loop unroll_count(4)
    for (ptrdiff_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(pb + p * NR);
        __m512 b1 = _mm512_loadu_ps(pb + p * NR + 16);
        const float *ap = pa + p * MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            if (i >= R) continue;
            __m512 av = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < R) { acc[i][0] = _mm512_mul_ps(acc[i][0], va); acc[i][1] = _mm512_mul_ps(acc[i][1], va); }
    }
    clip_store_tile32(R, c, ldc, acc, beta, ep);
}

__attribute__((target("avx512f")))
static void ukr(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c, ptrdiff_t ldc,
                float alpha, float beta, const clip_epilogue *ep) {
    ukr_rows(MR, kc, pa, pb, c, ldc, alpha, beta, ep);
}

// The last row panel of a GEMM is usually partial (50 rows of a ViT-B/32 image are four panels and 2 rows): a kernel
// per row count does only those rows instead of a full 12-row tile into a buffer.
__attribute__((target("avx512f")))
static void edge(ptrdiff_t rows, ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                 ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
#define EDGE_CALL(R) ukr_rows(R, kc, pa, pb, c, ldc, alpha, beta, ep)
    CLIP_EDGE_ROWS(rows, EDGE_CALL)
#undef EDGE_CALL
}

// A full 12-row panel of row-major A, 16 columns at a time through a register transpose (the scalar gather was 2 %
// of ViT and 12 % of ResNet inference).
__attribute__((target("avx512f")))
static ptrdiff_t pack_rows(const float *a, ptrdiff_t lda, ptrdiff_t kc, float *dst) {
    ptrdiff_t p = 0;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[12];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) r[i] = _mm512_loadu_ps(a + i * lda + p);
        clip_store_columns12(r, dst + p * 12);
    }
    return p;
}

// A full 12-row panel of the implicit im2col, 16 k values at a time: with channels a multiple of 16 and blocks
// starting at multiples of 16, a block never straddles two kernel offsets, so each row contributes one contiguous
// (or all-zero) vector.
__attribute__((target("avx512f")))
static ptrdiff_t pack_conv(const clip_conv_geometry *g, ptrdiff_t r0, ptrdiff_t p0, ptrdiff_t kc, float *dst) {
    const ptrdiff_t c = g->channels, k = g->kernel;
    ptrdiff_t p = 0;
    for (; p + 16 <= kc; p += 16) {
        const ptrdiff_t q = p0 + p, span = q / c, ch = q % c;
        const ptrdiff_t dy = span / k, dx = span % k;
        __m512 r[12];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) {
            const float *src = clip_conv_field(g, r0 + i, dy, dx);
            r[i] = src ? _mm512_loadu_ps(src + ch) : _mm512_setzero_ps();
        }
        clip_store_columns12(r, dst + p * 12);
    }
    return p;
}

const clip_gemm_desc clip_gemm_avx512 = {MR, NR, ukr, edge, pack_rows, pack_conv, 16};
#endif
