// Backward passes of the element-wise layers, for training. Plain C the compiler vectorises (no reductions across
// a vector's lanes in the hot loops, so no -ffast-math is needed); row sums use four partial sums to break the
// dependency chain.
#include "CCLIPKernels.h"

#include <math.h>

void clip_quick_gelu_backward(const float *z, const float *h, float *dh, ptrdiff_t n) {
    // With h = z·σ(1.702z) kept from the forward pass, σ = h/z; near zero, where that ratio loses precision, σ is
    // its Taylor expansion 1/2 + 1.702z/4 (error below 1e-10 for |z| < 1e-3). d/dz = σ + 1.702·h·(1 − σ).
    for (ptrdiff_t i = 0; i < n; i++) {
        float s = fabsf(z[i]) > 1e-3f ? h[i] / z[i] : 0.5f + 0.4255f * z[i];
        dh[i] *= s + 1.702f * h[i] * (1.0f - s);
    }
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

static double row_sum(const float *x, ptrdiff_t n) {
    double a = 0, b = 0, c = 0, d = 0;
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) { a += x[i]; b += x[i + 1]; c += x[i + 2]; d += x[i + 3]; }
    for (; i < n; i++) a += x[i];
    return (a + b) + (c + d);
}

void clip_layer_norm_backward(const float *x, const float *dy, ptrdiff_t rows, ptrdiff_t w, const float *gamma,
                              float eps, float *dx, float *dgamma, float *dbeta) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * w, *dyr = dy + r * w;
        float *dxr = dx + r * w;
        double mean = row_sum(xr, w) / (double)w;
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

void clip_add_rows(const float *x, ptrdiff_t rows, ptrdiff_t w, float *sum) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * w;
        for (ptrdiff_t i = 0; i < w; i++) sum[i] += xr[i];
    }
}

void clip_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float beta1, float beta2, float decay,
                float step_size, float c2_root, float eps) {
    for (ptrdiff_t i = 0; i < n; i++) {
        m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
        p[i] = p[i] * decay - step_size * m[i] / (sqrtf(v[i]) / c2_root + eps);
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
