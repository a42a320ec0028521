// int8 micro-kernel for AVX2: 6 x 16 with vpmaddwd on 16-bit codes. Weight codes stay bytes in memory and are widened
// as they are loaded (vpmovsxbw); activation codes are packed as 16-bit pairs. vpmaddwd sums two exact products per
// 32-bit lane, so unlike vpmaddubsw nothing saturates, and the sums equal the VNNI kernel's bit for bit.
#include "int8_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include "simd_avx2.h"

#include <string.h>

enum { MR = 6, NR = 16 };

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 __attribute__((no_builtin("memset"), always_inline))
static inline void ukr_rows(const int R, ptrdiff_t pairs, const uint32_t *pa, const int8_t *pb, float *c,
                            ptrdiff_t ldc, const float *sa, const float *sb, const int32_t *sums, float beta,
                            const clip_epilogue *ep) {
    (void)sums;
    __m256i acc[MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < R) { acc[i][0] = _mm256_setzero_si256(); acc[i][1] = _mm256_setzero_si256(); }
    }
    for (ptrdiff_t q = 0; q < pairs; q++) {
        const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pb + q * NR * 2)));
        const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pb + q * NR * 2 + 16)));
        const uint32_t *ap = pa + q * MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            if (i >= R) continue;
            const __m256i av = _mm256_set1_epi32((int)ap[i]);
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(av, b0));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(av, b1));
        }
    }
    const __m256 s0 = _mm256_loadu_ps(sb), s1 = _mm256_loadu_ps(sb + 8);
    __m256 r[MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i >= R) continue;
        const __m256 scale = _mm256_set1_ps(sa[i]);
        r[i][0] = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][0]), _mm256_mul_ps(s0, scale));
        r[i][1] = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i][1]), _mm256_mul_ps(s1, scale));
    }
    clip_store_tile16(R, c, ldc, r, beta, ep);
}

AVX2 static void ukr(ptrdiff_t rows, ptrdiff_t pairs, const uint32_t *pa, const int8_t *pb, float *c, ptrdiff_t ldc,
                     const float *sa, const float *sb, const int32_t *sums, float beta, const clip_epilogue *ep) {
    switch (rows) {
    case 6: ukr_rows(6, pairs, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 5: ukr_rows(5, pairs, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 4: ukr_rows(4, pairs, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 3: ukr_rows(3, pairs, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    case 2: ukr_rows(2, pairs, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    default: ukr_rows(1, pairs, pa, pb, c, ldc, sa, sb, sums, beta, ep); break;
    }
}

// 16-bit codes, two to a word (a row's codes in order are its pair words, little-endian).
AVX2 static float quantize(const float *row, ptrdiff_t k, ptrdiff_t pairs, uint32_t *words) {
    int16_t *out = (int16_t *)words;
    const ptrdiff_t k2 = pairs * 2;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_setzero_ps();
    ptrdiff_t p = 0;
    for (; p + 8 <= k; p += 8) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(row + p)));
    float m = clip_max8(mx);
    for (; p < k; p++) { float v = __builtin_fabsf(row[p]); m = v > m ? v : m; }
    if (m == 0.0f) {
        memset(out, 0, (size_t)k2 * sizeof(int16_t));
        return 0.0f;
    }
    const float inv = 127.0f / m;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (p = 0; p + 16 <= k; p += 16) {
        __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + p), vinv));  // round half to even
        __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(row + p + 8), vinv));
        q0 = _mm256_min_epi32(_mm256_max_epi32(q0, lo), hi);
        q1 = _mm256_min_epi32(_mm256_max_epi32(q1, lo), hi);
        // packs interleaves 128-bit lanes; the permute puts the 16 codes back in order.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        _mm256_storeu_si256((__m256i *)(out + p), packed);
    }
    for (; p < k; p++) out[p] = (int16_t)clip_quantize_code(row[p], inv);
    for (; p < k2; p++) out[p] = 0;
    return m / 127.0f;
}

const clip_int8_desc clip_int8_avx2 = {MR, NR, 2, 0, ukr, quantize};
#endif
