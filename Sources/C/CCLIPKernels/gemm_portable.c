// Portable fp32 micro-kernel: 4 x 8 with 4-wide vectors (GCC/Clang vector extensions), compiled for the baseline
// ISA: SSE2 on x86-64, NEON on arm64. Eight accumulators plus two B vectors fit either register file. It is what a
// CPU without a dedicated kernel runs, and what every other kernel is tested against.
#include "gemm_kernels.h"

#include <string.h>

enum { MR = 4, NR = 8 };
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

static void ukr(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c, ptrdiff_t ldc,
                float alpha, float beta, const clip_epilogue *ep) {
    v4f acc[MR][2];
    for (int i = 0; i < MR; i++) {
        acc[i][0] = (v4f){0, 0, 0, 0};
        acc[i][1] = (v4f){0, 0, 0, 0};
    }
    for (ptrdiff_t p = 0; p < kc; p++) {
        const v4f b0 = load4(pb + p * NR), b1 = load4(pb + p * NR + 4);
        const float *ap = pa + p * MR;
        for (int i = 0; i < MR; i++) {
            const v4f av = (v4f){ap[i], ap[i], ap[i], ap[i]};
            acc[i][0] += av * b0;
            acc[i][1] += av * b1;
        }
    }
    const v4f va = (v4f){alpha, alpha, alpha, alpha}, vb = (v4f){beta, beta, beta, beta};
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        v4f r0 = acc[i][0] * va, r1 = acc[i][1] * va;
        if (beta != 0.0f) {
            r0 += vb * load4(ci);
            r1 += vb * load4(ci + 4);
        }
        if (ep && ep->bias) {
            r0 += load4(ep->bias);
            r1 += load4(ep->bias + 4);
        }
        store4(ci, r0);
        store4(ci + 4, r1);
    }
    if (ep && ep->activation != CLIP_ACTIVATION_NONE) clip_epilogue_tile(c, ldc, MR, NR, NULL, ep->activation);
}

const clip_gemm_desc clip_gemm_portable = {MR, NR, ukr, NULL, NULL, NULL, 0};
