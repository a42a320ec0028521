// Backward passes of the element-wise layers and the optimizer's update, for training. The hot ones are plain C
// compiled once per ISA through target attributes (as elementwise.c), with floating-point contraction off in the
// whole file: on x86-64 every level rounds every value as the scalar baseline build did before they were vectorised
// (no training run changes a bit with the CPU level or that change). On arm64, where the baseline has FMA and
// clang contracted these loops, results changed by an ulp here and there when contraction was turned off. Reductions
// keep the scalar loops' partial sums (four for a row's mean, two for the rest) and get their speed from four rows
// side by side instead: a row alone is one latency chain per partial sum.
#include "CCLIPKernels.h"
#include "dispatch.h"

#include <math.h>

#pragma clang fp contract(off)

typedef float v2f __attribute__((vector_size(8), aligned(4)));
typedef float v4f __attribute__((vector_size(16), aligned(4)));
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

// The values at i and i + 1 of four rows w apart into v8f `out`: (row 0 i, row 0 i+1, row 1 i, …, row 3 i+1). A macro,
// so that it compiles inside each level's target attributes.
#define PAIRS4(out, x, w, i)                                                                                    \
    do {                                                                                                       \
        v2f r0_, r1_, r2_, r3_;                                                                                \
        __builtin_memcpy(&r0_, (x) + (i), sizeof r0_);                                                         \
        __builtin_memcpy(&r1_, (x) + (w) + (i), sizeof r1_);                                                   \
        __builtin_memcpy(&r2_, (x) + 2 * (w) + (i), sizeof r2_);                                               \
        __builtin_memcpy(&r3_, (x) + 3 * (w) + (i), sizeof r3_);                                               \
        v4f a_ = __builtin_shufflevector(r0_, r1_, 0, 1, 2, 3), b_ = __builtin_shufflevector(r2_, r3_, 0, 1, 2, 3); \
        out = __builtin_shufflevector(a_, b_, 0, 1, 2, 3, 4, 5, 6, 7);                                         \
    } while (0)

// LayerNorm's backward for k = 4 or 1 consecutive rows, each computed exactly as a row alone would be. The partial sums
// are the scalar loops' partial sums: a row's mean from lanes i mod 4, the rest from even and odd i. Four rows
// run as vectors whose lanes are (row, partial sum): every lane adds its own terms in the scalar loop's order.
#define LN_BLOCK(SUFFIX, ATTR)                                                                                  \
    ATTR static inline __attribute__((always_inline)) void ln_block_##SUFFIX(                                  \
        const float *x, const float *dy, ptrdiff_t w, const float *gamma, float eps, float *dx, float *dgamma,  \
        float *dbeta, const int k) {                                                                           \
        double part[4][4] = {{0}}, v[4][2] = {{0}}, sg[4][2] = {{0}}, sgx[4][2] = {{0}};                       \
        float m[4], rstd[4], mg[4], mgx[4];                                                                    \
        ptrdiff_t i = 0;                                                                                       \
        if (k == 4) {                                                                                          \
            v8d s01 = {0}, s23 = {0};                                                                          \
            for (; i + 4 <= w; i += 4) {                                                                       \
                v4f r0, r1, r2, r3;                                                                            \
                __builtin_memcpy(&r0, x + i, sizeof r0);                                                       \
                __builtin_memcpy(&r1, x + w + i, sizeof r1);                                                   \
                __builtin_memcpy(&r2, x + 2 * w + i, sizeof r2);                                               \
                __builtin_memcpy(&r3, x + 3 * w + i, sizeof r3);                                               \
                s01 += __builtin_convertvector(__builtin_shufflevector(r0, r1, 0, 1, 2, 3, 4, 5, 6, 7), v8d);  \
                s23 += __builtin_convertvector(__builtin_shufflevector(r2, r3, 0, 1, 2, 3, 4, 5, 6, 7), v8d);  \
            }                                                                                                  \
            for (int l = 0; l < 4; l++) {                                                                      \
                part[0][l] = s01[l]; part[1][l] = s01[4 + l]; part[2][l] = s23[l]; part[3][l] = s23[4 + l];    \
            }                                                                                                  \
        } else {                                                                                               \
            for (; i + 4 <= w; i += 4)                                                                         \
                for (int q = 0; q < k; q++)                                                                    \
                    for (int l = 0; l < 4; l++) part[q][l] += x[q * w + i + l];                                \
        }                                                                                                      \
        double mean[4];                                                                                        \
        for (int q = 0; q < k; q++) {                                                                          \
            for (ptrdiff_t j = i; j < w; j++) part[q][0] += x[q * w + j];                                      \
            mean[q] = ((part[q][0] + part[q][1]) + (part[q][2] + part[q][3])) / (double)w;                     \
        }                                                                                                      \
        i = 0;                                                                                                 \
        if (k == 4) {                                                                                          \
            const v8d mv = {mean[0], mean[0], mean[1], mean[1], mean[2], mean[2], mean[3], mean[3]};           \
            v8d acc = {0};                                                                                     \
            for (; i + 2 <= w; i += 2) {                                                                       \
                v8f xv;                                                                                        \
                PAIRS4(xv, x, w, i);                                                                           \
                v8d a = __builtin_convertvector(xv, v8d) - mv;                                                 \
                acc += a * a;                                                                                  \
            }                                                                                                  \
            for (int q = 0; q < 4; q++) { v[q][0] = acc[2 * q]; v[q][1] = acc[2 * q + 1]; }                    \
        } else {                                                                                               \
            for (; i + 2 <= w; i += 2)                                                                         \
                for (int q = 0; q < k; q++)                                                                    \
                    for (int l = 0; l < 2; l++) {                                                              \
                        double a = x[q * w + i + l] - mean[q];                                                 \
                        v[q][l] += a * a;                                                                      \
                    }                                                                                          \
        }                                                                                                      \
        for (int q = 0; q < k; q++) {                                                                          \
            if (i < w) { double a = x[q * w + i] - mean[q]; v[q][0] += a * a; }                                \
            rstd[q] = (float)(1.0 / sqrt((v[q][0] + v[q][1]) / (double)w + (double)eps));                      \
            m[q] = (float)mean[q];                                                                             \
        }                                                                                                      \
        i = 0;                                                                                                 \
        if (k == 4) {                                                                                          \
            const v8f mv = {m[0], m[0], m[1], m[1], m[2], m[2], m[3], m[3]};                                   \
            const v8f rv = {rstd[0], rstd[0], rstd[1], rstd[1], rstd[2], rstd[2], rstd[3], rstd[3]};           \
            v8d sga = {0}, sgxa = {0};                                                                         \
            for (; i + 2 <= w; i += 2) {                                                                       \
                v2f gp;                                                                                        \
                __builtin_memcpy(&gp, gamma + i, sizeof gp);                                                   \
                const v8f gv = __builtin_shufflevector(gp, gp, 0, 1, 0, 1, 0, 1, 0, 1);                        \
                v8f xv, dv;                                                                                    \
                PAIRS4(xv, x, w, i);                                                                           \
                PAIRS4(dv, dy, w, i);                                                                          \
                const v8f xh = (xv - mv) * rv, g = dv * gv;                                                    \
                sga += __builtin_convertvector(g, v8d);                                                        \
                sgxa += __builtin_convertvector(g * xh, v8d);                                                  \
            }                                                                                                  \
            for (int q = 0; q < 4; q++) {                                                                      \
                sg[q][0] = sga[2 * q]; sg[q][1] = sga[2 * q + 1];                                              \
                sgx[q][0] = sgxa[2 * q]; sgx[q][1] = sgxa[2 * q + 1];                                          \
            }                                                                                                  \
        } else {                                                                                               \
            for (; i + 2 <= w; i += 2)                                                                         \
                for (int q = 0; q < k; q++)                                                                    \
                    for (int l = 0; l < 2; l++) {                                                              \
                        float xh = (x[q * w + i + l] - m[q]) * rstd[q], g = dy[q * w + i + l] * gamma[i + l];  \
                        sg[q][l] += g;                                                                         \
                        sgx[q][l] += g * xh;                                                                   \
                    }                                                                                          \
        }                                                                                                      \
        for (int q = 0; q < k; q++) {                                                                          \
            if (i < w) {                                                                                       \
                float xh = (x[q * w + i] - m[q]) * rstd[q], g = dy[q * w + i] * gamma[i];                      \
                sg[q][0] += g;                                                                                 \
                sgx[q][0] += g * xh;                                                                           \
            }                                                                                                  \
            mg[q] = (float)((sg[q][0] + sg[q][1]) / (double)w);                                                \
            mgx[q] = (float)((sgx[q][0] + sgx[q][1]) / (double)w);                                             \
        }                                                                                                      \
        /* Row after row: dγ and dβ add up the rows in order. */                                               \
        for (int q = 0; q < k; q++) {                                                                          \
            const float *xr = x + q * w, *dyr = dy + q * w;                                                    \
            float *dxr = dx + q * w;                                                                           \
            for (i = 0; i < w; i++) {                                                                          \
                float xh = (xr[i] - m[q]) * rstd[q];                                                           \
                dgamma[i] += dyr[i] * xh;                                                                      \
                dbeta[i] += dyr[i];                                                                            \
                dxr[i] = rstd[q] * (dyr[i] * gamma[i] - mg[q] - xh * mgx[q]);                                  \
            }                                                                                                  \
        }                                                                                                      \
    }

#define BACKWARD_KERNELS(SUFFIX, ATTR)                                                                          \
    /* With h = z·σ(1.702z) kept from the forward pass, σ = h/z; near zero, where that ratio loses precision, σ */ \
    /* is its Taylor expansion 1/2 + 1.702z/4 (error below 1e-10 for |z| < 1e-3). d/dz = σ + 1.702·h·(1 − σ). */ \
    ATTR static void quick_gelu_backward_##SUFFIX(const float *z, const float *h, float *dh, ptrdiff_t n) {     \
        for (ptrdiff_t i = 0; i < n; i++) {                                                                    \
            float s = fabsf(z[i]) > 1e-3f ? h[i] / z[i] : 0.5f + 0.4255f * z[i];                               \
            dh[i] *= s + 1.702f * h[i] * (1.0f - s);                                                           \
        }                                                                                                      \
    }                                                                                                          \
    LN_BLOCK(SUFFIX, ATTR)                                                                                     \
    ATTR static void layer_norm_backward_##SUFFIX(const float *x, const float *dy, ptrdiff_t rows, ptrdiff_t w, \
                                                  const float *gamma, float eps, float *dx, float *dgamma,      \
                                                  float *dbeta) {                                              \
        ptrdiff_t r = 0;                                                                                       \
        for (; r + 4 <= rows; r += 4)                                                                          \
            ln_block_##SUFFIX(x + r * w, dy + r * w, w, gamma, eps, dx + r * w, dgamma, dbeta, 4);             \
        for (; r < rows; r++)                                                                                  \
            ln_block_##SUFFIX(x + r * w, dy + r * w, w, gamma, eps, dx + r * w, dgamma, dbeta, 1);             \
    }                                                                                                          \
    ATTR static void add_rows_##SUFFIX(const float *x, ptrdiff_t rows, ptrdiff_t w, float *sum) {              \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                                 \
            const float *xr = x + r * w;                                                                       \
            for (ptrdiff_t i = 0; i < w; i++) sum[i] += xr[i];                                                 \
        }                                                                                                      \
    }                                                                                                          \
    /* __builtin_elementwise_sqrt: sqrtf may set errno, which keeps the loop scalar; v ≥ 0 here. */            \
    ATTR static void adamw_##SUFFIX(float *p, const float *g, float *m, float *v, ptrdiff_t n, float beta1,    \
                                    float beta2, float decay, float step_size, float c2_root, float eps) {     \
        for (ptrdiff_t i = 0; i < n; i++) {                                                                    \
            m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];                                                       \
            v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];                                                \
            p[i] = p[i] * decay - step_size * m[i] / (__builtin_elementwise_sqrt(v[i]) / c2_root + eps);       \
        }                                                                                                      \
    }

BACKWARD_KERNELS(generic, )
#if defined(__x86_64__) || defined(__i386__)
BACKWARD_KERNELS(avx2, __attribute__((target("avx2,fma"))))
BACKWARD_KERNELS(avx512, __attribute__((target("avx512f,avx512dq"))))
#endif

void clip_quick_gelu_backward(const float *z, const float *h, float *dh, ptrdiff_t n) {
    CLIP_CALL_BEST(quick_gelu_backward, z, h, dh, n);
}

void clip_layer_norm_backward(const float *x, const float *dy, ptrdiff_t rows, ptrdiff_t w, const float *gamma,
                              float eps, float *dx, float *dgamma, float *dbeta) {
    CLIP_CALL_BEST(layer_norm_backward, x, dy, rows, w, gamma, eps, dx, dgamma, dbeta);
}

void clip_add_rows(const float *x, ptrdiff_t rows, ptrdiff_t w, float *sum) {
    CLIP_CALL_BEST(add_rows, x, rows, w, sum);
}

void clip_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float beta1, float beta2, float decay,
                float step_size, float c2_root, float eps) {
    CLIP_CALL_BEST(adamw, p, g, m, v, n, beta1, beta2, decay, step_size, c2_root, eps);
}

void clip_gelu_backward(const float *z, float *dh, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(z[i] * 0.70710678118654752f));
        dh[i] *= cdf + z[i] * expf(-0.5f * z[i] * z[i]) * 0.3989422804014327f;
    }
}

void clip_gelu_tanh_backward(const float *z, float *dh, ptrdiff_t n) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;
    for (ptrdiff_t i = 0; i < n; i++) {
        float x = z[i], t = tanhf(beta * (x + kappa * x * x * x));
        dh[i] *= 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * beta * (1.0f + 3.0f * kappa * x * x);
    }
}

double clip_sum_squares(const float *x, ptrdiff_t n) {
    double a = 0, b = 0, c = 0, d = 0;
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        a += (double)x[i] * x[i]; b += (double)x[i + 1] * x[i + 1];
        c += (double)x[i + 2] * x[i + 2]; d += (double)x[i + 3] * x[i + 3];
    }
    for (; i < n; i++) a += (double)x[i] * x[i];
    return (a + b) + (c + d);
}
