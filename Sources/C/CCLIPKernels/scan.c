// Similarity scans for vector search: one query against a contiguous [n, d] matrix of stored embeddings. Plain
// loops with explicit partial sums, compiled once per ISA through target attributes (as elementwise.c), so the
// compiler vectorises them and the same code runs on any CPU.
#include "CCLIPKernels.h"

#include <stdint.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int8_t v8b __attribute__((vector_size(8)));

// Eight partial sums per row and two rows at a time: the query is loaded once for both rows, and a float sum the
// compiler may not reorder would otherwise be one add per element on a latency chain.
#define SCAN(SUFFIX, ATTR)                                                                                  \
    ATTR static void dot_rows_##SUFFIX(const float *rows, ptrdiff_t n, ptrdiff_t d, const float *q,            \
                                       float *out) {                                                       \
        ptrdiff_t r = 0;                                                                                   \
        for (; r + 2 <= n; r += 2) {                                                                       \
            const float *a = rows + r * d, *b = a + d;                                                     \
            v8f sa = {0}, sb = {0};                                                                        \
            ptrdiff_t i = 0;                                                                               \
            for (; i + 8 <= d; i += 8) {                                                                   \
                v8f x, y, z;                                                                               \
                memcpy(&x, q + i, sizeof x);                                                               \
                memcpy(&y, a + i, sizeof y);                                                               \
                memcpy(&z, b + i, sizeof z);                                                               \
                sa += x * y;                                                                               \
                sb += x * z;                                                                               \
            }                                                                                              \
            float ta = 0, tb = 0;                                                                          \
            for (int l = 0; l < 8; l++) { ta += sa[l]; tb += sb[l]; }                                      \
            for (; i < d; i++) { ta += q[i] * a[i]; tb += q[i] * b[i]; }                                   \
            out[r] = ta;                                                                                   \
            out[r + 1] = tb;                                                                               \
        }                                                                                                  \
        for (; r < n; r++) {                                                                               \
            const float *a = rows + r * d;                                                                 \
            v8f sa = {0};                                                                                  \
            ptrdiff_t i = 0;                                                                               \
            for (; i + 8 <= d; i += 8) {                                                                   \
                v8f x, y;                                                                                  \
                memcpy(&x, q + i, sizeof x);                                                               \
                memcpy(&y, a + i, sizeof y);                                                               \
                sa += x * y;                                                                               \
            }                                                                                              \
            float ta = 0;                                                                                  \
            for (int l = 0; l < 8; l++) ta += sa[l];                                                       \
            for (; i < d; i++) ta += q[i] * a[i];                                                          \
            out[r] = ta;                                                                                   \
        }                                                                                                  \
    }

// The compressed scan: rows stored as int8 codes with one scale each (row ≈ scale · codes), a quarter of the
// memory traffic of fp32; the query stays fp32, so the only error is the rows' rounding.
#define SCAN_I8(SUFFIX, ATTR)                                                                               \
    ATTR static void dot_rows_i8_##SUFFIX(const int8_t *rows, const float *scales, ptrdiff_t n, ptrdiff_t d,    \
                                          const float *q, float *out) {                                    \
        for (ptrdiff_t r = 0; r < n; r++) {                                                                \
            const int8_t *a = rows + r * d;                                                                \
            v8f sa = {0}, sb = {0};                                                                        \
            ptrdiff_t i = 0;                                                                               \
            for (; i + 16 <= d; i += 16) {                                                                 \
                v8b c0, c1;                                                                                \
                v8f x0, x1;                                                                                \
                memcpy(&c0, a + i, sizeof c0);                                                             \
                memcpy(&c1, a + i + 8, sizeof c1);                                                         \
                memcpy(&x0, q + i, sizeof x0);                                                             \
                memcpy(&x1, q + i + 8, sizeof x1);                                                         \
                sa += x0 * __builtin_convertvector(c0, v8f);                                               \
                sb += x1 * __builtin_convertvector(c1, v8f);                                               \
            }                                                                                              \
            sa += sb;                                                                                      \
            float t = 0;                                                                                   \
            for (int l = 0; l < 8; l++) t += sa[l];                                                        \
            for (; i < d; i++) t += q[i] * (float)a[i];                                                    \
            out[r] = t * scales[r];                                                                        \
        }                                                                                                  \
    }

SCAN(generic, )
SCAN_I8(generic, )
#if defined(__x86_64__) || defined(__i386__)
SCAN(avx2, __attribute__((target("avx2,fma"))))
SCAN_I8(avx2, __attribute__((target("avx2,fma"))))
#endif

void clip_dot_rows(const float *rows, ptrdiff_t n, ptrdiff_t d, const float *q, float *out) {
    if (n <= 0) return;
#if defined(__x86_64__) || defined(__i386__)
    // AVX-512 gains nothing here: the scan is bound by memory bandwidth, which 256-bit loads already saturate.
    int level = clip_cpu_level();
    if (level == CLIP_LEVEL_AVX2 || level == CLIP_LEVEL_AVX512) { dot_rows_avx2(rows, n, d, q, out); return; }
#endif
    dot_rows_generic(rows, n, d, q, out);
}

void clip_dot_rows_i8(const int8_t *rows, const float *scales, ptrdiff_t n, ptrdiff_t d, const float *q, float *out) {
    if (n <= 0) return;
#if defined(__x86_64__) || defined(__i386__)
    int level = clip_cpu_level();
    if (level == CLIP_LEVEL_AVX2 || level == CLIP_LEVEL_AVX512) { dot_rows_i8_avx2(rows, scales, n, d, q, out); return; }
#endif
    dot_rows_i8_generic(rows, scales, n, d, q, out);
}
