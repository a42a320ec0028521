// Register tiles for the AVX-512 fp32 micro-kernel, each against the one-core FMA peak, with its panels resident in L1
// (so the tile's own issue rate is measured, not the memory hierarchy's), next to the library's kernel
// (clip_gemm_avx512.ukr). Thread CPU time, best of 15 interleaved passes: these shared machines drift by 20 % between
// runs, which hides tile differences of a few percent in single timings.
//
//   K=Sources/C/CCLIPKernels
//   clang -O3 -I$K/include -I$K Scripts/bench/gemm_tiles.c $K/gemm_avx512.c $K/elementwise.c $K/cpu.c -lm -o /tmp/gemm_tiles
//   /tmp/gemm_tiles 384        # k depth of the panels (the library's KC is 384)
//
// Results and the CPU they came from: docs/performance.md.
#include "gemm_kernels.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// One-core fp32 peak: 24 independent multiply-add chains of 16 lanes.
__attribute__((target("avx512f"))) static double peak_gflops(void) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i * 0.001f);
    const __m512 x = _mm512_set1_ps(0.9999f), y = _mm512_set1_ps(1e-7f);
    const long iterations = 20000000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        const double t0 = cpu_seconds();
        for (long it = 0; it < iterations; it++) {
            #pragma clang loop unroll(full)
            for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
        }
        const double g = 24.0 * 32 * (double)iterations / (cpu_seconds() - t0) * 1e-9;
        if (g > best) best = g;
    }
    float s = 0;
    for (int i = 0; i < 24; i++) s += _mm512_reduce_add_ps(acc[i]);
    if (s == 12345.0f) printf(" ");
    return best;
}

#define STRING(x) #x
#define PRAGMA(x) _Pragma(STRING(x))

// An MR x (NV·16) tile, k unrolled by U, accumulating into C.
#define TILE(NAME, MR, NV, U)                                                                                        \
    __attribute__((target("avx512f"), noinline)) static void NAME(long kc, const float *restrict pa,                 \
                                                                  const float *restrict pb, float *restrict c,        \
                                                                  long ldc) {                                         \
        __m512 acc[MR][NV];                                                                                          \
        for (int i = 0; i < MR; i++)                                                                                 \
            for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps();                                            \
        PRAGMA(clang loop unroll_count(U)) for (long p = 0; p < kc; p++) {                                        \
            __m512 b[NV];                                                                                            \
            for (int j = 0; j < NV; j++) b[j] = _mm512_loadu_ps(pb + p * NV * 16 + 16 * j);                          \
            PRAGMA(clang loop unroll(full)) for (int i = 0; i < MR; i++) {                                        \
                const __m512 a = _mm512_set1_ps(pa[p * MR + i]);                                                     \
                for (int j = 0; j < NV; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);                        \
            }                                                                                                        \
        }                                                                                                            \
        for (int i = 0; i < MR; i++)                                                                                 \
            for (int j = 0; j < NV; j++)                                                                             \
                _mm512_storeu_ps(c + i * ldc + 16 * j, _mm512_add_ps(_mm512_loadu_ps(c + i * ldc + 16 * j), acc[i][j])); \
    }
TILE(tile_12x32_u1, 12, 2, 1)
TILE(tile_12x32_u4, 12, 2, 4)
TILE(tile_14x32_u4, 14, 2, 4)
TILE(tile_8x48_u4, 8, 3, 4)
TILE(tile_6x64_u4, 6, 4, 4)

static void library_kernel(long kc, const float *pa, const float *pb, float *c, long ldc) {
    clip_gemm_avx512.ukr(kc, pa, pb, c, ldc, 1.0f, 1.0f, NULL);
}

int main(int argc, char **argv) {
    if (!__builtin_cpu_supports("avx512f")) {
        printf("this CPU has no AVX-512F\n");
        return 0;
    }
    const long kc = argc > 1 ? atol(argv[1]) : 384;
    if (kc < 1 || kc > 4096) return 1;
    const struct {
        void (*run)(long, const float *, const float *, float *, long);
        int mr, nr;
        const char *name;
    } tiles[] = {
        {library_kernel, 12, 32, "library 12x32"}, {tile_12x32_u1, 12, 32, "12x32, k by 1"},
        {tile_12x32_u4, 12, 32, "12x32, k by 4"},  {tile_14x32_u4, 14, 32, "14x32, k by 4"},
        {tile_8x48_u4, 8, 48, "8x48, k by 4"},     {tile_6x64_u4, 6, 64, "6x64, k by 4"},
    };
    enum { COUNT = sizeof tiles / sizeof tiles[0] };
    float *pa = aligned_alloc(64, sizeof(float) * 16 * (size_t)kc), *pb = aligned_alloc(64, sizeof(float) * 64 * (size_t)kc);
    float *c = aligned_alloc(64, sizeof(float) * 16 * 64);
    if (!pa || !pb || !c) return 1;
    for (long i = 0; i < 16 * kc; i++) pa[i] = 0.001f * (float)(i % 100);
    for (long i = 0; i < 64 * kc; i++) pb[i] = 0.002f;
    for (int i = 0; i < 16 * 64; i++) c[i] = 0;
    const double peak = peak_gflops();
    double best[COUNT] = {0};
    for (int r = 0; r < 15; r++) {
        for (int t = 0; t < COUNT; t++) {
            const long calls = 30000 * 256 / kc + 1;
            const double t0 = cpu_seconds();
            for (long i = 0; i < calls; i++) tiles[t].run(kc, pa, pb, c, 64);
            const double g = 2.0 * tiles[t].mr * tiles[t].nr * (double)kc * (double)calls / (cpu_seconds() - t0) * 1e-9;
            if (g > best[t]) best[t] = g;
        }
    }
    printf("one-core fp32 peak %.1f GFLOP/s; panels %ld deep\n", peak, kc);
    for (int t = 0; t < COUNT; t++) printf("%-15s %6.1f GFLOP/s (%.0f %% of peak)\n", tiles[t].name, best[t], 100 * best[t] / peak);
    free(pa);
    free(pb);
    free(c);
    return 0;
}
