// The arithmetic peak of one core, measured: twelve independent multiply-add chains that never touch memory, in the
// widest instructions the GEMMs use on this CPU. `clip bench --gemm` reports GEMM rates as a share of it, so "how
// far from the machine's limit" is a measured number rather than a datasheet figure (clock rates of shared and
// virtualised CPUs are not known).
#include "CCLIPKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CLIP_X86 1
#endif

enum { CHAINS = 12 };

#ifdef CLIP_X86
__attribute__((target("avx512f"), noinline)) static float peak_fp32_avx512(long iterations) {
    __m512 acc[CHAINS];
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    #pragma clang loop unroll(full)
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    }
    float s = 0.0f;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

__attribute__((target("avx2,fma"), noinline)) static float peak_fp32_avx2(long iterations) {
    __m256 acc[CHAINS];
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    }
    float lanes[8], s = 0.0f;
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_ps(lanes, acc[i]);
        for (int l = 0; l < 8; l++) s += lanes[l];
    }
    return s;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), noinline)) static float peak_bf16(long iterations) {
    __m512 acc[CHAINS];
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3380);
    #pragma clang loop unroll(full)
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], b, c);
    }
    float s = 0.0f;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

// The AVX2 int8 kernel's inner step: vpmaddwd (two 16-bit products per lane) then vpaddd into the accumulator.
__attribute__((target("avx2,fma"), noinline)) static float peak_int8_avx2(long iterations) {
    __m256i acc[CHAINS];
    const __m256i c = _mm256_set1_epi16(1);
    #pragma clang loop unroll(full)
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_epi32(i);
    for (long it = 0; it < iterations; it++) {
        // The product reads the accumulator, so it cannot be hoisted out of the loop (the values wrap; only the
        // instruction count matters).
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(acc[i], c));
    }
    int lanes[8];
    long s = 0;
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_si256((__m256i *)lanes, acc[i]);
        for (int l = 0; l < 8; l++) s += lanes[l];
    }
    return (float)s;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"), noinline)) static float peak_int8(long iterations) {
    __m512i acc[CHAINS];
    const __m512i b = _mm512_set1_epi8(1), c = _mm512_set1_epi8(1);
    #pragma clang loop unroll(full)
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_epi32(i);
    for (long it = 0; it < iterations; it++) {
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], b, c);
    }
    long s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_epi32(acc[i]);
    return (float)s;
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>

__attribute__((noinline)) static float peak_fp32_neon(long iterations) {
    float32x4_t acc[CHAINS];
    const float32x4_t b = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = vdupq_n_f32((float)i);
    for (long it = 0; it < iterations; it++) {
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = vfmaq_f32(c, acc[i], b);
    }
    float s = 0.0f;
    for (int i = 0; i < CHAINS; i++) s += vaddvq_f32(acc[i]);
    return s;
}

__attribute__((target("dotprod"), noinline)) static float peak_int8_neon(long iterations) {
    int32x4_t acc[CHAINS];
    const int8x16_t b = vdupq_n_s8(1), c = vdupq_n_s8(1);
    for (int i = 0; i < CHAINS; i++) acc[i] = vdupq_n_s32(i);
    for (long it = 0; it < iterations; it++) {
        #pragma clang loop unroll(full)
        for (int i = 0; i < CHAINS; i++) acc[i] = vdotq_s32(acc[i], b, c);
    }
    long s = 0;
    for (int i = 0; i < CHAINS; i++) s += vaddvq_s32(acc[i]);
    return (float)s;
}
#endif

typedef float v4f __attribute__((vector_size(16)));

__attribute__((noinline)) static float peak_fp32_portable(long iterations) {
    v4f acc[CHAINS];
    const v4f b = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, c = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
    for (int i = 0; i < CHAINS; i++) acc[i] = (v4f){(float)i, (float)i, (float)i, (float)i};
    for (long it = 0; it < iterations; it++) {
        for (int i = 0; i < CHAINS; i++) acc[i] = acc[i] * b + c;
    }
    float s = 0.0f;
    for (int i = 0; i < CHAINS; i++) s += acc[i][0] + acc[i][1] + acc[i][2] + acc[i][3];
    return s;
}

double clip_peak_loop(int kind, long iterations, float *sink) {
    float s = 0.0f;
    double ops = -1.0;
    const int fp32 = clip_gemm_best_kernel(), int8 = clip_int8_best_kernel();
    switch (kind) {
    case 0:  // fp32, in the widest multiply-add the fp32 GEMM uses here
#ifdef CLIP_X86
        if (fp32 == CLIP_GEMM_AVX512) { s = peak_fp32_avx512(iterations); ops = CHAINS * 16 * 2; break; }
        if (fp32 == CLIP_GEMM_AVX2) { s = peak_fp32_avx2(iterations); ops = CHAINS * 8 * 2; break; }
#endif
#if defined(__aarch64__)
        if (fp32 == CLIP_GEMM_NEON) { s = peak_fp32_neon(iterations); ops = CHAINS * 4 * 2; break; }
#endif
        s = peak_fp32_portable(iterations);
        ops = CHAINS * 4 * 2;
        break;
    case 1:
#ifdef CLIP_X86
        if (!clip_bf16_available()) break;
        s = peak_bf16(iterations);
        ops = CHAINS * 32 * 2;
#endif
        break;
    case 2:  // int8, in the dot product the int8 GEMM uses here
#ifdef CLIP_X86
        if (int8 == CLIP_GEMM_AVX512) { s = peak_int8(iterations); ops = CHAINS * 64 * 2; break; }
        if (int8 == CLIP_GEMM_AVX2) { s = peak_int8_avx2(iterations); ops = CHAINS * 16 * 2; break; }
#endif
#if defined(__aarch64__)
        if (int8 == CLIP_GEMM_NEON) { s = peak_int8_neon(iterations); ops = CHAINS * 16 * 2; break; }
#endif
        break;
    default:
        break;
    }
    (void)fp32;
    (void)int8;
    if (sink) *sink = s;
    return ops < 0 ? -1.0 : ops * (double)iterations;
}
