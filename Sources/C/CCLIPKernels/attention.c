// Scaled dot-product attention for one head, computed directly from the fused qkv rows.
//
// The general GEMM would pack Q, K, the scores and V for every head and pad 50-token products to whole tiles; here
// only Kᵀ is materialised (once per head, with the scale folded in), the scores live in a per-thread buffer, and
// the two products run on 6-row register tiles whose width follows the actual token count and head size. AVX-512
// has its own kernel (masked vectors, no padding copies); the others share attention_vector.h.
#include "CCLIPKernels.h"
#include "scratch.h"
#include "simd_avx512.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CLIP_X86 1
#endif

static _Thread_local clip_scratch scores_scratch;

// The baseline ISA: SSE2 on x86-64 (16 registers), NEON on arm64 (32 registers, wider tiles).
#define AT_NAME(x) at_base_##x
#define AT_ATTR
#define AT_W 4
#if defined(__aarch64__)
#define AT_NB 4
#else
#define AT_NB 2
#endif
#include "attention_vector.h"
#undef AT_NAME
#undef AT_ATTR
#undef AT_W
#undef AT_NB

#ifdef CLIP_X86
#define AT_NAME(x) at_avx2_##x
#define AT_ATTR __attribute__((target("avx2,fma")))
#define AT_W 8
#define AT_NB 2
#include "attention_vector.h"
#undef AT_NAME
#undef AT_ATTR
#undef AT_W
#undef AT_NB
#endif

#ifdef CLIP_X86
enum { AT_MR = 6, AT_NB = 4 };  // register tile: 6 rows x 4 vectors of 16 (24 accumulators)

// C[rows, nb·16] = A[rows, kk] · B[kk, nb·16]: A rows at a + i·lda (contiguous in k), B rows at b + p·ldb. The last
// vector of each B row and C row is loaded and stored under `tail`, so B and C may end mid-vector. With fewer than
// AT_MR rows the missing rows repeat the last one and are not stored (no edge buffer, no branch in the loop).
__attribute__((target("avx512f"), always_inline, no_builtin("memset")))
static inline void at_tile(const int nb, ptrdiff_t rows, ptrdiff_t kk, const float *a, ptrdiff_t lda, const float *b,
                           ptrdiff_t ldb, float *c, ptrdiff_t ldc, __mmask16 tail) {
    __m512 acc[AT_MR][AT_NB];
    const float *ar[AT_MR];
    #pragma clang loop unroll(full)
    for (int i = 0; i < AT_MR; i++) {
        ar[i] = a + (i < rows ? i : rows - 1) * lda;
        #pragma clang loop unroll(full)
        for (int v = 0; v < AT_NB; v++) acc[i][v] = _mm512_setzero_ps();
    }
    for (ptrdiff_t p = 0; p < kk; p++) {
        __m512 bv[AT_NB];
        const float *bp = b + p * ldb;
        #pragma clang loop unroll(full)
        for (int v = 0; v < AT_NB; v++) {
            if (v < nb - 1) bv[v] = _mm512_loadu_ps(bp + 16 * v);
            else if (v == nb - 1) bv[v] = _mm512_maskz_loadu_ps(tail, bp + 16 * v);
        }
        #pragma clang loop unroll(full)
        for (int i = 0; i < AT_MR; i++) {
            __m512 av = _mm512_set1_ps(ar[i][p]);
            #pragma clang loop unroll(full)
            for (int v = 0; v < AT_NB; v++) {
                if (v < nb) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
            }
        }
    }
    #pragma clang loop unroll(full)
    for (int i = 0; i < AT_MR; i++) {
        if (i >= rows) break;
        float *ci = c + i * ldc;
        #pragma clang loop unroll(full)
        for (int v = 0; v < AT_NB; v++) {
            if (v < nb - 1) _mm512_storeu_ps(ci + 16 * v, acc[i][v]);
            else if (v == nb - 1) _mm512_mask_storeu_ps(ci + 16 * v, tail, acc[i][v]);
        }
    }
}

// Columns [0, cols) of C in blocks of up to AT_NB vectors; each block width is a compile-time constant.
__attribute__((target("avx512f")))
static void at_rows(ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t kk, const float *a, ptrdiff_t lda, const float *b,
                    ptrdiff_t ldb, float *c, ptrdiff_t ldc) {
    const ptrdiff_t vectors = (cols + 15) / 16;
    const int rem = (int)(cols % 16);
    for (ptrdiff_t v0 = 0; v0 < vectors; v0 += AT_NB) {
        const ptrdiff_t nb = vectors - v0 < AT_NB ? vectors - v0 : AT_NB;
        const __mmask16 tail = (v0 + nb == vectors && rem != 0) ? (__mmask16)((1u << rem) - 1) : (__mmask16)0xFFFF;
        const float *bb = b + 16 * v0;
        float *cc = c + 16 * v0;
        switch (nb) {
        case 4: at_tile(4, rows, kk, a, lda, bb, ldb, cc, ldc, tail); break;
        case 3: at_tile(3, rows, kk, a, lda, bb, ldb, cc, ldc, tail); break;
        case 2: at_tile(2, rows, kk, a, lda, bb, ldb, cc, ldc, tail); break;
        default: at_tile(1, rows, kk, a, lda, bb, ldb, cc, ldc, tail); break;
        }
    }
}

// Softmax of one score row in place. The rows are short (50 keys for ViT-B/32): the generic kernel's scalar tails
// and 16-lane scalar reductions cost more than the exponentials, so the tail is a masked vector here.
__attribute__((target("avx512f")))
static void at_softmax(float *x, ptrdiff_t n) {
    const ptrdiff_t full = n / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
    __m512 mv = _mm512_set1_ps(-__builtin_inff());
    for (ptrdiff_t j = 0; j < full; j += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + j));
    if (tail) mv = _mm512_mask_max_ps(mv, tail, mv, _mm512_maskz_loadu_ps(tail, x + full));
    const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    __m512 sum = _mm512_setzero_ps();
    for (ptrdiff_t j = 0; j < full; j += 16) {
        __m512 e = clip_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), top));
        _mm512_storeu_ps(x + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
        __m512 e = clip_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + full), top));
        _mm512_mask_storeu_ps(x + full, tail, e);
        sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (ptrdiff_t j = 0; j < full; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), inv));
    if (tail) _mm512_mask_storeu_ps(x + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + full), inv));
}

__attribute__((target("avx512f")))
static void attention_avx512(ptrdiff_t tokens, ptrdiff_t hd, float scale, int causal, const float *q, const float *k,
                             const float *v, ptrdiff_t ld, float *out, ptrdiff_t ldo, float *kt, float *s,
                             ptrdiff_t tp) {
    // Kᵀ [hd, tp] scaled, zero in the padding columns (the score tiles read whole vectors of it).
    for (ptrdiff_t d = 0; d < hd; d++) {
        float *row = kt + d * tp;
        for (ptrdiff_t j = tokens; j < tp; j++) row[j] = 0.0f;
    }
    for (ptrdiff_t j = 0; j < tokens; j++) {
        const float *kr = k + j * ld;
        for (ptrdiff_t d = 0; d < hd; d++) kt[d * tp + j] = kr[d] * scale;
    }
    for (ptrdiff_t i0 = 0; i0 < tokens; i0 += AT_MR) {
        const ptrdiff_t rows = tokens - i0 < AT_MR ? tokens - i0 : AT_MR;
        // Causal rows never look past their own position: the block's last row bounds the keys it needs.
        const ptrdiff_t keys = causal ? i0 + rows : tokens;
        float *sb = s;  // one row block's scores at a time: scratch stays O(tokens), not O(tokens²)
        at_rows(rows, keys, hd, q + i0 * ld, ld, kt, tp, sb, tp);
        for (ptrdiff_t i = 0; i < rows; i++) {
            float *row = sb + i * tp;
            const ptrdiff_t valid = causal ? i0 + i + 1 : tokens;
            at_softmax(row, valid);
            for (ptrdiff_t j = valid; j < keys; j++) row[j] = 0.0f;
        }
        at_rows(rows, hd, keys, sb, tp, v, ld, out + i0 * ldo, ldo);
    }
}
#endif

int clip_attention_head(int kernel, ptrdiff_t tokens, ptrdiff_t hd, float scale, int causal, const float *q,
                        const float *k, const float *v, ptrdiff_t ld, float *out, ptrdiff_t ldo) {
    if (tokens < 0 || hd < 0 || ld < hd || ldo < hd) return -1;
    if (kernel == CLIP_GEMM_AUTO) kernel = clip_gemm_best_kernel();
    if (!clip_gemm_kernel_available(kernel)) return -1;
    if (tokens == 0 || hd == 0) return 0;
#ifdef CLIP_X86
    if (kernel == CLIP_GEMM_AVX512) {
        const ptrdiff_t tp = (tokens + 15) / 16 * 16;
        float *buf = clip_scratch_get(&scores_scratch, (size_t)((hd + AT_MR) * tp));
        if (!buf) return -1;
        attention_avx512(tokens, hd, scale, causal, q, k, v, ld, out, ldo, buf, buf + hd * tp, tp);
        return 0;
    }
#endif
    // The vector kernels: AVX2 with 8 lanes, everything else (portable, NEON) with the baseline's 4.
    const ptrdiff_t w = kernel == CLIP_GEMM_AVX2 ? 8 : 4;
    const ptrdiff_t tp = (tokens + w - 1) / w * w, hp = (hd + w - 1) / w * w;
    float *buf = clip_scratch_get(&scores_scratch, (size_t)(hd * tp + tp * hp + 6 * tp + 6 * hp));
    if (!buf) return -1;
    float *kt = buf, *vp = kt + hd * tp, *s = vp + tp * hp, *o = s + 6 * tp;
#ifdef CLIP_X86
    if (kernel == CLIP_GEMM_AVX2) {
        at_avx2_head(tokens, hd, scale, causal, q, k, v, ld, out, ldo, kt, vp, s, o, tp, hp);
        return 0;
    }
#endif
    at_base_head(tokens, hd, scale, causal, q, k, v, ld, out, ldo, kt, vp, s, o, tp, hp);
    return 0;
}
