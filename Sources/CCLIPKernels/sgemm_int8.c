// Dynamic int8 GEMM with AVX512-VNNI (vpdpbusd), for the opt-in int8 mode. Weights: per output column scale
// max|w|/127, int8, packed in k-quads. Activations: per row scale max|a|/127, stored as unsigned (q + 128) because
// vpdpbusd multiplies unsigned by signed bytes; the +128 is removed with per-column sums of the weight codes.
// Sums are exact int32 over the whole k (|sum| ≤ 255·127·k < 2³¹ for k < 66,000); the result is
// C = s_a[i] · s_b[j] · (Σ (q_a + 128)·q_b − 128 · Σ q_b) + beta · C.
#include "CCLIPKernels.h"
#include "tile_store.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CLIP_X86 1
#endif

enum { Q_MR = 12, Q_NR = 32, Q_MC_TILES = 16 };

static ptrdiff_t up4(ptrdiff_t v, ptrdiff_t m) { return (v + m - 1) / m * m; }

int clip_int8_available(void) {
#ifdef CLIP_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

ptrdiff_t clip_packed_b_int8_bytes(ptrdiff_t k, ptrdiff_t n) { return up4(k, 4) * up4(n, Q_NR); }
ptrdiff_t clip_packed_b_int8_columns(ptrdiff_t n) { return up4(n, Q_NR); }

static inline int8_t quantize(float v, float inv) {
    float q = nearbyintf(v * inv);
    return (int8_t)(q > 127.0f ? 127 : (q < -127.0f ? -127 : q));
}

// `out`: panel j (32 columns) at j * K4 * 32 bytes, holding for each k-quad the 4 codes of each column side by side.
// `scales` and `sums` have up(n, 32) entries (zero past n).
int clip_pack_b_int8(int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, int8_t *out, float *scales,
                     int32_t *sums) {
    if (k < 0 || n < 0) return -1;
    const ptrdiff_t k4 = up4(k, 4), npad = up4(n, Q_NR);
    memset(out, 0, (size_t)(k4 * npad));
    for (ptrdiff_t j = 0; j < npad; j++) {
        scales[j] = 0.0f;
        sums[j] = 0;
        if (j >= n) continue;
        float m = 0.0f;
        for (ptrdiff_t p = 0; p < k; p++) {
            float v = fabsf(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            m = v > m ? v : m;
        }
        if (m == 0.0f) continue;
        float scale = m / 127.0f, inv = 127.0f / m;
        scales[j] = scale;
        int8_t *panel = out + (j / Q_NR) * k4 * Q_NR;
        for (ptrdiff_t p = 0; p < k; p++) {
            int8_t q = quantize(trans_b ? b[j * ldb + p] : b[p * ldb + j], inv);
            panel[(p / 4) * Q_NR * 4 + (j % Q_NR) * 4 + p % 4] = q;
            sums[j] += q;
        }
    }
    return 0;
}

#ifdef CLIP_X86
// R <= 12 rows (a compile-time constant after inlining); no_builtin("memset"): see ukr_avx512 in sgemm.c.
__attribute__((target("avx512f,avx512bw,avx512vnni"), no_builtin("memset"), always_inline))
static inline void ukr_int8_rows(const int R, ptrdiff_t quads, const uint32_t *pa, const int8_t *pb, float *c,
                                 ptrdiff_t ldc, const float *sa, const float *sb, const int32_t *sums, float beta,
                                 const clip_epilogue *ep) {
    __m512i acc[Q_MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < Q_MR; i++) {
        if (i < R) { acc[i][0] = _mm512_setzero_si512(); acc[i][1] = _mm512_setzero_si512(); }
    }
    for (ptrdiff_t q = 0; q < quads; q++) {
        __m512i b0 = _mm512_loadu_si512(pb + q * Q_NR * 4);
        __m512i b1 = _mm512_loadu_si512(pb + q * Q_NR * 4 + 64);
        const uint32_t *ap = pa + q * Q_MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < Q_MR; i++) {
            if (i >= R) continue;
            __m512i av = _mm512_set1_epi32((int)ap[i]);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], av, b1);
        }
    }
    __m512i off0 = _mm512_slli_epi32(_mm512_loadu_si512(sums), 7), off1 = _mm512_slli_epi32(_mm512_loadu_si512(sums + 16), 7);
    __m512 s0 = _mm512_loadu_ps(sb), s1 = _mm512_loadu_ps(sb + 16);
    __m512 r[Q_MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < Q_MR; i++) {
        if (i >= R) continue;
        const __m512 scale = _mm512_set1_ps(sa[i]);
        r[i][0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][0], off0)), _mm512_mul_ps(s0, scale));
        r[i][1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][1], off1)), _mm512_mul_ps(s1, scale));
    }
    clip_store_tile32(R, c, ldc, r, beta, ep);
}

// A full tile, or `rows` < 12 of one (the last row panel), written straight to C.
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void ukr_int8(ptrdiff_t rows, ptrdiff_t quads, const uint32_t *pa, const int8_t *pb, float *c, ptrdiff_t ldc,
                     const float *sa, const float *sb, const int32_t *sums, float beta, const clip_epilogue *ep) {
    if (rows == Q_MR) {
        ukr_int8_rows(Q_MR, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep);
        return;
    }
#define EDGE_CALL(R) ukr_int8_rows(R, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep)
    CLIP_EDGE_ROWS(rows, EDGE_CALL)
#undef EDGE_CALL
}
#endif

#ifdef CLIP_X86
// One row: its scale (max|a|/127) and its codes + 128 as bytes, k4 of them (zero codes past k).
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static float quantize_row(const float *row, ptrdiff_t k, ptrdiff_t k4, uint8_t *out) {
    __m512 mx = _mm512_setzero_ps();
    ptrdiff_t p = 0;
    for (; p + 16 <= k; p += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(row + p)));
    float m = _mm512_reduce_max_ps(mx);
    for (; p < k; p++) { float v = fabsf(row[p]); m = v > m ? v : m; }
    if (m == 0.0f) {
        memset(out, 128, (size_t)k4);
        return 0.0f;
    }
    const float inv = 127.0f / m;
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), off = _mm512_set1_epi32(128);
    for (p = 0; p + 16 <= k; p += 16) {
        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(row + p), vinv));  // round half to even
        q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), off);
        _mm_storeu_si128((__m128i *)(out + p), _mm512_cvtepi32_epi8(q));
    }
    for (; p < k; p++) out[p] = (uint8_t)(quantize(row[p], inv) + 128);
    for (; p < k4; p++) out[p] = 128;
    return m / 127.0f;
}
#endif

static _Thread_local uint32_t *qscratch;
static _Thread_local size_t qscratch_cap;

int clip_gemm_packed_int8(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const int8_t *packed,
                          const float *scales, const int32_t *sums, ptrdiff_t j0, ptrdiff_t j1, float beta, float *c,
                          ptrdiff_t ldc, const clip_epilogue *ep) {
#ifdef CLIP_X86
    if (!clip_int8_available()) return -1;
    if (m < 0 || k < 0 || j0 < 0 || j1 > n || j0 > j1 || j0 % Q_NR != 0) return -1;
    if (m == 0 || j1 == j0) return 0;
    const ptrdiff_t k4 = up4(k, 4), quads = k4 / 4, mc_max = Q_MR * Q_MC_TILES;
    size_t need = (size_t)mc_max * quads + (size_t)mc_max + (size_t)quads + 16;  // panels, row scales, one row's words
    if (qscratch_cap < need) {
        free(qscratch);
        qscratch = aligned_alloc(64, (need * 4 + 63) & ~(size_t)63);
        qscratch_cap = qscratch ? need : 0;
        if (!qscratch) return -1;
    }
    uint32_t *pa = qscratch;
    float *sa = (float *)(qscratch + (size_t)mc_max * quads);
    float tile[Q_MR * Q_NR] __attribute__((aligned(64)));
    for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
        const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
        // Quantise rows [ic, ic + mc) with their own scales; a row's codes are its quad words, scattered with stride
        // MR into the panel. Rows past mc and k past k pack as code 0 (byte 128).
        uint32_t *words = (uint32_t *)(sa + mc_max);
        for (ptrdiff_t i = 0; i < up4(mc, Q_MR); i++) {
            uint32_t *panel = pa + (i / Q_MR) * Q_MR * quads;
            if (i < mc) {
                sa[i] = quantize_row(a + (ic + i) * lda, k, k4, (uint8_t *)words);
            } else {
                sa[i] = 0.0f;
                memset(words, 128, (size_t)k4);
            }
            for (ptrdiff_t q = 0; q < quads; q++) panel[q * Q_MR + i % Q_MR] = words[q];
        }
        for (ptrdiff_t jr = j0; jr < j1; jr += Q_NR) {
            const ptrdiff_t cols = j1 - jr < Q_NR ? j1 - jr : Q_NR;
            const int8_t *bp = packed + (jr / Q_NR) * k4 * Q_NR;
            for (ptrdiff_t ir = 0; ir < mc; ir += Q_MR) {
                const ptrdiff_t rows = mc - ir < Q_MR ? mc - ir : Q_MR;
                const uint32_t *ap = pa + (ir / Q_MR) * Q_MR * quads;
                float *cp = c + (ic + ir) * ldc + jr;
                if (cols == Q_NR) {
                    const clip_epilogue local = clip_tile_local(ep, jr);
                    ukr_int8(rows, quads, ap, bp, cp, ldc, sa + ir, scales + jr, sums + jr, beta, ep ? &local : NULL);
                } else {
                    ukr_int8(Q_MR, quads, ap, bp, tile, Q_NR, sa + ir, scales + jr, sums + jr, 0.0f, NULL);
                    clip_merge_tile(cp, ldc, tile, Q_NR, rows, cols, 1.0f, beta, ep, jr);
                }
            }
        }
    }
    return 0;
#else
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)packed; (void)scales; (void)sums; (void)j0; (void)j1;
    (void)beta; (void)c; (void)ldc; (void)ep;
    return -1;
#endif
}
