// Depthwise convolution over channels-last images (ConvNeXt's and FastViT's token mixers, FastViT's stride-2
// downsampling). Channels are the vector
// lanes: each output pixel is a sum of k² input pixels times per-channel weights, so 16 channels of four adjacent
// output pixels are kept in registers while the kernel window is walked, and each weight vector is loaded once for
// the four. The input comes zero-padded, so the window needs no bounds checks. Compiled once per ISA through target
// attributes (as elementwise.c) and at the baseline, which is NEON on arm64.
#include "CCLIPKernels.h"
#include "dispatch.h"

#include <string.h>

typedef float v16f __attribute__((vector_size(64)));

// Unaligned vector moves as macros: a function returning v16f would change the ABI between the ISA variants.
#define LOAD16(v, p) memcpy(&(v), (p), sizeof(v16f))
#define STORE16(p, v) memcpy((p), &(v), sizeof(v16f))

#define DEPTHWISE(SUFFIX, ATTR)                                                                                    \
    ATTR static void depthwise_##SUFFIX(const float *x, ptrdiff_t wp, ptrdiff_t c, const float *wt,                \
                                        const float *bias, ptrdiff_t k, ptrdiff_t s, ptrdiff_t y0, ptrdiff_t y1,   \
                                        ptrdiff_t wo, float *out) {                                                \
        const ptrdiff_t vec = c - c % 16, step = s * c;                                                            \
        for (ptrdiff_t oy = y0; oy < y1; oy++) {                                                                   \
            float *orow = out + oy * wo * c;                                                                       \
            ptrdiff_t ox = 0;                                                                                      \
            for (; ox + 4 <= wo; ox += 4) {                                                                        \
                for (ptrdiff_t ch = 0; ch < vec; ch += 16) {                                                       \
                    v16f a0, a1, a2, a3;                                                                           \
                    LOAD16(a0, bias + ch);                                                                         \
                    a1 = a0, a2 = a0, a3 = a0;                                                                     \
                    for (ptrdiff_t dy = 0; dy < k; dy++) {                                                         \
                        const float *in = x + ((oy * s + dy) * wp + ox * s) * c + ch;                              \
                        const float *w = wt + dy * k * c + ch;                                                     \
                        for (ptrdiff_t dx = 0; dx < k; dx++) {                                                     \
                            v16f wv, i0, i1, i2, i3;                                                               \
                            LOAD16(wv, w + dx * c);                                                                \
                            LOAD16(i0, in + dx * c);                                                               \
                            LOAD16(i1, in + dx * c + step);                                                        \
                            LOAD16(i2, in + dx * c + 2 * step);                                                    \
                            LOAD16(i3, in + dx * c + 3 * step);                                                    \
                            a0 += i0 * wv;                                                                         \
                            a1 += i1 * wv;                                                                         \
                            a2 += i2 * wv;                                                                         \
                            a3 += i3 * wv;                                                                         \
                        }                                                                                          \
                    }                                                                                              \
                    STORE16(orow + ox * c + ch, a0);                                                               \
                    STORE16(orow + (ox + 1) * c + ch, a1);                                                         \
                    STORE16(orow + (ox + 2) * c + ch, a2);                                                         \
                    STORE16(orow + (ox + 3) * c + ch, a3);                                                         \
                }                                                                                                  \
            }                                                                                                      \
            for (; ox < wo; ox++) {                                                                                \
                for (ptrdiff_t ch = 0; ch < vec; ch += 16) {                                                       \
                    v16f a, iv, wv;                                                                                \
                    LOAD16(a, bias + ch);                                                                          \
                    for (ptrdiff_t dy = 0; dy < k; dy++) {                                                         \
                        const float *in = x + ((oy * s + dy) * wp + ox * s) * c + ch;                              \
                        const float *w = wt + dy * k * c + ch;                                                     \
                        for (ptrdiff_t dx = 0; dx < k; dx++) {                                                     \
                            LOAD16(iv, in + dx * c);                                                               \
                            LOAD16(wv, w + dx * c);                                                                \
                            a += iv * wv;                                                                          \
                        }                                                                                          \
                    }                                                                                              \
                    STORE16(orow + ox * c + ch, a);                                                                \
                }                                                                                                  \
            }                                                                                                      \
            /* Channels past the last multiple of 16, one at a time. */                                           \
            for (ptrdiff_t ch = vec; ch < c; ch++) {                                                               \
                for (ptrdiff_t ox2 = 0; ox2 < wo; ox2++) {                                                         \
                    float a = bias[ch];                                                                            \
                    for (ptrdiff_t dy = 0; dy < k; dy++) {                                                         \
                        const float *in = x + ((oy * s + dy) * wp + ox2 * s) * c + ch;                             \
                        const float *w = wt + dy * k * c + ch;                                                     \
                        for (ptrdiff_t dx = 0; dx < k; dx++) a += in[dx * c] * w[dx * c];                          \
                    }                                                                                              \
                    orow[ox2 * c + ch] = a;                                                                        \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

DEPTHWISE(generic, )
#if defined(__x86_64__) || defined(__i386__)
DEPTHWISE(avx2, __attribute__((target("avx2,fma"))))
DEPTHWISE(avx512, __attribute__((target("avx512f,avx512dq"))))
#endif

void clip_depthwise_conv2d(const float *x, ptrdiff_t padded_width, ptrdiff_t channels, const float *weight,
                           const float *bias, ptrdiff_t kernel, ptrdiff_t y0, ptrdiff_t y1, ptrdiff_t out_width,
                           float *out) {
    clip_depthwise_conv2d_strided(x, padded_width, channels, weight, bias, kernel, 1, y0, y1, out_width, out);
}

void clip_depthwise_conv2d_strided(const float *x, ptrdiff_t padded_width, ptrdiff_t channels, const float *weight,
                                   const float *bias, ptrdiff_t kernel, ptrdiff_t stride, ptrdiff_t y0, ptrdiff_t y1,
                                   ptrdiff_t out_width, float *out) {
    if (channels <= 0 || kernel <= 0 || stride <= 0 || out_width <= 0 || y1 <= y0) return;
    CLIP_CALL_BEST(depthwise, x, padded_width, channels, weight, bias, kernel, stride, y0, y1, out_width, out);
}
