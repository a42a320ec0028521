// Private to CCLIPKernels: the store step every AVX-512 micro-kernel ends with.
#ifndef CLIP_TILE_STORE_H
#define CLIP_TILE_STORE_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

// One 32-wide row of a C tile: ci[0..32) = r + beta · ci (C is read only when beta ≠ 0, so it may hold garbage).
// Inlined into each kernel, which compiles it for its own ISA (all include avx512f).
__attribute__((target("avx512f"), always_inline)) static inline void clip_store_row32(float *ci, __m512 r0, __m512 r1,
                                                                                      float beta) {
    if (beta != 0.0f) {
        __m512 vb = _mm512_set1_ps(beta);
        r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), r1);
    }
    _mm512_storeu_ps(ci, r0);
    _mm512_storeu_ps(ci + 16, r1);
}
#endif

#endif
