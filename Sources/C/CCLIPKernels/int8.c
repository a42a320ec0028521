// Dynamic int8 GEMM for the opt-in int8 mode: weights packed once per kernel (int8_kernels.h has the layouts),
// activations quantised per row as each block of rows is packed, exact int32 sums dequantised in fp32.
#include "int8_kernels.h"

#include <stdlib.h>
#include <string.h>

enum { MC_TILES = 16, TILE_MAX = 12 * 32 };

static ptrdiff_t up(ptrdiff_t v, ptrdiff_t m) { return (v + m - 1) / m * m; }

int clip_int8_kernel_available(int kernel) {
    const unsigned f = clip_cpu_features();
    switch (kernel) {
    case CLIP_GEMM_AUTO: return clip_int8_best_kernel() >= 0;
#if defined(__x86_64__) || defined(__i386__)
    case CLIP_GEMM_AVX512: return (f & CLIP_CPU_AVX512_VNNI) != 0;
    case CLIP_GEMM_AVX2: return (f & CLIP_CPU_AVX2) != 0;
#endif
#if defined(__aarch64__)
    case CLIP_GEMM_NEON: return (f & CLIP_CPU_NEON_DOTPROD) != 0;
#endif
    default: (void)f; return 0;
    }
}

int clip_int8_best_kernel(void) {
    static const int order[] = {CLIP_GEMM_AVX512, CLIP_GEMM_NEON, CLIP_GEMM_AVX2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (clip_int8_kernel_available(order[i])) return order[i];
    }
    return -1;
}

static const clip_int8_desc *describe(int kernel) {
    if (kernel == CLIP_GEMM_AUTO) kernel = clip_int8_best_kernel();
    if (kernel < 0 || !clip_int8_kernel_available(kernel)) return NULL;
    switch (kernel) {
#if defined(__x86_64__) || defined(__i386__)
    case CLIP_GEMM_AVX512: return &clip_int8_avx512;
    case CLIP_GEMM_AVX2: return &clip_int8_avx2;
#endif
#if defined(__aarch64__)
    case CLIP_GEMM_NEON: return &clip_int8_neon;
#endif
    default: return NULL;
    }
}

int clip_int8_panel_width(int kernel) {
    const clip_int8_desc *d = describe(kernel);
    return d ? d->nr : -1;
}

int clip_int8_group(int kernel) {
    const clip_int8_desc *d = describe(kernel);
    return d ? d->group : -1;
}

ptrdiff_t clip_packed_b_int8_bytes(int kernel, ptrdiff_t k, ptrdiff_t n) {
    const clip_int8_desc *d = describe(kernel);
    return d && k >= 0 && n >= 0 ? up(k, d->group) * up(n, d->nr) : -1;
}

ptrdiff_t clip_packed_b_int8_columns(int kernel, ptrdiff_t n) {
    const clip_int8_desc *d = describe(kernel);
    return d && n >= 0 ? up(n, d->nr) : -1;
}

int clip_pack_b_int8(int kernel, int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, int8_t *out,
                     float *scales, int32_t *sums) {
    const clip_int8_desc *d = describe(kernel);
    if (!d || k < 0 || n < 0) return -1;
    const ptrdiff_t g = d->group, nr = d->nr, kg = up(k, g), npad = up(n, nr);
    memset(out, 0, (size_t)(kg * npad));
    for (ptrdiff_t j = 0; j < npad; j++) {
        scales[j] = 0.0f;
        sums[j] = 0;
        if (j >= n) continue;
        float m = 0.0f;
        for (ptrdiff_t p = 0; p < k; p++) {
            float v = __builtin_fabsf(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            m = v > m ? v : m;
        }
        if (m == 0.0f) continue;
        const float inv = 127.0f / m;
        scales[j] = m / 127.0f;
        int8_t *panel = out + (j / nr) * kg * nr;
        for (ptrdiff_t p = 0; p < k; p++) {
            const int q = clip_quantize_code(trans_b ? b[j * ldb + p] : b[p * ldb + j], inv);
            panel[(p / g) * nr * g + (j % nr) * g + p % g] = (int8_t)q;
            sums[j] += q;
        }
    }
    return 0;
}

static _Thread_local uint32_t *scratch;
static _Thread_local size_t scratch_cap;

int clip_gemm_packed_int8(int kernel, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                          const int8_t *packed, const float *scales, const int32_t *sums, ptrdiff_t j0, ptrdiff_t j1,
                          float beta, float *c, ptrdiff_t ldc, const clip_epilogue *ep) {
    const clip_int8_desc *d = describe(kernel);
    if (!d) return -1;
    const ptrdiff_t mr = d->mr, nr = d->nr;
    if (m < 0 || k < 0 || j0 < 0 || j1 > n || j0 > j1 || j0 % nr != 0) return -1;
    if (m == 0 || j1 == j0) return 0;
    const ptrdiff_t groups = up(k, d->group) / d->group, mc_max = mr * MC_TILES;
    // Panels, row scales and one row's words.
    const size_t need = (size_t)mc_max * (size_t)groups + (size_t)mc_max + (size_t)groups + 16;
    if (scratch_cap < need) {
        free(scratch);
        scratch = aligned_alloc(64, (need * 4 + 63) & ~(size_t)63);
        scratch_cap = scratch ? need : 0;
        if (!scratch) return -1;
    }
    uint32_t *pa = scratch;
    float *sa = (float *)(scratch + (size_t)mc_max * (size_t)groups);
    uint32_t *words = (uint32_t *)(sa + mc_max);
    float tile[TILE_MAX] __attribute__((aligned(64)));
    for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
        const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
        // A row's words are scattered with stride MR into its panel; rows past mc pack as zero codes.
        for (ptrdiff_t i = 0; i < up(mc, mr); i++) {
            uint32_t *panel = pa + (i / mr) * mr * groups;
            if (i < mc) {
                sa[i] = d->quantize(a + (ic + i) * lda, k, groups, words);
                for (ptrdiff_t q = 0; q < groups; q++) panel[q * mr + i % mr] = words[q];
            } else {
                sa[i] = 0.0f;
                for (ptrdiff_t q = 0; q < groups; q++) panel[q * mr + i % mr] = d->zero_word;
            }
        }
        for (ptrdiff_t jr = j0; jr < j1; jr += nr) {
            const ptrdiff_t cols = j1 - jr < nr ? j1 - jr : nr;
            const int8_t *bp = packed + (jr / nr) * groups * d->group * nr;
            for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
                const ptrdiff_t rows = mc - ir < mr ? mc - ir : mr;
                const uint32_t *ap = pa + (ir / mr) * mr * groups;
                float *cp = c + (ic + ir) * ldc + jr;
                if (cols == nr) {
                    const clip_epilogue local = clip_tile_local(ep, jr);
                    d->ukr(rows, groups, ap, bp, cp, ldc, sa + ir, scales + jr, sums + jr, beta, ep ? &local : NULL);
                } else {
                    d->ukr(mr, groups, ap, bp, tile, nr, sa + ir, scales + jr, sums + jr, 0.0f, NULL);
                    clip_merge_tile(cp, ldc, tile, nr, rows, cols, 1.0f, beta, ep, jr);
                }
            }
        }
    }
    return 0;
}
