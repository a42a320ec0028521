// Private to CCLIPKernels: what the int8 GEMM driver (int8.c) needs from each instruction set's micro-kernel.
//
// Weights are quantised per output column (scale max|w|/127, codes in [−127, 127]), activations per row on the fly
// (the same rule). Every kernel sums exact int32 products of the same codes, so all of them give the same integers
// and, dequantised as float(sum) · (s_b[j] · s_a[i]), the same floats.
//
// Packed B: panels of NR columns; in a panel, for each group of G consecutive k, the G codes of each column side by
// side (G = 4 for the dot-product instructions, 2 for AVX2's vpmaddwd). Packed A: for each group, one 32-bit word
// per row (G codes of one byte, or 2 codes of 16 bits for vpmaddwd), MR rows side by side.
#ifndef CLIP_INT8_KERNELS_H
#define CLIP_INT8_KERNELS_H

#include "CCLIPKernels.h"
#include "epilogue.h"

#include <stdint.h>

// A tile of `rows` <= MR rows (full NR columns) from `groups` k-groups: C = dequantised sums + beta · C, then `ep`.
// `sa` are the tile's row scales, `sb` and `sums` its column scales and code sums (sums are used only by kernels
// that add 128 to the activation codes).
typedef void (*clip_int8_ukr_fn)(ptrdiff_t rows, ptrdiff_t groups, const uint32_t *pa, const int8_t *pb, float *c,
                                 ptrdiff_t ldc, const float *sa, const float *sb, const int32_t *sums, float beta,
                                 const clip_epilogue *ep);

// One row of k activations quantised: its group words into `words` (groups of them, zero codes past k), its scale
// returned (0 for an all-zero row).
typedef float (*clip_int8_quantize_fn)(const float *row, ptrdiff_t k, ptrdiff_t groups, uint32_t *words);

typedef struct {
    int mr, nr, group;
    uint32_t zero_word;  // the A word of four (or two) zero codes
    clip_int8_ukr_fn ukr;
    clip_int8_quantize_fn quantize;
} clip_int8_desc;

#if defined(__x86_64__) || defined(__i386__)
extern const clip_int8_desc clip_int8_avx512;
extern const clip_int8_desc clip_int8_avx2;
#endif
#if defined(__aarch64__)
extern const clip_int8_desc clip_int8_neon;
#endif

// Round half to even and clamp to ±127: the quantiser every kernel's vector code reproduces.
static inline int clip_quantize_code(float v, float inv) {
    float q = __builtin_nearbyintf(v * inv);
    return q > 127.0f ? 127 : (q < -127.0f ? -127 : (int)q);
}

#endif
