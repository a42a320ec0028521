// The packed fp32 driver on one image's products with the weights cold, as a forward pass meets them: one thread's
// half of each ViT-B/32 layer's columns at 50 rows (and ConvNeXt-B stage 4 at 49), each product over 24 copies of
// its packed weights so that none is in cache when used. Thread CPU time, best of N passes.
//
//   K=Sources/C/CCLIPKernels
//   clang -O2 -I$K/include Scripts/bench/gemm_cold_weights.c $K/*.c -lm -lpthread -o /tmp/gemm_cold_weights
//   /tmp/gemm_cold_weights 6     # passes
//
// Results and the CPU they came from: docs/performance.md.
#include "CCLIPKernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const long shapes[][3] = {{50, 1152, 768}, {50, 384, 768}, {50, 1536, 768}, {50, 384, 3072}, {49, 2048, 1024}};
    const char *names[] = {"ViT-B/32 qkv, half", "ViT-B/32 out, half", "ViT-B/32 c_fc, half", "ViT-B/32 c_proj, half",
                           "ConvNeXt-B s4 fc1, half"};
    const int kernel = clip_gemm_best_kernel(), copies = 24, passes = argc > 1 ? atoi(argv[1]) : 6;
    float *a = malloc(sizeof(float) * 50 * 3072), *c = malloc(sizeof(float) * 50 * 4096);
    if (!a || !c) return 1;
    for (int i = 0; i < 50 * 3072; i++) a[i] = (float)(i % 97) * 0.01f - 0.4f;
    printf("%-26s %-16s %s\n", "product", "m x n x k", "GFLOP/s, one thread, weights cold");
    for (int s = 0; s < 5; s++) {
        const long m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *b = malloc(sizeof(float) * n * k);
        const long count = clip_packed_b_count(kernel, k, n);
        float *packed[24];
        if (!b) return 1;
        for (long j = 0; j < n * k; j++) b[j] = (float)(j % 89) * 0.001f - 0.04f;
        for (int i = 0; i < copies; i++) {
            packed[i] = malloc(sizeof(float) * count);
            if (!packed[i] || clip_pack_b(kernel, 0, k, n, b, n, packed[i]) != 0) return 1;
        }
        double best = 1e30;
        for (int r = 0; r < passes; r++) {
            const double t0 = cpu_seconds();
            for (int i = 0; i < copies; i++)
                if (clip_sgemm_packed(kernel, 0, m, n, k, 1.0f, a, k, packed[i], 0, n, 0.0f, c, n, NULL) != 0) return 1;
            const double t = cpu_seconds() - t0;
            if (t < best) best = t;
        }
        printf("%-26s %ldx%ldx%ld %10.1f\n", names[s], m, n, k, 2.0 * m * n * k * copies / best * 1e-9);
        for (int i = 0; i < copies; i++) free(packed[i]);
        free(b);
    }
    return 0;
}
