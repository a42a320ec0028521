// The packed fp32 driver (`clip_sgemm_packed`, what inference runs) on one core, against that core's FMA peak: the
// products of the towers issue 35 times (ViT-B/32, ConvNeXt-B, EVA02-B/16, MobileCLIP-S2), without and with their epilogue. Thread
// CPU time, best of N interleaved passes (these shared machines drift by 20 % between single timings).
//
//   K=Sources/C/CCLIPKernels
//   clang -O2 -I$K/include Scripts/bench/gemm_driver.c $K/*.c -lm -lpthread -o /tmp/gemm_driver
//   /tmp/gemm_driver 12        # passes
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

typedef struct {
    const char *name;
    long m, n, k;
    int activation;
} shape;

int main(int argc, char **argv) {
    const shape s[] = {
        {"ViT-B/32 out, batch 8", 400, 768, 768, CLIP_ACTIVATION_NONE},
        {"ViT-B/32 c_fc, batch 8", 400, 3072, 768, CLIP_ACTIVATION_QUICK_GELU},
        {"ViT-B/32 c_proj, batch 8", 400, 768, 3072, CLIP_ACTIVATION_NONE},
        {"ConvNeXt-B s1 fc1, 1 image", 3136, 512, 128, CLIP_ACTIVATION_GELU},
        {"ConvNeXt-B s1 fc2, 1 image", 3136, 128, 512, CLIP_ACTIVATION_NONE},
        {"ConvNeXt-B s2 fc1, 1 image", 784, 1024, 256, CLIP_ACTIVATION_GELU},
        {"ConvNeXt-B s3 fc1, 1 image", 196, 2048, 512, CLIP_ACTIVATION_GELU},
        {"ConvNeXt-B s4 fc1, 1 image", 49, 4096, 1024, CLIP_ACTIVATION_GELU},
        {"EVA02-B/16 qkv, batch 2", 394, 2304, 768, CLIP_ACTIVATION_NONE},
        {"MobileCLIP-S2 s1 fc1, 1 image", 4096, 240, 80, CLIP_ACTIVATION_GELU},
        {"MobileCLIP-S2 s1 fc2, 1 image", 4096, 80, 240, CLIP_ACTIVATION_NONE},
        {"MobileCLIP-S2 s2 fc1, 1 image", 1024, 480, 160, CLIP_ACTIVATION_GELU},
        {"MobileCLIP-S2 s3 fc1, 1 image", 256, 960, 320, CLIP_ACTIVATION_GELU},
        {"MobileCLIP-S2 s4 fc2, 1 image", 64, 640, 1920, CLIP_ACTIVATION_NONE},
    };
    const int ns = sizeof s / sizeof s[0], passes = argc > 1 ? atoi(argv[1]) : 12;
    const int kernel = clip_gemm_best_kernel();
    long most_a = 0, most_b = 0, most_c = 0;
    for (int i = 0; i < ns; i++) {
        if (s[i].m * s[i].k > most_a) most_a = s[i].m * s[i].k;
        if (clip_packed_b_count(kernel, s[i].k, s[i].n) > most_b) most_b = clip_packed_b_count(kernel, s[i].k, s[i].n);
        if (s[i].m * s[i].n > most_c) most_c = s[i].m * s[i].n;
    }
    float *a = malloc(sizeof(float) * most_a), *b = malloc(sizeof(float) * most_a * 4 + sizeof(float) * 4096 * 1024);
    float *c = malloc(sizeof(float) * most_c), *bias = malloc(sizeof(float) * 4096);
    float *packed[16];
    if (!a || !b || !c || !bias) return 1;
    for (long i = 0; i < most_a; i++) a[i] = (float)(i % 97) * 0.01f - 0.4f;
    for (long i = 0; i < 4096; i++) bias[i] = (float)(i % 13) * 0.1f;
    for (int i = 0; i < ns; i++) {
        for (long j = 0; j < s[i].k * s[i].n; j++) b[j] = (float)(j % 89) * 0.001f - 0.04f;
        packed[i] = malloc(sizeof(float) * clip_packed_b_count(kernel, s[i].k, s[i].n));
        if (!packed[i] || clip_pack_b(kernel, 0, s[i].k, s[i].n, b, s[i].n, packed[i]) != 0) return 1;
    }
    double best[16][2] = {{0}};
    for (int p = 0; p < passes; p++)
        for (int i = 0; i < ns; i++)
            for (int e = 0; e < 2; e++) {
                const clip_epilogue ep = {bias, s[i].activation};
                const double t0 = cpu_seconds();
                if (clip_sgemm_packed(kernel, 0, s[i].m, s[i].n, s[i].k, 1.0f, a, s[i].k, packed[i], 0, s[i].n, 0.0f, c,
                                      s[i].n, e ? &ep : NULL) != 0)
                    return 1;
                const double g = 2.0 * s[i].m * s[i].n * s[i].k / (cpu_seconds() - t0) * 1e-9;
                if (g > best[i][e]) best[i][e] = g;
            }
    printf("%-28s %9s %9s   GFLOP/s, one thread, best of %d\n", "product (m x n x k)", "bare", "epilogue", passes);
    for (int i = 0; i < ns; i++)
        printf("%-28s %9.1f %9.1f   %ld x %ld x %ld\n", s[i].name, best[i][0], best[i][1], s[i].m, s[i].n, s[i].k);
    return 0;
}
