// The C kernels tested on their own, without Swift: built natively and cross-compiled for arm64 and run under
// qemu-user by Scripts/ci/test_kernels.sh, so the NEON kernels are proven on a machine that cannot run arm64 Swift.
// The cases mirror the Swift kernel tests (Tests/CLIPTensorTests): odd shapes around every tile and block size,
// edge tiles, epilogues, implicit im2col, attention, int8, and the element-wise kernels. Every kernel the CPU has
// (as CLIP_CPU allows) is checked against a double-precision reference or against the portable kernel.
//
// Exit code 0 when every check passes; each failure prints one line.
#include "CCLIPKernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        checks++;                                                                                                    \
        if (!(cond)) {                                                                                               \
            failures++;                                                                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                              \
            printf(__VA_ARGS__);                                                                                     \
            printf("\n");                                                                                            \
        }                                                                                                            \
    } while (0)

// SplitMix64: deterministic values in [-1, 1), as the Swift tests draw them.
static uint64_t rng_state;
static float next_value(void) {
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static float *random_array(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = next_value();
    return p;
}

static const char *kernel_name(int k) {
    switch (k) {
    case CLIP_GEMM_PORTABLE: return "portable";
    case CLIP_GEMM_AVX2: return "avx2";
    case CLIP_GEMM_AVX512: return "avx512";
    case CLIP_GEMM_NEON: return "neon";
    default: return "auto";
    }
}

static const int all_kernels[] = {CLIP_GEMM_PORTABLE, CLIP_GEMM_AVX2, CLIP_GEMM_AVX512, CLIP_GEMM_NEON};
enum { KERNEL_COUNT = sizeof all_kernels / sizeof all_kernels[0] };

// Shapes around every kernel's tile and block sizes (MR 4/6/8/12, NR 8/12/16/32, KC 384, NC 2048).
static const ptrdiff_t gemm_shapes[][3] = {
    {1, 1, 1}, {3, 5, 7}, {12, 32, 384}, {13, 33, 385}, {50, 50, 64}, {77, 64, 300}, {9, 40, 1153},
    {25, 3072, 17}, {100, 2100, 40}, {7, 9, 600}, {64, 1, 513}, {1, 100, 3}, {8, 12, 5}, {17, 25, 9},
    {205, 70, 400},
};
enum { SHAPE_COUNT = sizeof gemm_shapes / sizeof gemm_shapes[0] };

static void test_sgemm(int kernel) {
    for (int s = 0; s < SHAPE_COUNT; s++) {
        const ptrdiff_t m = gemm_shapes[s][0], n = gemm_shapes[s][1], k = gemm_shapes[s][2];
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                const float alpha = tb ? 0.5f : 1.0f, beta = ta ? -1.25f : 0.0f;
                const ptrdiff_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
                float *a = random_array((size_t)((ta ? k : m) * lda)), *b = random_array((size_t)((tb ? n : k) * ldb));
                float *c = random_array((size_t)(m * ldc)), *c0 = malloc((size_t)(m * ldc) * sizeof(float));
                memcpy(c0, c, (size_t)(m * ldc) * sizeof(float));
                int rc = clip_sgemm(kernel, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                CHECK(rc == 0, "%s sgemm rc %d", kernel_name(kernel), rc);
                double worst = 0;
                int padding_touched = 0;
                for (ptrdiff_t i = 0; i < m; i++) {
                    for (ptrdiff_t j = 0; j < n; j++) {
                        double acc = 0;
                        for (ptrdiff_t p = 0; p < k; p++) {
                            acc += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
                        }
                        const double ref = alpha * acc + beta * (double)c0[i * ldc + j];
                        const double err = fabs(ref - c[i * ldc + j]) / (sqrt((double)k) + 1);
                        worst = err > worst ? err : worst;
                    }
                    for (ptrdiff_t j = n; j < ldc; j++) padding_touched |= c[i * ldc + j] != c0[i * ldc + j];
                }
                CHECK(worst < 1e-5, "%s sgemm m=%td n=%td k=%td ta=%d tb=%d: error %g", kernel_name(kernel), m, n, k,
                      ta, tb, worst);
                CHECK(!padding_touched, "%s sgemm wrote past n (m=%td n=%td k=%td)", kernel_name(kernel), m, n, k);
                free(a); free(b); free(c); free(c0);
            }
        }
    }
}

// C = A · Wᵀ with W [n, k] packed for `kernel`, the way Linear layers run.
static float *packed_product(int kernel, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, const float *w,
                             const float *bias, int activation, const float *c_in) {
    float *packed = malloc((size_t)(clip_packed_b_count(kernel, k, n) + 1) * sizeof(float));
    clip_pack_b(kernel, 1, k, n, w, k, packed);
    float *c = malloc((size_t)(m * n + 1) * sizeof(float));
    if (c_in) memcpy(c, c_in, (size_t)(m * n) * sizeof(float));
    const clip_epilogue ep = {bias, activation};
    const int use_ep = bias || activation;
    int rc = clip_sgemm_packed(kernel, 0, m, n, k, 1.0f, a, k, packed, 0, n, c_in ? 1.0f : 0.0f, c, n,
                               use_ep ? &ep : NULL);
    CHECK(rc == 0, "%s packed rc %d", kernel_name(kernel), rc);
    free(packed);
    return c;
}

static double quick_gelu(double x) { return x / (1.0 + exp(-1.702 * x)); }
static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double gelu_tanh(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

// Packed products equal plain SGEMM bitwise, and the fused epilogue equals separate passes (bias bitwise, the
// activations within 4e-7 relative: the kernels evaluate the exponentials (QuickGELU, the GELUs' normal CDF and
// sigmoid) by polynomial).
static void test_packed(int kernel) {
    // {5, 2900, 800}: a 384-deep slice of 2,900 packed columns (4.5 MB) exceeds any core's L2 budget (at most 4 MiB),
    // so the column blocks of the packed loop are crossed.
    static const ptrdiff_t shapes[][3] = {{1, 1, 1}, {13, 70, 800}, {50, 100, 64}, {33, 17, 300}, {9, 33, 1601},
                                          {4, 5, 0}, {7, 25, 385}, {5, 2900, 800}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const ptrdiff_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = random_array((size_t)(m * k)), *w = random_array((size_t)(n * k)), *bias = random_array((size_t)n);
        float *c_in = random_array((size_t)(m * n));
        for (int acc = 0; acc < 2; acc++) {
            float *plain = malloc((size_t)(m * n + 1) * sizeof(float));
            memcpy(plain, c_in, (size_t)(m * n) * sizeof(float));
            clip_sgemm(kernel, 0, 1, m, n, k, 1.0f, a, k, w, k, acc ? 1.0f : 0.0f, plain, n);
            float *fast = packed_product(kernel, m, n, k, a, w, NULL, 0, acc ? c_in : NULL);
            CHECK(memcmp(plain, fast, (size_t)(m * n) * sizeof(float)) == 0,
                  "%s packed != plain m=%td n=%td k=%td acc=%d", kernel_name(kernel), m, n, k, acc);
            for (int act = 0; act <= CLIP_ACTIVATION_GELU_TANH; act++) {
                float *fused = packed_product(kernel, m, n, k, a, w, bias, act, acc ? c_in : NULL);
                int differing = 0;
                for (ptrdiff_t i = 0; i < m; i++) {
                    for (ptrdiff_t j = 0; j < n; j++) {
                        const float x = fast[i * n + j] + bias[j];
                        double want = x;
                        if (act == CLIP_ACTIVATION_QUICK_GELU) want = quick_gelu(x);
                        if (act == CLIP_ACTIVATION_GELU) want = gelu(x);
                        if (act == CLIP_ACTIVATION_GELU_TANH) want = gelu_tanh(x);
                        if (act == CLIP_ACTIVATION_RELU) want = x > 0 ? x : 0;
                        const double tol = act == CLIP_ACTIVATION_NONE || act == CLIP_ACTIVATION_RELU ? 0 : 4e-7;
                        const double got = fused[i * n + j];
                        if (fabs(got - want) > tol * (fabs(want) > 1 ? fabs(want) : 1)) differing++;
                    }
                }
                CHECK(differing == 0, "%s epilogue %d m=%td n=%td k=%td acc=%d: %d differ", kernel_name(kernel), act,
                      m, n, k, acc, differing);
                free(fused);
            }
            free(plain);
            free(fast);
        }
        free(a); free(w); free(bias); free(c_in);
    }
}

// The implicit im2col equals an explicit im2col buffer multiplied by the same packed weights, bitwise.
static void test_conv(int kernel) {
    static const ptrdiff_t geometries[][6] = {
        // size, channels, out, kernel, stride, padding
        {14, 32, 64, 3, 1, 1}, {9, 16, 40, 3, 2, 1}, {11, 3, 32, 3, 2, 1}, {7, 24, 33, 3, 1, 0}, {8, 48, 16, 5, 1, 2},
        {6, 8, 12, 1, 1, 0}, {10, 4, 20, 3, 1, 1},
    };
    for (size_t s = 0; s < sizeof geometries / sizeof geometries[0]; s++) {
        const ptrdiff_t size = geometries[s][0], ch = geometries[s][1], out = geometries[s][2];
        const ptrdiff_t kk = geometries[s][3], stride = geometries[s][4], pad = geometries[s][5];
        const ptrdiff_t ho = (size + 2 * pad - kk) / stride + 1, wo = ho, kdim = kk * kk * ch, pixels = ho * wo;
        float *image = random_array((size_t)(size * size * ch)), *w = random_array((size_t)(out * kdim));
        float *bias = random_array((size_t)out);
        float *col = calloc((size_t)(pixels * kdim), sizeof(float));
        for (ptrdiff_t oy = 0; oy < ho; oy++) {
            for (ptrdiff_t ox = 0; ox < wo; ox++) {
                for (ptrdiff_t dy = 0; dy < kk; dy++) {
                    for (ptrdiff_t dx = 0; dx < kk; dx++) {
                        const ptrdiff_t iy = oy * stride + dy - pad, ix = ox * stride + dx - pad;
                        if (iy < 0 || iy >= size || ix < 0 || ix >= size) continue;
                        memcpy(col + (oy * wo + ox) * kdim + (dy * kk + dx) * ch, image + (iy * size + ix) * ch,
                               (size_t)ch * sizeof(float));
                    }
                }
            }
        }
        float *packed = malloc((size_t)(clip_packed_b_count(kernel, kdim, out) + 1) * sizeof(float));
        clip_pack_b(kernel, 1, kdim, out, w, kdim, packed);
        const clip_epilogue ep = {bias, CLIP_ACTIVATION_RELU};
        float *explicit_c = malloc((size_t)(pixels * out) * sizeof(float));
        float *implicit_c = malloc((size_t)(pixels * out) * sizeof(float));
        clip_sgemm_packed(kernel, 0, pixels, out, kdim, 1.0f, col, kdim, packed, 0, out, 0.0f, explicit_c, out, &ep);
        const clip_conv_geometry g = {image, size, size, ch, kk, stride, pad, ho, wo, 0};
        // Two row ranges, as two threads would take them.
        const ptrdiff_t half = pixels / 2;
        int rc = clip_conv_packed(kernel, &g, 0, half, out, packed, 0, out, implicit_c, out, &ep);
        rc |= clip_conv_packed(kernel, &g, half, pixels - half, out, packed, 0, out, implicit_c + half * out, out, &ep);
        CHECK(rc == 0, "%s conv rc %d", kernel_name(kernel), rc);
        CHECK(memcmp(explicit_c, implicit_c, (size_t)(pixels * out) * sizeof(float)) == 0,
              "%s implicit im2col != explicit (size %td channels %td kernel %td stride %td)", kernel_name(kernel),
              size, ch, kk, stride);
        free(image); free(w); free(bias); free(col); free(packed); free(explicit_c); free(implicit_c);
    }
}

// softmax(scale · Q·Kᵀ) · V per head in double precision, from a fused [tokens, 3·width] buffer.
static void test_attention(int kernel) {
    static const int cases[][4] = {
        // tokens, head dim, heads, causal: around the 6-row tiles and 4/8/16-lane vectors.
        {1, 64, 2, 0}, {5, 8, 3, 1}, {17, 24, 2, 0}, {50, 64, 3, 0}, {50, 32, 2, 1}, {77, 64, 2, 1}, {197, 80, 2, 0},
        {70, 72, 1, 1}, {3, 5, 2, 0},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const ptrdiff_t tokens = cases[s][0], hd = cases[s][1], heads = cases[s][2];
        const int causal = cases[s][3];
        const ptrdiff_t w = hd * heads, ld = 3 * w;
        float *qkv = random_array((size_t)(tokens * ld));
        for (ptrdiff_t i = 0; i < tokens * ld; i++) qkv[i] *= 3;  // far from uniform
        float *out = malloc((size_t)(tokens * w + 16) * sizeof(float));
        for (ptrdiff_t i = 0; i < tokens * w + 16; i++) out[i] = NAN;
        const float scale = 1.0f / sqrtf((float)hd);
        for (ptrdiff_t h = 0; h < heads; h++) {
            const float *q = qkv + h * hd;
            int rc = clip_attention_head(kernel, tokens, hd, scale, causal, q, q + w, q + 2 * w, ld, out + h * hd, w);
            CHECK(rc == 0, "%s attention rc %d", kernel_name(kernel), rc);
        }
        double err = 0, norm = 0;
        double *scores = malloc((size_t)tokens * sizeof(double));
        for (ptrdiff_t h = 0; h < heads; h++) {
            for (ptrdiff_t i = 0; i < tokens; i++) {
                const ptrdiff_t valid = causal ? i + 1 : tokens;
                double top = -INFINITY, total = 0;
                for (ptrdiff_t j = 0; j < valid; j++) {
                    double dot = 0;
                    for (ptrdiff_t d = 0; d < hd; d++) dot += (double)qkv[i * ld + h * hd + d] * qkv[j * ld + w + h * hd + d];
                    scores[j] = dot * scale;
                    top = scores[j] > top ? scores[j] : top;
                }
                for (ptrdiff_t j = 0; j < valid; j++) total += scores[j] = exp(scores[j] - top);
                for (ptrdiff_t d = 0; d < hd; d++) {
                    double ref = 0;
                    for (ptrdiff_t j = 0; j < valid; j++) ref += scores[j] / total * qkv[j * ld + 2 * w + h * hd + d];
                    const double diff = out[i * w + h * hd + d] - ref;
                    err += diff * diff;
                    norm += ref * ref;
                }
            }
        }
        CHECK(sqrt(err / norm) <= 1e-6, "%s attention tokens %td hd %td causal %d: relative error %g",
              kernel_name(kernel), tokens, hd, causal, sqrt(err / norm));
        int sentinels = 1;
        for (ptrdiff_t i = tokens * w; i < tokens * w + 16; i++) sentinels &= isnan(out[i]);
        CHECK(sentinels, "%s attention wrote past its output", kernel_name(kernel));
        free(qkv); free(out); free(scores);
    }
    float buf[64] = {0};
    CHECK(clip_attention_head(kernel, 2, 8, 1, 0, buf, buf, buf, 4, buf, 8) != 0, "ld < head dim accepted");
}

// Codes and scale as every int8 kernel quantises: scale max|v|/127, round half to even, clamp to ±127.
static float quantised(const float *v, ptrdiff_t n, ptrdiff_t stride, int *codes) {
    float m = 0;
    for (ptrdiff_t i = 0; i < n; i++) m = fabsf(v[i * stride]) > m ? fabsf(v[i * stride]) : m;
    for (ptrdiff_t i = 0; i < n; i++) {
        float q = m > 0 ? nearbyintf(v[i * stride] * (127.0f / m)) : 0;
        codes[i] = q > 127 ? 127 : (q < -127 ? -127 : (int)q);
    }
    return m / 127.0f;
}

static float *int8_product(int kernel, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, const float *w,
                           const clip_epilogue *ep) {
    const ptrdiff_t bytes = clip_packed_b_int8_bytes(kernel, k, n), cols = clip_packed_b_int8_columns(kernel, n);
    int8_t *codes = malloc((size_t)bytes + 1);
    float *scales = malloc((size_t)cols * sizeof(float) + 4);
    int32_t *sums = malloc((size_t)cols * sizeof(int32_t) + 4);
    clip_pack_b_int8(kernel, 1, k, n, w, k, codes, scales, sums);
    float *c = malloc((size_t)(m * n + 1) * sizeof(float));
    int rc = clip_gemm_packed_int8(kernel, m, n, k, a, k, codes, scales, sums, 0, n, 0.0f, c, n, ep);
    CHECK(rc == 0, "%s int8 rc %d", kernel_name(kernel), rc);
    free(codes); free(scales); free(sums);
    return c;
}

static void test_int8(int kernel, int reference_kernel) {
    static const ptrdiff_t shapes[][3] = {{1, 1, 1}, {7, 100, 513}, {50, 230, 768}, {33, 17, 301}, {13, 64, 256},
                                          {200, 160, 129}, {5, 30, 2}, {9, 12, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const ptrdiff_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = random_array((size_t)(m * k)), *w = random_array((size_t)(n * k));
        float *c = int8_product(kernel, m, n, k, a, w, NULL);
        int *ra = malloc((size_t)(m * k) * sizeof(int)), *rw = malloc((size_t)(n * k) * sizeof(int));
        float *sa = malloc((size_t)m * sizeof(float)), *sw = malloc((size_t)n * sizeof(float));
        for (ptrdiff_t i = 0; i < m; i++) sa[i] = quantised(a + i * k, k, 1, ra + i * k);
        for (ptrdiff_t j = 0; j < n; j++) sw[j] = quantised(w + j * k, k, 1, rw + j * k);
        double worst = 0;
        for (ptrdiff_t i = 0; i < m; i++) {
            for (ptrdiff_t j = 0; j < n; j++) {
                long sum = 0;
                for (ptrdiff_t p = 0; p < k; p++) sum += (long)ra[i * k + p] * rw[j * k + p];
                const double want = (double)sum * sa[i] * sw[j];
                const double err = fabs(want - c[i * n + j]) / (fabs(want) + 1e-3);
                worst = err > worst ? err : worst;
            }
        }
        CHECK(worst < 1e-5, "%s int8 m=%td n=%td k=%td: error %g", kernel_name(kernel), m, n, k, worst);
        if (reference_kernel >= 0 && reference_kernel != kernel) {
            float *other = int8_product(reference_kernel, m, n, k, a, w, NULL);
            CHECK(memcmp(c, other, (size_t)(m * n) * sizeof(float)) == 0, "int8 %s != %s bitwise (m=%td n=%td k=%td)",
                  kernel_name(kernel), kernel_name(reference_kernel), m, n, k);
            free(other);
        }
        // The epilogue through the int8 store.
        float *bias = random_array((size_t)n);
        const clip_epilogue ep = {bias, CLIP_ACTIVATION_QUICK_GELU};
        float *fused = int8_product(kernel, m, n, k, a, w, &ep);
        int differing = 0;
        for (ptrdiff_t i = 0; i < m * n; i++) {
            const double want = quick_gelu((double)(c[i] + bias[i % n]));
            if (fabs(fused[i] - want) > 4e-7 * (fabs(want) > 1 ? fabs(want) : 1)) differing++;
        }
        CHECK(differing == 0, "%s int8 epilogue m=%td n=%td k=%td: %d differ", kernel_name(kernel), m, n, k,
              differing);
        free(a); free(w); free(c); free(ra); free(rw); free(sa); free(sw); free(bias); free(fused);
    }
}

static void test_elementwise(void) {
    double worst = 0;
    for (float x = -87; x < 88; x += 0.0137f) {
        const double r = exp((double)x);
        const double e = fabs(clip_exp(x) - r) / r;
        worst = e > worst ? e : worst;
    }
    CHECK(worst < 3e-7, "exp: relative error %g", worst);
    const ptrdiff_t rows = 5, width = 77;
    float *x = random_array((size_t)(rows * width)), *g = random_array((size_t)width), *b = random_array((size_t)width);
    float *out = malloc((size_t)(rows * width) * sizeof(float));
    clip_layer_norm(x, rows, width, g, b, 1e-5f, out);
    worst = 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (ptrdiff_t i = 0; i < width; i++) mean += x[r * width + i];
        mean /= width;
        for (ptrdiff_t i = 0; i < width; i++) var += (x[r * width + i] - mean) * (x[r * width + i] - mean);
        var /= width;
        for (ptrdiff_t i = 0; i < width; i++) {
            const double want = (x[r * width + i] - mean) / sqrt(var + 1e-5) * g[i] + b[i];
            const double e = fabs(out[r * width + i] - want);
            worst = e > worst ? e : worst;
        }
    }
    CHECK(worst < 1e-5, "layer norm: error %g", worst);
    memcpy(out, x, (size_t)width * sizeof(float));
    clip_softmax(out, width);
    double top = -INFINITY, total = 0;
    for (ptrdiff_t i = 0; i < width; i++) top = x[i] > top ? x[i] : top;
    for (ptrdiff_t i = 0; i < width; i++) total += exp(x[i] - top);
    worst = 0;
    for (ptrdiff_t i = 0; i < width; i++) {
        const double e = fabs(out[i] - exp(x[i] - top) / total);
        worst = e > worst ? e : worst;
    }
    CHECK(worst < 1e-7, "softmax: error %g", worst);
    free(x); free(g); free(b); free(out);

    // Exact GELU (clip_gelu, at the level CLIP_CPU selects) over the whole range: every argument of its reciprocal's
    // Newton steps, the cut past |x| = 16·√2 and beyond, to ±1e38; within 4e-7 of double, absolute below 1.
    {
        enum { count = 8192 + 6 };
        float *v = malloc(count * sizeof(float)), *want_in = malloc(count * sizeof(float));
        for (int i = 0; i < 8192; i++) v[i] = -40.0f + 80.0f * (float)i / 8191.0f;
        const float extremes[] = {-1e38f, -3e30f, -23.0f, 23.0f, 1e30f, 1e38f};
        for (int i = 0; i < 6; i++) v[8192 + i] = extremes[i];
        memcpy(want_in, v, count * sizeof(float));
        clip_gelu(v, count);
        worst = 0;
        for (int i = 0; i < count; i++) {
            const double x = want_in[i], want = 0.5 * x * erfc(-x / sqrt(2.0));
            const double e = fabs(v[i] - want) / (fabs(want) > 1 ? fabs(want) : 1);
            worst = e > worst ? e : worst;
        }
        CHECK(worst < 4e-7, "gelu: error %g", worst);
        free(v); free(want_in);
    }

    // SwiGLU on hidden widths around the vector lengths, gates spanning the exp clamp; rotary on odd pair counts.
    const ptrdiff_t hiddens[] = {1, 7, 16, 33, 2730};
    for (size_t c = 0; c < sizeof hiddens / sizeof hiddens[0]; c++) {
        const ptrdiff_t h = hiddens[c], n = 3;
        float *gx = random_array((size_t)(n * 2 * h)), *y = malloc((size_t)(n * h) * sizeof(float));
        for (ptrdiff_t i = 0; i < n * 2 * h; i += 5) gx[i] *= 120.0f;
        clip_swiglu(gx, n, h, y);
        worst = 0;
        for (ptrdiff_t r = 0; r < n; r++) {
            for (ptrdiff_t i = 0; i < h; i++) {
                const double gate = gx[r * 2 * h + i], v = gx[r * 2 * h + h + i];
                const double want = gate / (1.0 + exp(-gate)) * v;
                // Below 1e-20 only the absolute error counts: exp's clamp at 88.3 leaves silu(-100) at -5e-37.
                const double e = fabs(y[r * h + i] - want) / fmax(fabs(want), 1e-20);
                worst = e > worst ? e : worst;
            }
        }
        CHECK(worst < 1e-6, "swiglu hidden %td: relative error %g", h, worst);
        free(gx); free(y);
    }
    const ptrdiff_t dims[] = {2, 8, 14, 34, 64, 112};
    for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++) {
        const ptrdiff_t d = dims[c];
        float *v = random_array((size_t)d), *s = random_array((size_t)d), *co = random_array((size_t)d);
        float *rotated = malloc((size_t)d * sizeof(float));
        memcpy(rotated, v, (size_t)d * sizeof(float));
        clip_rotary_interleaved(rotated, d, s, co);
        worst = 0;
        for (ptrdiff_t i = 0; i < d; i += 2) {
            const double a = v[i], b = v[i + 1];
            const double e0 = fabs(rotated[i] - (a * co[i] - b * s[i]));
            const double e1 = fabs(rotated[i + 1] - (b * co[i + 1] + a * s[i + 1]));
            worst = e0 > worst ? e0 : worst;
            worst = e1 > worst ? e1 : worst;
        }
        CHECK(worst < 1e-6, "rotary %td values: error %g", d, worst);
        free(v); free(s); free(co); free(rotated);
    }
}

// The training kernels against the scalar loops they replaced, bitwise: on x86-64, whatever the CPU level, a training
// run must round every value as the baseline build did (see backward.c). These references are those loops, with
// contraction off as there. On random rows LayerNorm's double sums of floats are exact or within an ulp that the
// float results erase, so its second case plants huge terms that cancel only across partial sums: a term sent to
// the wrong row or partial sum then changes the output (mutants that swap two rows' mean lanes or the gradient sums'
// halves fail it; swapping the variance's two halves is the same sum).
#pragma float_control(push)
#pragma clang fp contract(off)
static void quick_gelu_backward_reference(const float *z, const float *h, float *dh, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float s = fabsf(z[i]) > 1e-3f ? h[i] / z[i] : 0.5f + 0.4255f * z[i];
        dh[i] *= s + 1.702f * h[i] * (1.0f - s);
    }
}

static double row_sum_reference(const float *x, ptrdiff_t n) {
    double a = 0, b = 0, c = 0, d = 0;
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) { a += x[i]; b += x[i + 1]; c += x[i + 2]; d += x[i + 3]; }
    for (; i < n; i++) a += x[i];
    return (a + b) + (c + d);
}

static void layer_norm_backward_reference(const float *x, const float *dy, ptrdiff_t rows, ptrdiff_t w,
                                          const float *gamma, float eps, float *dx, float *dgamma, float *dbeta) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * w, *dyr = dy + r * w;
        float *dxr = dx + r * w;
        double mean = row_sum_reference(xr, w) / (double)w;
        double v0 = 0, v1 = 0;
        ptrdiff_t i = 0;
        for (; i + 2 <= w; i += 2) {
            double a = xr[i] - mean, b = xr[i + 1] - mean;
            v0 += a * a;
            v1 += b * b;
        }
        for (; i < w; i++) { double a = xr[i] - mean; v0 += a * a; }
        float rstd = (float)(1.0 / sqrt((v0 + v1) / (double)w + (double)eps));
        float m = (float)mean;
        double sg0 = 0, sg1 = 0, sgx0 = 0, sgx1 = 0;
        for (i = 0; i + 2 <= w; i += 2) {
            float xh0 = (xr[i] - m) * rstd, xh1 = (xr[i + 1] - m) * rstd;
            float g0 = dyr[i] * gamma[i], g1 = dyr[i + 1] * gamma[i + 1];
            sg0 += g0; sg1 += g1; sgx0 += g0 * xh0; sgx1 += g1 * xh1;
        }
        for (; i < w; i++) {
            float xh = (xr[i] - m) * rstd, g = dyr[i] * gamma[i];
            sg0 += g; sgx0 += g * xh;
        }
        float mg = (float)((sg0 + sg1) / (double)w), mgx = (float)((sgx0 + sgx1) / (double)w);
        for (i = 0; i < w; i++) {
            float xh = (xr[i] - m) * rstd;
            dgamma[i] += dyr[i] * xh;
            dbeta[i] += dyr[i];
            dxr[i] = rstd * (dyr[i] * gamma[i] - mg - xh * mgx);
        }
    }
}

static void adamw_reference(float *p, const float *g, float *m, float *v, ptrdiff_t n, float beta1, float beta2,
                            float decay, float step_size, float c2_root, float eps) {
    for (ptrdiff_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        p[i] = p[i] * decay - step_size * m[i] / (sqrtf(v[i]) / c2_root + eps);
    }
}
#pragma float_control(pop)

static int bitwise_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void run_layer_norm_backward_case(const float *x, const float *dy, const float *gamma, ptrdiff_t rows,
                                         ptrdiff_t w, const char *what) {
    const ptrdiff_t n = rows * w;
    float *dx = malloc((size_t)n * sizeof(float)), *want_dx = malloc((size_t)n * sizeof(float));
    float *dg = random_array((size_t)w), *db = random_array((size_t)w);
    float *want_dg = malloc((size_t)w * sizeof(float)), *want_db = malloc((size_t)w * sizeof(float));
    memcpy(want_dg, dg, (size_t)w * sizeof(float));
    memcpy(want_db, db, (size_t)w * sizeof(float));
    clip_layer_norm_backward(x, dy, rows, w, gamma, 1e-5f, dx, dg, db);
    layer_norm_backward_reference(x, dy, rows, w, gamma, 1e-5f, want_dx, want_dg, want_db);
    CHECK(bitwise_equal(dx, want_dx, (size_t)n) && bitwise_equal(dg, want_dg, (size_t)w) &&
          bitwise_equal(db, want_db, (size_t)w), "layer norm backward (%s) rows %td width %td: not bitwise the scalar loop's",
          what, rows, w);
    free(dx); free(want_dx); free(dg); free(db); free(want_dg); free(want_db);
}

static void test_backward(void) {
    // Odd widths and row counts around the four-row blocks and the vector widths; the default model's 128 and 64.
    static const ptrdiff_t widths[] = {1, 2, 3, 7, 16, 33, 64, 127, 128, 768};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        for (ptrdiff_t rows = 1; rows <= 9; rows++) {
            const ptrdiff_t w = widths[wi], n = rows * w;
            float *x = random_array((size_t)n), *dy = random_array((size_t)n), *gamma = random_array((size_t)w);
            for (ptrdiff_t i = 0; i < n; i++) x[i] = x[i] * 3.0f + (float)(i / w);  // rows off zero, as activations are
            run_layer_norm_backward_case(x, dy, gamma, rows, w, "random rows");
            // Huge terms that cancel only across partial sums (+2b at an even position, −b at two odd ones): the
            // rounding left over depends on which partial sum and row each term went to, which random rows hide.
            for (ptrdiff_t i = 0; i < n; i++) { x[i] = 1.0f + 0.5f * x[i] / (3.0f + (float)(i / w)); dy[i] = 1.0f + 0.5f * dy[i]; }
            for (ptrdiff_t i = 0; i < w; i++) gamma[i] = 1.0f;
            for (ptrdiff_t r = 0; r < rows && w >= 6; r++) {
                const ptrdiff_t half = w / 2, p0 = 2 * ((r * 5) % half), p1 = 2 * ((r * 3) % (half - 1)) + 1,
                                p2 = 2 * ((r * 3 + 1) % (half - 1)) + 1;
                const float big = ldexpf(1.0f, 40 + (int)(r % 20));
                x[r * w + p0] = 2 * big; x[r * w + p1] = -big; x[r * w + p2] = -big;
                dy[r * w + p0] = -2 * big; dy[r * w + p1] = big; dy[r * w + p2] = big;
            }
            run_layer_norm_backward_case(x, dy, gamma, rows, w, "cancelling terms");
            float *sum = random_array((size_t)w), *want_sum = malloc((size_t)w * sizeof(float));
            memcpy(want_sum, sum, (size_t)w * sizeof(float));
            clip_add_rows(dy, rows, w, sum);
            for (ptrdiff_t r = 0; r < rows; r++) for (ptrdiff_t i = 0; i < w; i++) want_sum[i] += dy[r * w + i];
            CHECK(bitwise_equal(sum, want_sum, (size_t)w), "add_rows rows %td width %td: not bitwise", rows, w);
            free(x); free(dy); free(gamma); free(sum); free(want_sum);
        }
    }
    for (ptrdiff_t n = 1; n <= 300; n += 37) {
        float *z = random_array((size_t)n), *h = malloc((size_t)n * sizeof(float)), *dh = random_array((size_t)n);
        float *want = malloc((size_t)n * sizeof(float));
        for (ptrdiff_t i = 0; i < n; i++) {
            if (i % 5 == 1) z[i] *= 1e-3f;  // the Taylor branch
            if (i % 7 == 3) z[i] *= 8.0f;
            h[i] = z[i] / (1.0f + expf(-1.702f * z[i]));
        }
        memcpy(want, dh, (size_t)n * sizeof(float));
        clip_quick_gelu_backward(z, h, dh, n);
        quick_gelu_backward_reference(z, h, want, n);
        CHECK(bitwise_equal(dh, want, (size_t)n), "quick gelu backward n %td: not bitwise the scalar loop's", n);
        float *p[2], *g = random_array((size_t)n), *m[2], *v[2];
        for (int c = 0; c < 2; c++) {
            rng_state = 7;
            p[c] = random_array((size_t)n); m[c] = random_array((size_t)n); v[c] = random_array((size_t)n);
            for (ptrdiff_t i = 0; i < n; i++) v[c][i] = v[c][i] * v[c][i];
        }
        clip_adamw(p[0], g, m[0], v[0], n, 0.9f, 0.98f, 0.9999f, 5e-4f, 0.7f, 1e-6f);
        adamw_reference(p[1], g, m[1], v[1], n, 0.9f, 0.98f, 0.9999f, 5e-4f, 0.7f, 1e-6f);
        CHECK(bitwise_equal(p[0], p[1], (size_t)n) && bitwise_equal(m[0], m[1], (size_t)n) &&
              bitwise_equal(v[0], v[1], (size_t)n), "adamw n %td: not bitwise the scalar loop's", n);
        free(z); free(h); free(dh); free(want); free(g);
        for (int c = 0; c < 2; c++) { free(p[c]); free(m[c]); free(v[c]); }
    }
}

// The depthwise convolution at the level CLIP_CPU selects against double precision, for one shape: a band of rows
// (y0 > 0) after the first, each band writing only its own rows. Stride 1 reads a zero-padded image; stride 2 any
// padded input of (out − 1)·2 + k rows and columns.
static void check_depthwise(ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k, ptrdiff_t st) {
    const ptrdiff_t pad = st == 1 ? k / 2 : 0;
    const ptrdiff_t hp = st == 1 ? h + 2 * pad : (h - 1) * st + k, wp = st == 1 ? w + 2 * pad : (w - 1) * st + k;
    const ptrdiff_t hin = st == 1 ? h : hp, win = st == 1 ? w : wp;
    float *x = calloc((size_t)(hp * wp * c), sizeof(float));
    for (ptrdiff_t y = 0; y < hin; y++)
        for (ptrdiff_t i = 0; i < win * c; i++) x[((y + pad) * wp + pad) * c + i] = next_value();
    float *wt = random_array((size_t)(k * k * c)), *b = random_array((size_t)c);
    float *out = malloc((size_t)(h * w * c) * sizeof(float));
    for (ptrdiff_t i = 0; i < h * w * c; i++) out[i] = NAN;
    const ptrdiff_t split = h / 2;
    if (st == 1) clip_depthwise_conv2d(x, wp, c, wt, b, k, 0, split, w, out);
    else clip_depthwise_conv2d_strided(x, wp, c, wt, b, k, st, 0, split, w, out);
    // A band writes its own rows only.
    int untouched = 1;
    for (ptrdiff_t i = split * w * c; i < h * w * c; i++) untouched &= out[i] != out[i];
    CHECK(untouched, "depthwise c=%td h=%td w=%td k=%td s=%td: rows past the band were written", c, h, w, k, st);
    clip_depthwise_conv2d_strided(x, wp, c, wt, b, k, st, split, h, w, out);
    double worst = 0;
    for (ptrdiff_t y = 0; y < h; y++)
        for (ptrdiff_t xx = 0; xx < w; xx++)
            for (ptrdiff_t ch = 0; ch < c; ch++) {
                double want = b[ch];
                for (ptrdiff_t dy = 0; dy < k; dy++)
                    for (ptrdiff_t dx = 0; dx < k; dx++)
                        want += (double)x[((y * st + dy) * wp + xx * st + dx) * c + ch] * wt[(dy * k + dx) * c + ch];
                const double e = fabs(out[(y * w + xx) * c + ch] - want);
                worst = e > worst || e != e ? e : worst;
            }
    CHECK(worst < 1e-5, "depthwise c=%td h=%td w=%td k=%td s=%td: error %g", c, h, w, k, st, worst);
    free(x); free(wt); free(b); free(out);
}

// Channel counts around the 16-lane vectors (and a tail of single channels), output widths around the 4-pixel tiles,
// 7×7 and 3×3 windows, strides 1 and 2; and for the stride-1 strips (8 pixels of 16, 8 or 4 channels, by level)
// every width 1-17 at 20 channels, so each narrower last strip of both windows runs beside the channel tail.
static void test_depthwise(void) {
    static const ptrdiff_t shapes[][5] = {{5, 9, 7, 7, 1},  {16, 6, 8, 7, 1}, {37, 11, 5, 7, 1}, {64, 4, 13, 3, 1},
                                          {48, 7, 7, 1, 1}, {20, 5, 9, 7, 2}, {32, 4, 4, 3, 2},  {17, 3, 6, 7, 2},
                                          {48, 4, 30, 7, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_depthwise(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4]);
    for (ptrdiff_t k = 3; k <= 7; k += 4)
        for (ptrdiff_t w = 1; w <= 17; w++) check_depthwise(20, 3, w, k, 1);
}

// The vector-search scan at the level CLIP_CPU selects, against double-precision dot products, on dimensions and
// row counts that leave every loop a tail.
static void test_scan(void) {
    const ptrdiff_t shapes[][2] = {{1, 1}, {3, 7}, {17, 64}, {33, 512}, {10, 77}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const ptrdiff_t n = shapes[s][0], d = shapes[s][1];
        float *rows = random_array((size_t)(n * d)), *q = random_array((size_t)d);
        float *out = malloc((size_t)(n + 1) * sizeof(float));
        out[n] = 12345.0f;
        clip_dot_rows(rows, n, d, q, out);
        double worst = 0;
        for (ptrdiff_t r = 0; r < n; r++) {
            double exact = 0, magnitude = 0;
            for (ptrdiff_t i = 0; i < d; i++) {
                exact += (double)rows[r * d + i] * q[i];
                magnitude += fabs((double)rows[r * d + i] * q[i]);
            }
            double e = fabs(out[r] - exact) / (magnitude > 0 ? magnitude : 1);
            if (e > worst) worst = e;
        }
        CHECK(worst < 1e-6, "dot_rows n=%td d=%td: error %g", n, d, worst);
        CHECK(out[n] == 12345.0f, "dot_rows n=%td d=%td wrote past its output", n, d);
        // int8 codes with a scale per row, against the same sums over the codes in double precision.
        int8_t *codes = malloc((size_t)(n * d));
        float *scales = malloc((size_t)n * sizeof(float));
        for (ptrdiff_t r = 0; r < n; r++) {
            scales[r] = 0.01f * (float)(r + 1);
            for (ptrdiff_t i = 0; i < d; i++) codes[r * d + i] = (int8_t)((r * 31 + i * 17) % 255 - 127);
        }
        clip_dot_rows_i8(codes, scales, n, d, q, out);
        worst = 0;
        for (ptrdiff_t r = 0; r < n; r++) {
            double exact = 0, magnitude = 0;
            for (ptrdiff_t i = 0; i < d; i++) {
                exact += (double)codes[r * d + i] * q[i];
                magnitude += fabs((double)codes[r * d + i] * q[i]);
            }
            double e = fabs(out[r] - exact * scales[r]) / (magnitude > 0 ? magnitude * scales[r] : 1);
            if (e > worst) worst = e;
        }
        CHECK(worst < 1e-6, "dot_rows_i8 n=%td d=%td: error %g", n, d, worst);
        CHECK(out[n] == 12345.0f, "dot_rows_i8 n=%td d=%td wrote past its output", n, d);
        free(codes); free(scales);
        free(rows); free(q); free(out);
    }
}

static void test_first_non_finite(void) {
    float x[3000];
    for (int i = 0; i < 3000; i++) x[i] = (float)i - 1500.0f;
    CHECK(clip_first_non_finite(x, 3000) == -1, "finite values reported");
    CHECK(clip_first_non_finite(x, 0) == -1, "empty input reported");
    const int at[] = {0, 1023, 1024, 2999};
    for (int k = 0; k < 4; k++) {
        float saved = x[at[k]];
        x[at[k]] = k % 2 ? NAN : -INFINITY;
        CHECK(clip_first_non_finite(x, 3000) == at[k], "non-finite at %d reported at %td", at[k], clip_first_non_finite(x, 3000));
        x[at[k]] = saved;
    }
}

// SHA-256 blocks: FIPS 180-4's "abc" with the portable code and (where the CPU has them) the SHA extensions, and
// both on the same random message of 1 to 37 blocks.
static void test_sha256(void) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    static const uint32_t abc[8] = {0xba7816bf, 0x8f01cfea, 0x414140de, 0x5dae2223, 0xb00361a3, 0x96177a9c, 0xb410ff61, 0xf20015ad};
    uint8_t block[64] = {'a', 'b', 'c', 0x80};
    block[63] = 24;
    const int fast = (clip_cpu_features() & CLIP_CPU_SHA) != 0;
    for (int accelerated = 0; accelerated <= fast; accelerated++) {
        uint32_t h[8];
        memcpy(h, iv, sizeof h);
        clip_sha256_blocks_with(accelerated, h, block, 1);
        CHECK(memcmp(h, abc, sizeof h) == 0, "sha256('abc') wrong (accelerated %d)", accelerated);
    }
    uint8_t data[64 * 37];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(next_value() * 1000.0f);
    for (size_t blocks = 1; blocks <= 37; blocks += 4) {
        uint32_t a[8], b[8];
        memcpy(a, iv, sizeof a);
        memcpy(b, iv, sizeof b);
        clip_sha256_blocks_with(0, a, data, blocks);
        clip_sha256_blocks(b, data, blocks);
        CHECK(memcmp(a, b, sizeof a) == 0, "sha256 of %zu blocks: dispatched and portable differ", blocks);
    }
    if (!fast) printf("skipped SHA extensions: this CPU (or CLIP_CPU) does not have them\n");
}

int main(void) {
    CHECK(clip_cpu_error() == NULL, "CLIP_CPU: %s", clip_cpu_error());
    CHECK((clip_cpu_features() & ~clip_cpu_hardware()) == 0, "features beyond the hardware");
    printf("CPU level %d, features 0x%x (hardware 0x%x)\n", clip_cpu_level(), clip_cpu_features(), clip_cpu_hardware());
    const int int8_reference = clip_int8_best_kernel();
    for (int i = 0; i < KERNEL_COUNT; i++) {
        const int kernel = all_kernels[i];
        if (!clip_gemm_kernel_available(kernel)) {
            printf("skipped %s: this CPU (or CLIP_CPU) does not have it\n", kernel_name(kernel));
            continue;
        }
        rng_state = 42;
        const int before = failures;
        test_sgemm(kernel);
        test_packed(kernel);
        test_conv(kernel);
        test_attention(kernel);
        if (clip_int8_kernel_available(kernel)) test_int8(kernel, int8_reference);
        printf("%s: fp32 GEMM, epilogues, implicit im2col, attention%s: %s\n", kernel_name(kernel),
               clip_int8_kernel_available(kernel) ? ", int8" : "", failures == before ? "ok" : "FAILED");
    }
    test_elementwise();
    test_backward();
    test_depthwise();
    test_scan();
    test_first_non_finite();
    test_sha256();
    printf("%d checks, %d failures\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
