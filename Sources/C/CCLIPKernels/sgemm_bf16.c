// bf16 × bf16 → fp32 GEMM with AVX512-BF16 (vdpbf16ps), for the opt-in reduced-precision mode: weights are packed
// once as bf16 pairs along k, activations are rounded to bf16 (nearest even) while packed, sums stay fp32.
#include "CCLIPKernels.h"
#include "simd_avx512.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CLIP_X86 1
#endif

enum { B_MR = 12, B_NR = 32, B_KC = 768, B_MC_TILES = 16, B_NC = 2048 };

static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static ptrdiff_t up(ptrdiff_t v, ptrdiff_t m) { return (v + m - 1) / m * m; }

int clip_bf16_available(void) { return (clip_cpu_features() & CLIP_CPU_AVX512_BF16) != 0; }

ptrdiff_t clip_packed_b_bf16_count(ptrdiff_t k, ptrdiff_t n) { return up(k, 2) * up(n, B_NR); }

// Layout: KC block at pc * npad (in bf16 units; KC is even, so only the last block may be padded to even),
// its panel j at + j * kc2 * NR, holding for each k pair and column the two bf16 values (k, k+1) side by side.
int clip_pack_b_bf16(int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, uint16_t *out) {
    if (k < 0 || n < 0) return -1;
    ptrdiff_t npad = up(n, B_NR);
    for (ptrdiff_t pc = 0; pc < k; pc += B_KC) {
        ptrdiff_t kc = k - pc < B_KC ? k - pc : B_KC, kc2 = up(kc, 2);
        uint16_t *block = out + pc * npad;
        for (ptrdiff_t jr = 0; jr < npad; jr += B_NR) {
            uint16_t *panel = block + (jr / B_NR) * kc2 * B_NR;
            for (ptrdiff_t p = 0; p < kc2; p++) {
                for (ptrdiff_t j = 0; j < B_NR; j++) {
                    float v = 0.0f;
                    ptrdiff_t row = pc + p, col = jr + j;
                    if (p < kc && col < n) v = trans_b ? b[col * ldb + row] : b[row * ldb + col];
                    panel[(p / 2) * B_NR * 2 + j * 2 + (p % 2)] = to_bf16(v);
                }
            }
        }
    }
    return 0;
}

#ifdef CLIP_X86
// R <= 12 rows (a compile-time constant after inlining); no_builtin("memset"): see ukr_avx512 in sgemm.c.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), no_builtin("memset"), always_inline))
static inline void ukr_bf16_rows(const int R, ptrdiff_t pairs, const uint32_t *pa, const uint32_t *pb, float *c,
                                 ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    __m512 acc[B_MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < B_MR; i++) {
        if (i < R) { acc[i][0] = _mm512_setzero_ps(); acc[i][1] = _mm512_setzero_ps(); }
    }
    for (ptrdiff_t q = 0; q < pairs; q++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(pb + q * B_NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(pb + q * B_NR + 16);
        const uint32_t *ap = pa + q * B_MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < B_MR; i++) {
            if (i >= R) continue;
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
    #pragma clang loop unroll(full)
    for (int i = 0; i < B_MR; i++) {
        if (i < R) { acc[i][0] = _mm512_mul_ps(acc[i][0], va); acc[i][1] = _mm512_mul_ps(acc[i][1], va); }
    }
    clip_store_tile32(R, c, ldc, acc, beta, ep);
}

// A full tile, or `rows` < 12 of one (the last row panel), written straight to C.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void ukr_bf16(ptrdiff_t rows, ptrdiff_t pairs, const uint32_t *pa, const uint32_t *pb, float *c, ptrdiff_t ldc,
                     float alpha, float beta, const clip_epilogue *ep) {
    if (rows == B_MR) {
        ukr_bf16_rows(B_MR, pairs, pa, pb, c, ldc, alpha, beta, ep);
        return;
    }
#define EDGE_CALL(R) ukr_bf16_rows(R, pairs, pa, pb, c, ldc, alpha, beta, ep)
    CLIP_EDGE_ROWS(rows, EDGE_CALL)
#undef EDGE_CALL
}
#endif

#ifdef CLIP_X86
// Rows [ic+ir, …) of A, k range [pc, pc + kc), into MR-row panels of bf16 pairs. A row converted to bf16 is already
// the sequence of (k, k+1) pair words; full panels are transposed in registers, the rest (the k tail, a last
// partial panel) converted per row and scattered with stride MR.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void pack_a_bf16(const float *a, ptrdiff_t lda, ptrdiff_t row0, ptrdiff_t mc, ptrdiff_t pc, ptrdiff_t kc,
                        ptrdiff_t pairs, uint32_t *dst) {
    uint32_t words[B_KC / 2 + 16] __attribute__((aligned(64)));
    for (ptrdiff_t ir = 0; ir < mc; ir += B_MR) {
        uint32_t *panel = dst + ir * pairs;
        ptrdiff_t done = 0;  // pairs already in the panel
        if (ir + B_MR <= mc) {
            // A full panel: 32 values of each of the 12 rows become 16 pair words per row, stored column-wise by
            // one register transpose (no per-word scatter).
            const float *base = a + (row0 + ir) * lda + pc;
            for (; 2 * done + 32 <= kc; done += 16) {
                __m512 r[B_MR];
                #pragma clang loop unroll(full)
                for (int i = 0; i < B_MR; i++) {
                    const float *row = base + i * lda + 2 * done;
                    r[i] = (__m512)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + 16), _mm512_loadu_ps(row));
                }
                clip_store_columns12(r, (float *)(panel + done * B_MR));
            }
            if (done == pairs) continue;
        }
        for (ptrdiff_t i = 0; i < B_MR; i++) {
            if (ir + i >= mc) {
                for (ptrdiff_t q = 0; q < pairs; q++) panel[q * B_MR + i] = 0;
                continue;
            }
            const float *row = a + (row0 + ir + i) * lda + pc;
            ptrdiff_t p = 2 * done;
            for (; p + 32 <= kc; p += 32) {
                __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + p + 16), _mm512_loadu_ps(row + p));
                _mm512_storeu_si512(words + p / 2, (__m512i)v);
            }
            for (; p < kc; p += 2) {
                uint32_t lo = to_bf16(row[p]), hi = p + 1 < kc ? to_bf16(row[p + 1]) : 0;
                words[p / 2] = lo | hi << 16;
            }
            for (ptrdiff_t q = done; q < pairs; q++) panel[q * B_MR + i] = words[q];
        }
    }
}
#endif

#ifdef CLIP_X86
static _Thread_local uint32_t *scratch, *scratch_b;
static _Thread_local size_t scratch_cap, scratch_b_cap;

// Grows a per-thread buffer to at least `need` words; -1 when the allocation fails.
static int ensure(uint32_t **buffer, size_t *cap, size_t need) {
    if (*cap >= need) return 0;
    free(*buffer);
    *buffer = aligned_alloc(64, (need * 4 + 63) & ~(size_t)63);
    *cap = *buffer ? need : 0;
    return *buffer ? 0 : -1;
}

// One packed A block (mc rows in MR-row panels of `pairs` words) against the B panels for columns [j0, j1) (j0 a
// multiple of NR; panel jr / NR at `panels` + (jr / NR) · pairs · NR): C[0..mc, j0..j1] = alpha · A·B + beta · C with
// `c` at the block's first row and column 0, then `ep`. Row panels outermost, as in sgemm.c: the A sliver stays in
// L1 while B streams past it. Partial column panels go through a buffer merged into C.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void macro_bf16(const uint32_t *pa, ptrdiff_t mc, ptrdiff_t pairs, const uint32_t *panels, ptrdiff_t j0,
                       ptrdiff_t j1, float *c, ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    float tile[B_MR * B_NR] __attribute__((aligned(64)));
    for (ptrdiff_t ir = 0; ir < mc; ir += B_MR) {
        const ptrdiff_t rows = mc - ir < B_MR ? mc - ir : B_MR;
        for (ptrdiff_t jr = j0; jr < j1; jr += B_NR) {
            const ptrdiff_t cols = j1 - jr < B_NR ? j1 - jr : B_NR;
            const uint32_t *bp = panels + (jr / B_NR) * pairs * B_NR;
            float *cp = c + ir * ldc + jr;
            if (cols == B_NR) {
                const clip_epilogue local = clip_tile_local(ep, jr);
                ukr_bf16(rows, pairs, pa + ir * pairs, bp, cp, ldc, alpha, beta, ep ? &local : NULL);
            } else {
                ukr_bf16(B_MR, pairs, pa + ir * pairs, bp, tile, B_NR, 1.0f, 0.0f, NULL);
                clip_merge_tile(cp, ldc, tile, B_NR, rows, cols, alpha, beta, ep, jr);
            }
        }
    }
}
#endif

int clip_sgemm_packed_bf16(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const uint16_t *packed,
                           ptrdiff_t j0, ptrdiff_t j1, float beta, float *c, ptrdiff_t ldc, const clip_epilogue *ep) {
#ifdef CLIP_X86
    if (!clip_bf16_available()) return -1;
    if (m < 0 || k < 0 || j0 < 0 || j1 > n || j0 > j1 || j0 % B_NR != 0) return -1;
    if (m == 0 || j1 == j0) return 0;
    if (k == 0) {
        for (ptrdiff_t i = 0; i < m; i++) {
            float *ci = c + i * ldc;
            for (ptrdiff_t j = j0; j < j1; j++) ci[j] = beta == 0.0f ? 0.0f : ci[j] * beta;
        }
        clip_tile_epilogue(ep, c + j0, ldc, m, j1 - j0, j0);
        return 0;
    }
    const ptrdiff_t npad = up(n, B_NR), mc_max = B_MR * B_MC_TILES;
    if (ensure(&scratch, &scratch_cap, (size_t)mc_max * (B_KC / 2)) != 0) return -1;
    for (ptrdiff_t pc = 0; pc < k; pc += B_KC) {
        const ptrdiff_t kc = k - pc < B_KC ? k - pc : B_KC, pairs = up(kc, 2) / 2;
        const float beta_k = pc == 0 ? beta : 1.0f;
        const clip_epilogue *ep_k = pc + kc == k ? ep : NULL;
        const uint16_t *block = packed + pc * npad;
        for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
            const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
            pack_a_bf16(a, lda, ic, mc, pc, kc, pairs, scratch);
            macro_bf16(scratch, mc, pairs, (const uint32_t *)block, j0, j1, c + ic * ldc, ldc, 1.0f, beta_k, ep_k);
        }
    }
    return 0;
#else
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed; (void)j0; (void)j1; (void)beta; (void)c; (void)ldc;
    (void)ep;
    return -1;
#endif
}

#ifdef CLIP_X86
// A panel of `width` (12 or 32) lanes from a source whose k runs across rows: value (p, x) at s[p * ld + x], p < kc,
// x < w. Word (q, x) holds (2q, x) in its low half and (2q + 1, x) in its high half; lanes from w on and the odd k
// tail are zero. Masked loads do not touch the memory of masked-off lanes, so a short panel reads nothing past w.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void pack_pairs_across_rows(const float *s, ptrdiff_t ld, ptrdiff_t kc, ptrdiff_t w, int width, uint32_t *dst) {
    const ptrdiff_t pairs = up(kc, 2) / 2;
    // Both rows converted by one instruction (row 2q in the low 16 lanes, 2q + 1 in the high ones), then interleaved
    // by one permutation into pair words.
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int x = 0; x < width; x += 16) {
        const ptrdiff_t left = w - x;
        const __mmask16 load = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        const int lanes = width - x < 16 ? width - x : 16;
        const __mmask16 store = lanes == 16 ? 0xFFFF : (__mmask16)((1u << lanes) - 1);
        const float *r0 = s + x;
        uint32_t *d = dst + x;
        for (ptrdiff_t q = 0; q < pairs; q++, r0 += 2 * ld, d += width) {
            // An odd k's last pair has no second row: its high half loads nothing and is zero.
            const __mmask16 high = 2 * q + 1 < kc ? load : 0;
            const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(high, r0 + ld), _mm512_maskz_loadu_ps(load, r0));
            _mm512_mask_storeu_epi32(d, store, _mm512_permutexvar_epi16(interleave, (__m512i)both));
        }
    }
}

// A B panel of 32 columns from a source whose k runs along rows: value (p, j) at s[j * ld + p], j < w. Each
// column's pairs are converted as one row (as `pack_a_bf16` does) and dealt out with stride NR; not on a training
// path (op(B) = Bᵀ), so kept simple.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void pack_pairs_along_rows(const float *s, ptrdiff_t ld, ptrdiff_t kc, ptrdiff_t w, uint32_t *dst) {
    const ptrdiff_t pairs = up(kc, 2) / 2;
    uint32_t words[B_KC / 2 + 16] __attribute__((aligned(64)));
    for (ptrdiff_t j = 0; j < B_NR; j++) {
        if (j >= w) {
            for (ptrdiff_t q = 0; q < pairs; q++) dst[q * B_NR + j] = 0;
            continue;
        }
        const float *row = s + j * ld;
        ptrdiff_t p = 0;
        for (; p + 32 <= kc; p += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + p + 16), _mm512_loadu_ps(row + p));
            _mm512_storeu_si512(words + p / 2, (__m512i)v);
        }
        for (; p < kc; p += 2) {
            const __m512 v = _mm512_maskz_loadu_ps(p + 1 < kc ? 0x3 : 0x1, row + p);
            // Lanes 0 and 1 of the conversion are (p, p + 1) side by side: the pair word.
            words[p / 2] = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128((__m256i)_mm512_cvtneps_pbh(v)));
        }
        for (ptrdiff_t q = 0; q < pairs; q++) dst[q * B_NR + j] = words[q];
    }
}

#endif

int clip_sgemm_bf16(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a,
                    ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc) {
#ifdef CLIP_X86
    if (!clip_bf16_available()) return -1;
    if (m < 0 || n < 0 || k < 0 || ldc < n) return -1;
    if (m == 0 || n == 0) return 0;
    if (k == 0 || alpha == 0.0f) {
        for (ptrdiff_t i = 0; i < m; i++) {
            float *ci = c + i * ldc;
            for (ptrdiff_t j = 0; j < n; j++) ci[j] = beta == 0.0f ? 0.0f : ci[j] * beta;
        }
        return 0;
    }
    const ptrdiff_t mc_max = B_MR * B_MC_TILES, nc_max = n < B_NC ? n : B_NC;
    if (ensure(&scratch, &scratch_cap, (size_t)mc_max * (B_KC / 2)) != 0) return -1;
    if (ensure(&scratch_b, &scratch_b_cap, (size_t)up(nc_max, B_NR) * (B_KC / 2)) != 0) return -1;
    for (ptrdiff_t jc = 0; jc < n; jc += B_NC) {
        const ptrdiff_t nc = n - jc < B_NC ? n - jc : B_NC;
        for (ptrdiff_t pc = 0; pc < k; pc += B_KC) {
            const ptrdiff_t kc = k - pc < B_KC ? k - pc : B_KC, pairs = up(kc, 2) / 2;
            // Later K blocks accumulate onto what the first one wrote.
            const float beta_k = pc == 0 ? beta : 1.0f;
            for (ptrdiff_t jr = 0; jr < nc; jr += B_NR) {
                const ptrdiff_t cols = nc - jr < B_NR ? nc - jr : B_NR;
                uint32_t *panel = scratch_b + (jr / B_NR) * pairs * B_NR;
                if (trans_b) pack_pairs_along_rows(b + (jc + jr) * ldb + pc, ldb, kc, cols, panel);
                else pack_pairs_across_rows(b + pc * ldb + jc + jr, ldb, kc, cols, B_NR, panel);
            }
            for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
                const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
                if (trans_a) {
                    for (ptrdiff_t ir = 0; ir < mc; ir += B_MR) {
                        const ptrdiff_t rows = mc - ir < B_MR ? mc - ir : B_MR;
                        pack_pairs_across_rows(a + pc * lda + ic + ir, lda, kc, rows, B_MR, scratch + ir * pairs);
                    }
                } else {
                    pack_a_bf16(a, lda, ic, mc, pc, kc, pairs, scratch);
                }
                macro_bf16(scratch, mc, pairs, scratch_b, 0, nc, c + ic * ldc + jc, ldc, alpha, beta_k, NULL);
            }
        }
    }
    return 0;
#else
    (void)trans_a; (void)trans_b; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
    return -1;
#endif
}

int clip_bf16_panel_width(void) { return B_NR; }

float clip_bf16_round(float x) {
    uint32_t u = (uint32_t)to_bf16(x) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
