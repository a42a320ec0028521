// int8 micro-kernel with AVX512-VNNI (vpdpbusd): 12 x 32. vpdpbusd multiplies unsigned by signed bytes, so
// activation codes are stored as q + 128 and the 128 · Σ q_b this adds is taken off with per-column sums of the
// weight codes: C = s_a[i] · s_b[j] · (Σ (q_a + 128)·q_b − 128 · Σ q_b). The sums are exact int32 over the whole k
// (|sum| ≤ 255·127·k < 2³¹ for k < 66,000).
#include "int8_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include "simd_avx512.h"

#include <string.h>

enum { MR = 12, NR = 32 };

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

// R <= 12 rows (a compile-time constant after inlining); no_builtin("memset"): see gemm_avx512.c.
VNNI __attribute__((no_builtin("memset"), always_inline))
static inline void ukr_rows(const int R, ptrdiff_t quads, const uint32_t *pa, const int8_t *pb, float *c,
                            ptrdiff_t ldc, const float *sa, const float *sb, const int32_t *sums, float beta,
                            const clip_epilogue *ep) {
    __m512i acc[MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < R) { acc[i][0] = _mm512_setzero_si512(); acc[i][1] = _mm512_setzero_si512(); }
    }
    for (ptrdiff_t q = 0; q < quads; q++) {
        __m512i b0 = _mm512_loadu_si512(pb + q * NR * 4);
        __m512i b1 = _mm512_loadu_si512(pb + q * NR * 4 + 64);
        const uint32_t *ap = pa + q * MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            if (i >= R) continue;
            __m512i av = _mm512_set1_epi32((int)ap[i]);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], av, b1);
        }
    }
    __m512i off0 = _mm512_slli_epi32(_mm512_loadu_si512(sums), 7), off1 = _mm512_slli_epi32(_mm512_loadu_si512(sums + 16), 7);
    __m512 s0 = _mm512_loadu_ps(sb), s1 = _mm512_loadu_ps(sb + 16);
    __m512 r[MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i >= R) continue;
        const __m512 scale = _mm512_set1_ps(sa[i]);
        r[i][0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][0], off0)), _mm512_mul_ps(s0, scale));
        r[i][1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][1], off1)), _mm512_mul_ps(s1, scale));
    }
    clip_store_tile32(R, c, ldc, r, beta, ep);
}

VNNI static void ukr(ptrdiff_t rows, ptrdiff_t quads, const uint32_t *pa, const int8_t *pb, float *c, ptrdiff_t ldc,
                     const float *sa, const float *sb, const int32_t *sums, float beta, const clip_epilogue *ep) {
    if (rows == MR) {
        ukr_rows(MR, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep);
        return;
    }
#define EDGE_CALL(R) ukr_rows(R, quads, pa, pb, c, ldc, sa, sb, sums, beta, ep)
    CLIP_EDGE_ROWS(rows, EDGE_CALL)
#undef EDGE_CALL
}

// Codes + 128 as bytes, four to a word.
VNNI static float quantize(const float *row, ptrdiff_t k, ptrdiff_t quads, uint32_t *words) {
    uint8_t *out = (uint8_t *)words;
    const ptrdiff_t k4 = quads * 4;
    __m512 mx = _mm512_setzero_ps();
    ptrdiff_t p = 0;
    for (; p + 16 <= k; p += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(row + p)));
    float m = _mm512_reduce_max_ps(mx);
    for (; p < k; p++) { float v = __builtin_fabsf(row[p]); m = v > m ? v : m; }
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
    for (; p < k; p++) out[p] = (uint8_t)(clip_quantize_code(row[p], inv) + 128);
    for (; p < k4; p++) out[p] = 128;
    return m / 127.0f;
}

const clip_int8_desc clip_int8_avx512 = {MR, NR, 4, 0x80808080u, ukr, quantize};
#endif
