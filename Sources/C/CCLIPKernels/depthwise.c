// Depthwise convolution over channels-last images (ConvNeXt's and FastViT's token mixers, FastViT's stride-2
// downsampling). Channels are the vector lanes: each output pixel is a sum of k² input pixels times per-channel
// weights. Stride-1 3×3 and 7×7 windows run as strips of adjacent output pixels (below); every other window keeps
// 16 channels of four adjacent output pixels in registers while the window is walked, each weight vector loaded once
// for the four. The input comes zero-padded, so the window needs no bounds checks. Compiled once per ISA through target
// attributes (as elementwise.c) and at the baseline, which is NEON on arm64.
#include "CCLIPKernels.h"
#include "dispatch.h"

#include <string.h>

typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

// Unaligned vector moves as macros: a function returning v16f would change the ABI between the ISA variants.
#define LOAD16(v, p) memcpy(&(v), (p), sizeof(v16f))
#define STORE16(p, v) memcpy((p), &(v), sizeof(v16f))
#define LOADV(v, p) memcpy(&(v), (p), sizeof(v))
#define STOREV(p, v) memcpy((p), &(v), sizeof(v))

// Stride 1 with a K×K window (3 or 7: ConvNeXt's and FastViT's mixers): a strip of WD ≤ W adjacent output pixels
// for one vector of channels, with a window row's K weight vectors held in registers while that row's WD + K − 1
// input pixels slide past. Each input vector is loaded once per window row instead of once for every output pixel
// it touches, and each weight once per strip instead of once per 4 pixels: 7×7 at W = 8 is 21 loads per 56 FMAs
// where the 4-pixel loop below does 5 per 4, and the 7×7 mixers' time was bound by loads. W + K + 1 vectors are
// live: 16 for 7×7 at W = 8, half of AVX-512's registers and all 16 of AVX2's (SSE2 without FMA needs one more for
// the product and spills a little; W = 4 spills nothing but re-reads more lines, and was slower on both). Each
// output adds its terms in the same order as the loops below (window rows, then columns), so the sums are the same.
// One thread of an AMD Zen 4, against the 4-pixel loop on ConvNeXt's and MobileCLIP-S2's mixers (80-1,536 channels,
// 7-64 pixels square): AVX-512 1.4-3.3x; AVX2 1.0-1.9x, except 0.85-0.91x at 512 channels (cause not understood:
// 1,024 and 1,536 channels alias as badly and gain).
#define DEPTHWISE_STRIP(NAME, ATTR, VT, W, K)                                                                     \
    ATTR __attribute__((always_inline)) static inline void NAME(const int WD, const float *restrict x,           \
                                                                ptrdiff_t wp, ptrdiff_t c,                       \
                                                                const float *restrict wt,                        \
                                                                const float *restrict bias, ptrdiff_t oy,        \
                                                                ptrdiff_t ox, ptrdiff_t ch, float *restrict orow) { \
        VT acc[W], b;                                                                                              \
        LOADV(b, bias + ch);                                                                                       \
        _Pragma("clang loop unroll(full)") for (int t = 0; t < W; t++) if (t < WD) acc[t] = b;                   \
        for (ptrdiff_t dy = 0; dy < K; dy++) {                                                                     \
            const float *in = x + ((oy + dy) * wp + ox) * c + ch;                                                  \
            const float *w = wt + dy * K * c + ch;                                                                 \
            VT wv[K];                                                                                              \
            _Pragma("clang loop unroll(full)") for (int d = 0; d < K; d++) LOADV(wv[d], w + d * c);              \
            _Pragma("clang loop unroll(full)") for (int j = 0; j < W + K - 1; j++) {                              \
                if (j >= WD + K - 1) continue;                                                                     \
                VT iv;                                                                                             \
                LOADV(iv, in + j * c);                                                                             \
                _Pragma("clang loop unroll(full)") for (int t = 0; t < W; t++) {                                  \
                    if (t < WD && j - t >= 0 && j - t < K) acc[t] += iv * wv[j - t];                               \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
        _Pragma("clang loop unroll(full)") for (int t = 0; t < W; t++) {                                          \
            if (t < WD) STOREV(orow + (ox + t) * c + ch, acc[t]);                                                  \
        }                                                                                                          \
    }

// One output row's pixels [0, wo) by strips of W (the last strip narrower), channels [0, vec) by vectors of L.
#define DEPTHWISE_ROW(NAME, ATTR, STRIP, W, L)                                                                    \
    ATTR static void NAME(const float *x, ptrdiff_t wp, ptrdiff_t c, const float *wt, const float *bias,         \
                          ptrdiff_t oy, ptrdiff_t wo, ptrdiff_t vec, float *orow) {                              \
        ptrdiff_t ox = 0;                                                                                          \
        for (; ox + W <= wo; ox += W)                                                                              \
            for (ptrdiff_t ch = 0; ch < vec; ch += L) STRIP(W, x, wp, c, wt, bias, oy, ox, ch, orow);            \
        const ptrdiff_t rest = wo - ox;                                                                            \
        if (rest == 0) return;                                                                                     \
        for (ptrdiff_t ch = 0; ch < vec; ch += L) {                                                                \
            switch (rest) {                                                                                        \
            case 1: STRIP(1, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                        \
            case 2: STRIP(2, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                        \
            case 3: STRIP(3, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                        \
            case 4: STRIP(4, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                        \
            case 5: STRIP(5, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                        \
            case 6: STRIP(6, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                        \
            default: STRIP(7, x, wp, c, wt, bias, oy, ox, ch, orow); break;                                       \
            }                                                                                                      \
        }                                                                                                          \
    }

// Both windows for one ISA, VT vectors of L lanes, strips of 8 pixels.
#define DEPTHWISE_STRIPS(SUFFIX, ATTR, VT, L)                                                                     \
    DEPTHWISE_STRIP(strip7_##SUFFIX, ATTR, VT, 8, 7)                                                               \
    DEPTHWISE_STRIP(strip3_##SUFFIX, ATTR, VT, 8, 3)                                                               \
    DEPTHWISE_ROW(row7_##SUFFIX, ATTR, strip7_##SUFFIX, 8, L)                                                      \
    DEPTHWISE_ROW(row3_##SUFFIX, ATTR, strip3_##SUFFIX, 8, L)

#define DEPTHWISE(SUFFIX, ATTR)                                                                                    \
    ATTR static void depthwise_##SUFFIX(const float *x, ptrdiff_t wp, ptrdiff_t c, const float *wt,                \
                                        const float *bias, ptrdiff_t k, ptrdiff_t s, ptrdiff_t y0, ptrdiff_t y1,   \
                                        ptrdiff_t wo, float *out) {                                                \
        const ptrdiff_t vec = c - c % 16, step = s * c;                                                            \
        for (ptrdiff_t oy = y0; oy < y1; oy++) {                                                                   \
            float *orow = out + oy * wo * c;                                                                       \
            ptrdiff_t ox = 0;                                                                                      \
            if (s == 1 && (k == 7 || k == 3)) {                                                                    \
                if (k == 7) row7_##SUFFIX(x, wp, c, wt, bias, oy, wo, vec, orow);                                  \
                else row3_##SUFFIX(x, wp, c, wt, bias, oy, wo, vec, orow);                                         \
                ox = wo;                                                                                           \
            }                                                                                                      \
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

DEPTHWISE_STRIPS(generic, , v4f, 4)
DEPTHWISE(generic, )
#if defined(__x86_64__) || defined(__i386__)
DEPTHWISE_STRIPS(avx2, __attribute__((target("avx2,fma"))), v8f, 8)
DEPTHWISE(avx2, __attribute__((target("avx2,fma"))))
DEPTHWISE_STRIPS(avx512, __attribute__((target("avx512f,avx512dq"))), v16f, 16)
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
