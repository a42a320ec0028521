// Pillow-exact resampling. The arithmetic (double-precision coefficients, their normalisation, 22-bit
// fixed-point weights rounded half away from zero, clipping) follows Pillow's libImaging/Resample.c so that
// results are identical, not merely close.
#include "clip_image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Pillow's BILINEAR filter (a triangle of support 1).
static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static inline uint8_t clip8(int v) {
    v >>= PRECISION_BITS;
    return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v);
}

// Coefficients for resampling `in_size` samples to `out_size`: per output sample the first input index,
// the count of inputs, and `ksize` normalised double weights (Pillow's precompute_coeffs).
static int coefficients_double(int in_size, int out_size, int filter, int **bounds_out, double **kk_out) {
    double (*const f)(double) = filter == CLIP_FILTER_BILINEAR ? bilinear : bicubic;
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = (filter == CLIP_FILTER_BILINEAR ? 1.0 : 2.0) * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    double *kk = malloc((size_t)out_size * ksize * sizeof(double));
    if (!bounds || !kk) {
        free(bounds); free(kk);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = kk + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++) {
            if (ww != 0.0) k[x] /= ww;
        }
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

// Pillow's normalize_coeffs_8bpc: double weights as 22-bit fixed point, rounded half away from zero.
static int32_t *fixed_point(const double *k, size_t count) {
    int32_t *kk = malloc(count * sizeof(int32_t) + 1);
    if (!kk) return NULL;
    for (size_t i = 0; i < count; i++) {
        kk[i] = k[i] < 0 ? (int32_t)(-0.5 + k[i] * (1 << PRECISION_BITS)) : (int32_t)(0.5 + k[i] * (1 << PRECISION_BITS));
    }
    return kk;
}

// What a window [wx, wx + ww) × [wy, wy + wh) of a sw × sh → dw × dh resample needs, for the 8- and 16-bit passes:
// each direction's coefficients (only when that direction changes size) and the source rows its output rows read.
typedef struct {
    int need_h, need_v, ksh, ksv, first, rows;
    // Pillow 13's ImagingResampleInner resamples vertically first when the height shrinks by more than twice
    // as many pixels as the width does (sh - dh > 0 and sh - dh > 2 (sw - dw)); Pillow 12 and earlier always go
    // horizontally first. The orders round their 8-bit intermediate differently, by up to a few levels.
    // `vertical_first` follows Pillow 13; the source columns [span0, span0 + span) are what the window's
    // horizontal filters read.
    int vertical_first, span0, span;
    int *bh, *bv;
    double *kh, *kv;
} window_plan;

static void free_plan(window_plan *p) {
    free(p->bh); free(p->kh); free(p->bv); free(p->kv);
}

// 0, or -1 without memory (nothing to free then).
static int plan_window(int sw, int sh, int dw, int dh, int wx, int ww, int wy, int wh, int filter, window_plan *p) {
    memset(p, 0, sizeof *p);
    p->need_h = dw != sw;
    p->need_v = dh != sh;
    if ((p->need_h && !(p->ksh = coefficients_double(sw, dw, filter, &p->bh, &p->kh))) ||
        (p->need_v && !(p->ksv = coefficients_double(sh, dh, filter, &p->bv, &p->kv)))) {
        free_plan(p);
        return -1;
    }
    p->vertical_first = p->need_h && p->need_v && sh - dh > 0 && (long)(sh - dh) > 2L * (sw - dw);
    if (p->vertical_first) {
        p->span0 = p->bh[wx * 2];
        p->span = p->bh[(wx + ww - 1) * 2] + p->bh[(wx + ww - 1) * 2 + 1] - p->span0;
    }
    // Source rows the window needs: all rows of its output rows' filters, or its own rows without a vertical pass.
    p->first = p->need_v ? p->bv[wy * 2] : wy;
    const int last = p->need_v ? p->bv[(wy + wh - 1) * 2] + p->bv[(wy + wh - 1) * 2 + 1] : wy + wh;
    p->rows = last - p->first;
    return 0;
}

typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint8_t v4u8 __attribute__((vector_size(4)));

// The passes are compiled per ISA (target attributes, chosen at run time) because the 32-bit products need
// pmulld, which x86-64's baseline lacks. Integer sums are exact, so any summation order gives Pillow's result.
#define RESAMPLE_KERNELS(suffix, attr)                                                                          \
    /* Horizontal pass for one source row of `sw` pixels into `out`: output columns [x0, x0 + n). RGB(A)       \
       pixels are summed as one 4-lane vector per tap. */                                                       \
    attr static inline __attribute__((always_inline)) void horizontal_body_##suffix(                           \
        const uint8_t *line, int sw, int ch, const int *bounds, const int32_t *kk, int ksize, int x0, int n,    \
        uint8_t *out) {                                                                                         \
        for (int j = 0; j < n; j++) {                                                                           \
            int xx = x0 + j;                                                                                    \
            int xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1];                                               \
            const int32_t *k = kk + (size_t)xx * ksize;                                                        \
            const uint8_t *p = line + (size_t)xmin * ch;                                                       \
            if (ch == 3 || ch == 4) {                                                                           \
                v4i s = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1),       \
                         1 << (PRECISION_BITS - 1)};                                                            \
                /* A 4-byte load of the row's last RGB pixel would read past the row (and the buffer). */       \
                int vec = ch == 3 && xmin + xmax == sw ? xmax - 1 : xmax;                                       \
                for (int x = 0; x < vec; x++) {                                                                 \
                    v4u8 b;                                                                                     \
                    memcpy(&b, p + (size_t)x * ch, 4);                                                          \
                    s += __builtin_convertvector(b, v4i) * k[x];                                                \
                }                                                                                               \
                if (vec < xmax) {                                                                               \
                    const uint8_t *q = p + (size_t)vec * 3;                                                     \
                    v4i t = {q[0], q[1], q[2], 0};                                                              \
                    s += t * k[vec];                                                                            \
                }                                                                                               \
                for (int c = 0; c < ch; c++) out[j * ch + c] = clip8(s[c]);                                     \
            } else {                                                                                            \
                for (int c = 0; c < ch; c++) {                                                                  \
                    int ss = 1 << (PRECISION_BITS - 1);                                                         \
                    for (int x = 0; x < xmax; x++) ss += p[x * ch + c] * k[x];                                  \
                    out[j * ch + c] = clip8(ss);                                                                \
                }                                                                                               \
            }                                                                                                   \
        }                                                                                                       \
    }                                                                                                           \
    /* Constant channel counts let the compiler drop the per-tap branches. */                                   \
    attr static void horizontal_row_##suffix(const uint8_t *line, int sw, int ch, const int *bounds,            \
                                             const int32_t *kk, int ksize, int x0, int n, uint8_t *out) {      \
        if (ch == 3) horizontal_body_##suffix(line, sw, 3, bounds, kk, ksize, x0, n, out);                     \
        else if (ch == 4) horizontal_body_##suffix(line, sw, 4, bounds, kk, ksize, x0, n, out);                \
        else horizontal_body_##suffix(line, sw, ch, bounds, kk, ksize, x0, n, out);                            \
    }                                                                                                           \
    /* One output row of the vertical pass: the weighted sum of `taps` rows of `line` bytes. */                \
    attr static void vertical_row_##suffix(const uint8_t *rows, size_t line, const int32_t *k, int taps,       \
                                           int32_t *acc, uint8_t *out) {                                        \
        for (size_t i = 0; i < line; i++) acc[i] = 1 << (PRECISION_BITS - 1);                                   \
        for (int y = 0; y < taps; y++) {                                                                        \
            const uint8_t *row = rows + line * (size_t)y;                                                       \
            int32_t w = k[y];                                                                                   \
            for (size_t i = 0; i < line; i++) acc[i] += row[i] * w;                                             \
        }                                                                                                       \
        for (size_t i = 0; i < line; i++) out[i] = clip8(acc[i]);                                               \
    }

RESAMPLE_KERNELS(generic, )
#if defined(__x86_64__) || defined(__i386__)
RESAMPLE_KERNELS(avx2, __attribute__((target("avx2"))))
static int use_avx2(void) {
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached;
}
#else
static int use_avx2(void) { return 0; }
#define horizontal_row_avx2 horizontal_row_generic
#define vertical_row_avx2 vertical_row_generic
#endif

// Pillow's RGBA → RGBa (LA → La) of one row: colour × alpha / 255, rounded as its MULDIV255.
static void premultiply_row(const uint8_t *in, int n, int ch, uint8_t *out) {
    for (int i = 0; i < n; i++, in += ch, out += ch) {
        const uint32_t a = in[ch - 1];
        for (int c = 0; c < ch - 1; c++) {
            const uint32_t t = in[c] * a + 128;
            out[c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        out[ch - 1] = (uint8_t)a;
    }
}

struct clip_resampler {
    window_plan p;
    int sw, ch, wx, ww, wh, wy, premultiply, avx2, pushed;
    int32_t *kh, *kv, *acc;
    size_t line, stored;
    uint8_t *tmp, *row;
};

void clip_resampler_free(clip_resampler *r) {
    if (!r) return;
    free_plan(&r->p);
    free(r->kh); free(r->kv); free(r->acc); free(r->tmp); free(r->row);
    free(r);
}

clip_resampler *clip_resampler_new(int sw, int sh, int ch, int dw, int dh, int wx, int wy, int ww, int wh,
                                   int premultiply, int filter) {
    if (sw <= 0 || sh <= 0 || ch <= 0 || ch > 4 || ww <= 0 || wh <= 0) return NULL;
    clip_resampler *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (plan_window(sw, sh, dw, dh, wx, ww, wy, wh, filter, &r->p) != 0) { free(r); return NULL; }
    r->sw = sw; r->ch = ch; r->wx = wx; r->ww = ww; r->wh = wh; r->wy = wy; r->premultiply = premultiply;
    r->avx2 = use_avx2();
    r->line = (size_t)ww * ch;
    r->kh = r->p.need_h ? fixed_point(r->p.kh, (size_t)dw * r->p.ksh) : NULL;
    r->kv = r->p.need_v ? fixed_point(r->p.kv, (size_t)dh * r->p.ksv) : NULL;
    // Horizontally first: the rows' window columns after the horizontal pass. Vertically first: the raw source
    // columns the window's horizontal filters read.
    r->stored = r->p.vertical_first ? (size_t)r->p.span * ch : r->line;
    r->tmp = malloc(r->stored * r->p.rows);
    r->acc = r->p.need_v ? malloc(r->stored * sizeof(int32_t)) : NULL;
    // Alpha is premultiplied a row at a time as rows arrive, so no premultiplied copy of the image is made. The
    // vertical-first pass also needs a whole-width row to hold one vertically resampled row.
    r->row = premultiply || r->p.vertical_first ? malloc((size_t)sw * ch) : NULL;
    if ((r->p.need_h && !r->kh) || (r->p.need_v && (!r->kv || !r->acc)) || !r->tmp ||
        ((premultiply || r->p.vertical_first) && !r->row)) {
        clip_resampler_free(r);
        return NULL;
    }
    return r;
}

int clip_resampler_first_row(const clip_resampler *r) { return r->p.first; }
int clip_resampler_row_count(const clip_resampler *r) { return r->p.rows; }

size_t clip_resampler_bytes(const clip_resampler *r) { return r->stored * (size_t)r->p.rows + (size_t)r->sw * r->ch; }

void clip_resampler_push(clip_resampler *r, const uint8_t *in) {
    if (r->pushed >= r->p.rows) return;
    uint8_t *out = r->tmp + r->stored * r->pushed++;
    if (r->p.vertical_first) {
        if (r->premultiply) premultiply_row(in + (size_t)r->p.span0 * r->ch, r->p.span, r->ch, out);
        else memcpy(out, in + (size_t)r->p.span0 * r->ch, r->stored);
        return;
    }
    if (r->premultiply) {
        premultiply_row(in, r->sw, r->ch, r->row);
        in = r->row;
    }
    // Horizontal pass (8-bit result, as Pillow's intermediate image), restricted to the window's columns.
    if (!r->p.need_h) memcpy(out, in + (size_t)r->wx * r->ch, r->line);
    else if (r->avx2) horizontal_row_avx2(in, r->sw, r->ch, r->p.bh, r->kh, r->p.ksh, r->wx, r->ww, out);
    else horizontal_row_generic(in, r->sw, r->ch, r->p.bh, r->kh, r->p.ksh, r->wx, r->ww, out);
}

int clip_resampler_finish(clip_resampler *r, uint8_t *dst) {
    if (r->pushed != r->p.rows) return -1;
    if (r->p.vertical_first) {
        // Each output row: the vertical pass over the stored columns into a whole-width row (8-bit, as Pillow's
        // intermediate image), then the horizontal pass of the window's columns from it.
        uint8_t *mid = r->row + (size_t)r->p.span0 * r->ch;
        for (int yy = 0; yy < r->wh; yy++) {
            const int ymin = r->p.bv[(r->wy + yy) * 2] - r->p.first, ymax = r->p.bv[(r->wy + yy) * 2 + 1];
            const int32_t *k = r->kv + (size_t)(r->wy + yy) * r->p.ksv;
            if (r->avx2) vertical_row_avx2(r->tmp + r->stored * (size_t)ymin, r->stored, k, ymax, r->acc, mid);
            else vertical_row_generic(r->tmp + r->stored * (size_t)ymin, r->stored, k, ymax, r->acc, mid);
            uint8_t *out = dst + r->line * yy;
            if (r->avx2) horizontal_row_avx2(r->row, r->sw, r->ch, r->p.bh, r->kh, r->p.ksh, r->wx, r->ww, out);
            else horizontal_row_generic(r->row, r->sw, r->ch, r->p.bh, r->kh, r->p.ksh, r->wx, r->ww, out);
        }
        return 0;
    }
    // Vertical pass as a weighted sum of whole rows; integer sums are exact, so the order is free.
    for (int yy = 0; yy < r->wh; yy++) {
        if (!r->p.need_v) {
            memcpy(dst + r->line * yy, r->tmp + r->line * yy, r->line);
            continue;
        }
        const int ymin = r->p.bv[(r->wy + yy) * 2] - r->p.first, ymax = r->p.bv[(r->wy + yy) * 2 + 1];
        const int32_t *k = r->kv + (size_t)(r->wy + yy) * r->p.ksv;
        if (r->avx2) vertical_row_avx2(r->tmp + r->line * (size_t)ymin, r->line, k, ymax, r->acc, dst + r->line * yy);
        else vertical_row_generic(r->tmp + r->line * (size_t)ymin, r->line, k, ymax, r->acc, dst + r->line * yy);
    }
    return 0;
}

int clip_resample_window(const uint8_t *src, int sw, int sh, int ch, int dw, int dh, int wx, int wy, int ww,
                         int wh, int premultiply, int filter, uint8_t *dst) {
    if (ww <= 0 || wh <= 0) return 0;
    clip_resampler *r = clip_resampler_new(sw, sh, ch, dw, dh, wx, wy, ww, wh, premultiply, filter);
    if (!r) return -1;
    for (int y = 0; y < r->p.rows; y++) clip_resampler_push(r, src + (size_t)(y + r->p.first) * sw * ch);
    int status = clip_resampler_finish(r, dst);
    clip_resampler_free(r);
    return status;
}

void clip_resize_nearest(const uint8_t *src, int sw, int sh, int ch, uint8_t *dst, int dw, int dh) {
    double a0 = (double)sw / dw, a4 = (double)sh / dh;
    int *xin = malloc((size_t)dw * sizeof(int));
    if (!xin) return;
    double xo = a0 * 0.5;
    for (int x = 0; x < dw; x++) {
        int xi = xo < 0.0 ? -1 : (int)xo;
        xin[x] = xi >= 0 && xi < sw ? xi : -1;
        xo += a0;
    }
    double yo = a4 * 0.5;
    for (int y = 0; y < dh; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *out = dst + (size_t)y * dw * ch;
        for (int x = 0; x < dw; x++) {
            if (yi >= 0 && yi < sh && xin[x] >= 0) {
                memcpy(out + x * ch, src + ((size_t)yi * sw + xin[x]) * ch, ch);
            } else {
                memset(out + x * ch, 0, ch);
            }
        }
        yo += a4;
    }
    free(xin);
}

// Pillow's 16-bit sample store: ROUND_UP of the double sum, then each byte clipped separately.
static inline uint16_t store16(double ss) {
    int v = (int)(ss >= 0.0 ? ss + 0.5F : ss - 0.5F);
    int lo = v % 256, hi = v >> 8;
    lo = lo < 0 ? 0 : (lo > 255 ? 255 : lo);
    hi = hi < 0 ? 0 : (hi > 255 ? 255 : hi);
    return (uint16_t)(lo | hi << 8);
}

int clip_resample16_window(const uint16_t *src, int sw, int sh, int dw, int dh, int wx, int wy, int ww, int wh,
                           int filter, uint16_t *dst) {
    if (ww <= 0 || wh <= 0) return 0;
    window_plan p;
    if (plan_window(sw, sh, dw, dh, wx, ww, wy, wh, filter, &p) != 0) return -1;
    if (p.vertical_first) {
        // As the 8-bit resampler: each output row vertically over the columns the window reads, then horizontally.
        uint16_t *mid = malloc((size_t)sw * sizeof(uint16_t));
        if (!mid) { free_plan(&p); return -1; }
        for (int yy = 0; yy < wh; yy++) {
            const int ymin = p.bv[(wy + yy) * 2], ymax = p.bv[(wy + yy) * 2 + 1];
            const double *k = p.kv + (size_t)(wy + yy) * p.ksv;
            for (int x = p.span0; x < p.span0 + p.span; x++) {
                double ss = 0.0;
                for (int y = 0; y < ymax; y++) ss += src[(size_t)(y + ymin) * sw + x] * k[y];
                mid[x] = store16(ss);
            }
            uint16_t *out = dst + (size_t)yy * ww;
            for (int j = 0; j < ww; j++) {
                const int xx = wx + j, xmin = p.bh[xx * 2], xmax = p.bh[xx * 2 + 1];
                const double *kx = p.kh + (size_t)xx * p.ksh;
                double ss = 0.0;
                for (int x = 0; x < xmax; x++) ss += mid[x + xmin] * kx[x];
                out[j] = store16(ss);
            }
        }
        free(mid);
        free_plan(&p);
        return 0;
    }
    uint16_t *tmp = malloc((size_t)ww * p.rows * sizeof(uint16_t));
    if (!tmp) { free_plan(&p); return -1; }
    for (int y = 0; y < p.rows; y++) {
        const uint16_t *in = src + (size_t)(y + p.first) * sw;
        uint16_t *out = tmp + (size_t)y * ww;
        for (int j = 0; j < ww; j++) {
            if (!p.need_h) { out[j] = in[wx + j]; continue; }
            const int xx = wx + j, xmin = p.bh[xx * 2], xmax = p.bh[xx * 2 + 1];
            const double *k = p.kh + (size_t)xx * p.ksh;
            double ss = 0.0;
            for (int x = 0; x < xmax; x++) ss += in[x + xmin] * k[x];
            out[j] = store16(ss);
        }
    }
    for (int yy = 0; yy < wh; yy++) {
        uint16_t *out = dst + (size_t)yy * ww;
        if (!p.need_v) { memcpy(out, tmp + (size_t)yy * ww, (size_t)ww * sizeof(uint16_t)); continue; }
        const int ymin = p.bv[(wy + yy) * 2] - p.first, ymax = p.bv[(wy + yy) * 2 + 1];
        const double *k = p.kv + (size_t)(wy + yy) * p.ksv;
        for (int j = 0; j < ww; j++) {
            double ss = 0.0;
            for (int y = 0; y < ymax; y++) ss += tmp[(size_t)(y + ymin) * ww + j] * k[y];
            out[j] = store16(ss);
        }
    }
    free_plan(&p);
    free(tmp);
    return 0;
}
