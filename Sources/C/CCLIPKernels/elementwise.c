// Element-wise kernels on the hot path (QuickGELU, softmax, LayerNorm), written as plain loops and compiled once
// per ISA through target attributes, so the compiler vectorises them for AVX-512 / AVX2 and still runs on any CPU.
#include "CCLIPKernels.h"
#include "dispatch.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// exp(x) for x in float range, Cephes-style: x = n·ln2 + r, a degree-6 polynomial for e^r, 2^n from the
// exponent bits. Error ≤ 2 ulp; branch-free so it vectorises.
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.3f ? 88.3f : x);
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = (int32_t)n + 127;
    union { int32_t i; float f; } scale = {e << 23};
    return p * scale.f;
}

// Φ(v) = ½·erfc(−v/√2) with erfc from its Chebyshev fit (Numerical Recipes' erfcc: relative error < 1.2e-7 for
// every argument), branch-free so it vectorises where erff does not.
static inline float normal_cdf(float v) {
    float z = -v * 0.70710678118654752f, a = fabsf(z);
    float t = 1.0f / (1.0f + 0.5f * a);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float erfc_a = t * exp_poly(-a * a + p);
    float erfc_z = z >= 0.0f ? erfc_a : 2.0f - erfc_a;
    return 0.5f * erfc_z;
}

typedef float v16f __attribute__((vector_size(64)));

// Reductions keep 16 partial results: the compiler may not reorder a scalar float sum, which would leave the
// loop one add per element on a latency chain.
#define KERNELS(SUFFIX, ATTR)                                                                              \
    ATTR static float sum_##SUFFIX(const float *x, ptrdiff_t n) {                                           \
        v16f acc = {0};                                                                                    \
        ptrdiff_t i = 0;                                                                                   \
        for (; i + 16 <= n; i += 16) {                                                                     \
            v16f v;                                                                                        \
            memcpy(&v, x + i, sizeof v);                                                                   \
            acc += v;                                                                                      \
        }                                                                                                  \
        float s = 0.0f;                                                                                    \
        for (int l = 0; l < 16; l++) s += acc[l];                                                          \
        for (; i < n; i++) s += x[i];                                                                      \
        return s;                                                                                          \
    }                                                                                                      \
    ATTR static float squared_deviation_##SUFFIX(const float *x, ptrdiff_t n, float mean) {                 \
        v16f acc = {0};                                                                                    \
        ptrdiff_t i = 0;                                                                                   \
        for (; i + 16 <= n; i += 16) {                                                                     \
            v16f v;                                                                                        \
            memcpy(&v, x + i, sizeof v);                                                                   \
            v -= mean;                                                                                     \
            acc += v * v;                                                                                  \
        }                                                                                                  \
        float q = 0.0f;                                                                                    \
        for (int l = 0; l < 16; l++) q += acc[l];                                                          \
        for (; i < n; i++) { float d = x[i] - mean; q += d * d; }                                          \
        return q;                                                                                          \
    }                                                                                                      \
    ATTR static float max_##SUFFIX(const float *x, ptrdiff_t n) {                                           \
        float m = x[0];                                                                                    \
        ptrdiff_t i = 0;                                                                                   \
        if (n >= 16) {                                                                                     \
            v16f acc;                                                                                      \
            memcpy(&acc, x, sizeof acc);                                                                   \
            for (i = 16; i + 16 <= n; i += 16) {                                                           \
                v16f v;                                                                                    \
                memcpy(&v, x + i, sizeof v);                                                               \
                acc = __builtin_elementwise_max(acc, v);                                                   \
            }                                                                                              \
            for (int l = 0; l < 16; l++) m = acc[l] > m ? acc[l] : m;                                      \
        }                                                                                                  \
        for (; i < n; i++) m = x[i] > m ? x[i] : m;                                                        \
        return m;                                                                                          \
    }                                                                                                      \
    ATTR static void quick_gelu_##SUFFIX(float *x, ptrdiff_t n) {                                           \
        for (ptrdiff_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + exp_poly(-1.702f * x[i]));                  \
    }                                                                                                      \
    /* ½x(1 + tanh u) = x·σ(2u): the tanh form costs one exp, as QuickGELU does. */                       \
    ATTR static void gelu_tanh_##SUFFIX(float *x, ptrdiff_t n) {                                            \
        for (ptrdiff_t i = 0; i < n; i++) {                                                                \
            float v = x[i], u = 0.7978845608028654f * (v + 0.044715f * v * v * v);                         \
            x[i] = v / (1.0f + exp_poly(-2.0f * u));                                                       \
        }                                                                                                  \
    }                                                                                                      \
    ATTR static void gelu_##SUFFIX(float *x, ptrdiff_t n) {                                                 \
        for (ptrdiff_t i = 0; i < n; i++) x[i] *= normal_cdf(x[i]);                                        \
    }                                                                                                      \
    ATTR static void epilogue_##SUFFIX(float *c, ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols,                \
                                       const float *restrict bias, int act) {                              \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                             \
            float *restrict ci = c + r * ldc;                                                              \
            /* One pass per row: a bias pass stored in half-width vectors and re-read at full width by the */ \
            /* activation would stall on store forwarding. */                                              \
            if (act == CLIP_ACTIVATION_QUICK_GELU && bias) {                                               \
                for (ptrdiff_t j = 0; j < cols; j++) {                                                     \
                    float v = ci[j] + bias[j];                                                             \
                    ci[j] = v / (1.0f + exp_poly(-1.702f * v));                                            \
                }                                                                                          \
            } else if (act == CLIP_ACTIVATION_QUICK_GELU) {                                                \
                for (ptrdiff_t j = 0; j < cols; j++) ci[j] = ci[j] / (1.0f + exp_poly(-1.702f * ci[j]));   \
            } else if (act == CLIP_ACTIVATION_RELU) {                                                      \
                for (ptrdiff_t j = 0; j < cols; j++) {                                                     \
                    float v = bias ? ci[j] + bias[j] : ci[j];                                              \
                    ci[j] = v > 0.0f ? v : 0.0f;                                                           \
                }                                                                                          \
            } else if (bias) {                                                                             \
                for (ptrdiff_t j = 0; j < cols; j++) ci[j] += bias[j];                                     \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
    /* silu(g)·x = g·σ(g)·x, with g the first half of the row and x the second (timm's SwiGLU fc1_g, fc1_x). */ \
    ATTR static void swiglu_##SUFFIX(const float *restrict gx, ptrdiff_t hidden, float *restrict out) {          \
        for (ptrdiff_t i = 0; i < hidden; i++) {                                                           \
            float g = gx[i];                                                                               \
            out[i] = g / (1.0f + exp_poly(-g)) * gx[hidden + i];                                           \
        }                                                                                                  \
    }                                                                                                      \
    ATTR static void rotary_##SUFFIX(float *restrict x, ptrdiff_t n, const float *restrict s,                \
                                     const float *restrict c) {                                            \
        for (ptrdiff_t i = 0; i + 1 < n; i += 2) {                                                         \
            float a = x[i], b = x[i + 1];                                                                  \
            x[i] = a * c[i] - b * s[i];                                                                    \
            x[i + 1] = b * c[i + 1] + a * s[i + 1];                                                        \
        }                                                                                                  \
    }                                                                                                      \
    ATTR static void softmax_##SUFFIX(float *x, ptrdiff_t n) {                                              \
        float m = max_##SUFFIX(x, n);                                                                      \
        for (ptrdiff_t i = 0; i < n; i++) x[i] = exp_poly(x[i] - m);                                       \
        float inv = 1.0f / sum_##SUFFIX(x, n);                                                             \
        for (ptrdiff_t i = 0; i < n; i++) x[i] *= inv;                                                     \
    }                                                                                                      \
    ATTR static void layer_norm_##SUFFIX(const float *x, ptrdiff_t rows, ptrdiff_t w, const float *g,        \
                                         const float *b, float eps, float *out) {                          \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                             \
            const float *xr = x + r * w;                                                                   \
            float *o = out + r * w;                                                                        \
            float mean = sum_##SUFFIX(xr, w) / (float)w;                                                   \
            float q = squared_deviation_##SUFFIX(xr, w, mean);                                             \
            float inv = 1.0f / sqrtf(q / (float)w + eps);                                                  \
            for (ptrdiff_t i = 0; i < w; i++) o[i] = (xr[i] - mean) * inv * g[i] + b[i];                    \
        }                                                                                                  \
    }

KERNELS(generic, )
#if defined(__x86_64__) || defined(__i386__)
KERNELS(avx2, __attribute__((target("avx2,fma"))))
KERNELS(avx512, __attribute__((target("avx512f,avx512dq"))))
#endif

void clip_quick_gelu(float *x, ptrdiff_t n) {
    CLIP_CALL_BEST(quick_gelu, x, n);
}

void clip_epilogue_tile(float *c, ptrdiff_t ldc, ptrdiff_t rows, ptrdiff_t cols, const float *bias, int activation) {
    CLIP_CALL_BEST(epilogue, c, ldc, rows, cols, bias, activation);
    // The GELUs run as a pass over the tile, after the bias (the register tiles compute QuickGELU and ReLU only).
    if (activation == CLIP_ACTIVATION_GELU) {
        for (ptrdiff_t r = 0; r < rows; r++) clip_gelu(c + r * ldc, cols);
    } else if (activation == CLIP_ACTIVATION_GELU_TANH) {
        for (ptrdiff_t r = 0; r < rows; r++) clip_gelu_tanh(c + r * ldc, cols);
    }
}

void clip_gelu_tanh(float *x, ptrdiff_t n) {
    CLIP_CALL_BEST(gelu_tanh, x, n);
}

void clip_gelu(float *x, ptrdiff_t n) {
    CLIP_CALL_BEST(gelu, x, n);
}

void clip_softmax(float *x, ptrdiff_t n) {
    if (n <= 0) return;
    CLIP_CALL_BEST(softmax, x, n);
}

void clip_layer_norm(const float *x, ptrdiff_t rows, ptrdiff_t width, const float *gamma, const float *beta,
                     float eps, float *out) {
    if (width <= 0) return;
    CLIP_CALL_BEST(layer_norm, x, rows, width, gamma, beta, eps, out);
}

float clip_exp(float x) { return exp_poly(x); }

// Blocks of 1024 with a branch-free OR of "exponent all ones" (the compiler vectorises it); only a block that has
// one is searched for the first.
ptrdiff_t clip_first_non_finite(const float *x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i += 1024) {
        ptrdiff_t end = n - i < 1024 ? n : i + 1024;
        uint32_t bad = 0;
        for (ptrdiff_t j = i; j < end; j++) {
            uint32_t bits;
            memcpy(&bits, x + j, sizeof bits);
            bad |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (!bad) continue;
        for (ptrdiff_t j = i; j < end; j++) {
            uint32_t bits;
            memcpy(&bits, x + j, sizeof bits);
            if ((bits & 0x7f800000u) == 0x7f800000u) return j;
        }
    }
    return -1;
}

void clip_swiglu(const float *gx, ptrdiff_t rows, ptrdiff_t hidden, float *out) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *in = gx + r * 2 * hidden;
        float *o = out + r * hidden;
        CLIP_CALL_BEST(swiglu, in, hidden, o);
    }
}

void clip_rotary_interleaved(float *x, ptrdiff_t n, const float *sin, const float *cos) {
    CLIP_CALL_BEST(rotary, x, n, sin, cos);
}
