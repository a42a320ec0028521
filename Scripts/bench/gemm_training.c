// The image tower's backward products in a training step of the default model (batch 128: 8,320 token rows), each
// at one thread's share as GEMM.swift splits it over two cores: the weight gradients dW = dYᵀ·X (k = 8,320, their
// operands packed from memory) and the input gradients dX = dY·W. Thread CPU time, best of N interleaved passes.
//
//   K=Sources/C/CCLIPKernels
//   clang -O2 -I$K/include Scripts/bench/gemm_training.c $K/*.c -lm -lpthread -o /tmp/gemm_training
//   /tmp/gemm_training 5        # passes
//
// Results and the CPU they came from: docs/performance.md.
#include "CCLIPKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double cpu_seconds(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
typedef struct { const char *name; int ta, tb; long m, n, k, lda, ldb, ldc; } shape;
int main(int argc, char **argv) {
    const long R = 8320;
    shape s[] = {
        {"qkv dW (m split)", 1, 0, 192, 128, R, 384, 128, 128},
        {"out dW (n split)", 1, 0, 128, 64, R, 128, 128, 128},
        {"fc dW (m split)", 1, 0, 256, 128, R, 512, 128, 128},
        {"proj dW (n split)", 1, 0, 128, 256, R, 128, 512, 512},
        {"qkv dX (m split)", 0, 0, R / 2, 128, 384, 384, 128, 128},
        {"out dX (m split)", 0, 0, R / 2, 128, 128, 128, 128, 128},
        {"fc dX (m split)", 0, 0, R / 2, 128, 512, 512, 128, 128},
        {"proj dX (m split)", 0, 0, R / 2, 512, 128, 128, 512, 512},
    };
    const int ns = sizeof s / sizeof s[0], passes = argc > 1 ? atoi(argv[1]) : 7;
    float *a = malloc(sizeof(float) * R * 512), *b = malloc(sizeof(float) * R * 512), *c = malloc(sizeof(float) * R * 512);
    for (long i = 0; i < R * 512; i++) { a[i] = (float)(i % 97) * 0.01f; b[i] = (float)(i % 89) * 0.01f; c[i] = 0; }
    double best[16] = {0}, total = 0;
    for (int p = 0; p < passes; p++)
        for (int i = 0; i < ns; i++) {
            double t0 = cpu_seconds();
            clip_sgemm(CLIP_GEMM_AUTO, s[i].ta, s[i].tb, s[i].m, s[i].n, s[i].k, 1.0f, a, s[i].lda, b, s[i].ldb, 1.0f, c, s[i].ldc);
            double t = cpu_seconds() - t0, g = 2.0 * s[i].m * s[i].n * s[i].k / t * 1e-9;
            if (g > best[i]) best[i] = g;
        }
    for (int i = 0; i < ns; i++) { printf("%-20s %7.1f GFLOP/s\n", s[i].name, best[i]); total += 2.0 * s[i].m * s[i].n * s[i].k / best[i] * 1e-9; }
    printf("sum of best times %.2f ms\n", total * 1e3);
    return 0;
}
