// Packed, cache-blocked SGEMM (the Goto/BLIS loop structure) around one register-tile micro-kernel per ISA
// (gemm_portable.c, gemm_avx2.c, gemm_avx512.c, gemm_neon.c). The micro-kernels for wider ISAs are compiled with
// per-function target attributes, so the library builds for the baseline ISA and picks the kernel at run time from
// what cpu.c allows: it runs correctly on any x86-64 and on arm64.
#include "CCLIPKernels.h"
#include "gemm_kernels.h"
#include "scratch.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <unistd.h>

// Packed weights are written once into fresh memory; transparent huge pages turn a page fault per 4 KiB of a
// 600 MB model into one per 2 MiB (advice only: nothing changes where they are off).
static void advise_huge_pages(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1), end = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (bytes >= 2 * huge && end > start) madvise((void *)start, end - start, MADV_HUGEPAGE);
#else
    (void)p; (void)bytes;
#endif
}

// Cache blocking: an MR x KC sliver of A stays in L1, an MC x KC block of A in L2, a KC x NC block of B in L2/L3.
enum { KC = 384, NC = 2048, MC_TILES = 16, TILE_MAX = 12 * 32, SMALL_M = 64 };

int clip_gemm_kernel_available(int kernel) {
    const unsigned f = clip_cpu_features();
    switch (kernel) {
    case CLIP_GEMM_AUTO:
    case CLIP_GEMM_PORTABLE:
        return 1;
#if defined(__x86_64__) || defined(__i386__)
    case CLIP_GEMM_AVX2:
        return (f & CLIP_CPU_AVX2) != 0;
    case CLIP_GEMM_AVX512:
        return (f & CLIP_CPU_AVX512) != 0;
#endif
#if defined(__aarch64__)
    case CLIP_GEMM_NEON:
        return (f & CLIP_CPU_NEON) != 0;
#endif
    default:
        (void)f;
        return 0;
    }
}

int clip_gemm_best_kernel(void) {
    switch (clip_cpu_level()) {
    case CLIP_LEVEL_AVX512: return CLIP_GEMM_AVX512;
    case CLIP_LEVEL_AVX2: return CLIP_GEMM_AVX2;
    case CLIP_LEVEL_NEON: return CLIP_GEMM_NEON;
    default: return CLIP_GEMM_PORTABLE;
    }
}

static const clip_gemm_desc *describe(int kernel) {
    if (kernel == CLIP_GEMM_AUTO) kernel = clip_gemm_best_kernel();
    if (!clip_gemm_kernel_available(kernel)) return NULL;
    switch (kernel) {
#if defined(__x86_64__) || defined(__i386__)
    case CLIP_GEMM_AVX512: return &clip_gemm_avx512;
    case CLIP_GEMM_AVX2: return &clip_gemm_avx2;
#endif
#if defined(__aarch64__)
    case CLIP_GEMM_NEON: return &clip_gemm_neon;
#endif
    case CLIP_GEMM_PORTABLE: return &clip_gemm_portable;
    default: return NULL;
    }
}

static _Thread_local clip_scratch scratch_a, scratch_b;

// Rows of A or B the packing loops prefetch ahead of the one they copy. The weight gradients' operands come from
// memory (their k is a batch's token rows, 8,320 for the default model at batch 128), and the loads stalled in
// perf: prefetching 4 rows ahead made those products 5-7 % faster on an Ice Lake Xeon (8 and 16 no better;
// measured with a prefetch every 16 floats, before it walked the row's cache lines).
enum { PACK_AHEAD = 4 };

// Copies `extent` consecutive values of each of `kc` stored rows (row p at src + p·ld) into panels of `width` values
// (panel q·width at dst + q·width·kc, its row p at + p·width), zero-padding the last panel: A's row panels read from
// a stored Aᵀ, B's column panels from a stored B. A row's `extent` values are copied in one go, so that a prefetch
// of each cache line they span in the row PACK_AHEAD on covers all the loop will read there. (Going row by row
// instead of panel by panel changed nothing measurable by itself; it is there for the prefetch.)
static void pack_dealt(const float *src, ptrdiff_t ld, ptrdiff_t kc, ptrdiff_t extent, int width, float *dst) {
    for (ptrdiff_t p = 0; p < kc; p++) {
        const float *s = src + p * ld;
        if (p + PACK_AHEAD < kc) {
            const float *ahead = s + PACK_AHEAD * ld;
            for (uintptr_t line = (uintptr_t)ahead & ~(uintptr_t)63; line < (uintptr_t)(ahead + extent); line += 64)
                __builtin_prefetch((const void *)line);
        }
        for (ptrdiff_t q = 0; q < extent; q += width) {
            const ptrdiff_t n = extent - q < width ? extent - q : width;
            float *d = dst + q * kc + p * width;
            ptrdiff_t j = 0;
            for (; j < n; j++) d[j] = s[q + j];
            for (; j < width; j++) d[j] = 0.0f;
        }
    }
}

// Packs rows [i0, i0+mc) x cols [p0, p0+kc) of op(A) into MR-row panels, k-major inside a panel,
// zero-padding the last panel.
static void pack_a(const clip_gemm_desc *kd, int trans_a, const float *a, ptrdiff_t lda, ptrdiff_t i0, ptrdiff_t mc,
                   ptrdiff_t p0, ptrdiff_t kc, float *dst) {
    const int mr = kd->mr;
    if (trans_a) {
        pack_dealt(a + p0 * lda + i0, lda, kc, mc, mr, dst);
        return;
    }
    for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
        ptrdiff_t rows = mc - ir < mr ? mc - ir : mr;
        ptrdiff_t p = 0;
        if (rows == mr && kd->pack_rows) p = kd->pack_rows(a + (i0 + ir) * lda + p0, lda, kc, dst);
        for (; p < kc; p++) {
            float *d = dst + p * mr;
            const float *s = a + (i0 + ir) * lda + (p0 + p);
            ptrdiff_t i = 0;
            for (; i < rows; i++) d[i] = s[i * lda];
            for (; i < mr; i++) d[i] = 0.0f;
        }
        dst += kc * mr;
    }
}

// Packs rows [i0, i0+mc) x k range [p0, p0+kc) of the implicit im2col matrix: row r is output pixel r (row-major
// over the output), k index p is (dy, dx, channel) in that order, zero where the field leaves the image.
static void pack_a_conv(const clip_gemm_desc *kd, const clip_conv_geometry *g, ptrdiff_t i0, ptrdiff_t mc,
                        ptrdiff_t p0, ptrdiff_t kc, float *dst) {
    const ptrdiff_t c = g->channels, k = g->kernel;
    const int mr = kd->mr, v = kd->conv_channels;
    for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
        const ptrdiff_t rows = mc - ir < mr ? mc - ir : mr, r0 = g->first_pixel + i0 + ir;
        ptrdiff_t p = 0;
        if (rows == mr && kd->pack_conv && c % v == 0 && p0 % v == 0) p = kd->pack_conv(g, r0, p0, kc, dst);
        for (; p < kc; p++) {
            const ptrdiff_t q = p0 + p, span = q / c, ch = q % c;
            float *d = dst + p * mr;
            ptrdiff_t i = 0;
            for (; i < rows; i++) {
                const float *src = clip_conv_field(g, r0 + i, span / k, span % k);
                d[i] = src ? src[ch] : 0.0f;
            }
            for (; i < mr; i++) d[i] = 0.0f;
        }
        dst += kc * mr;
    }
}

// Packs rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into NR-column panels, zero-padding the last panel.
static void pack_b(int trans_b, const float *b, ptrdiff_t ldb, ptrdiff_t p0, ptrdiff_t kc, ptrdiff_t j0,
                   ptrdiff_t nc, int nr, float *dst) {
    if (!trans_b) {
        pack_dealt(b + p0 * ldb + j0, ldb, kc, nc, nr, dst);
        return;
    }
    for (ptrdiff_t jr = 0; jr < nc; jr += nr) {
        ptrdiff_t cols = nc - jr < nr ? nc - jr : nr;
        for (ptrdiff_t p = 0; p < kc; p++) {
            float *d = dst + p * nr;
            const float *s = b + (j0 + jr) * ldb + (p0 + p);
            ptrdiff_t j = 0;
            for (; j < cols; j++) d[j] = s[j * ldb];
            for (; j < nr; j++) d[j] = 0.0f;
        }
        dst += kc * nr;
    }
}

// One packed A block (mc rows) against B panels at `bbase + jr * kc` for columns jr in [j0, j1) (j0 a multiple of NR):
// C[0..mc, j0..j1] = alpha * A·B + beta * C, with `c` pointing at the block's first row and column 0. Partial row
// panels go to the kernel's edge variant when it has one; other edge tiles are computed into a buffer and merged.
// One tile of the macro-kernel: a full one straight from the micro-kernel (or its edge variant for a partial row
// panel), others through a buffer merged into C.
static inline void macro_tile(const clip_gemm_desc *kd, ptrdiff_t kc, const float *ap, ptrdiff_t rows, const float *bp,
                              ptrdiff_t jr, ptrdiff_t cols, float *cp, ptrdiff_t ldc, float alpha, float beta,
                              const clip_epilogue *ep, float *tile) {
    const int mr = kd->mr, nr = kd->nr;
    if (cols == nr && (rows == mr || kd->edge)) {
        const clip_epilogue local = clip_tile_local(ep, jr);
        if (rows == mr) kd->ukr(kc, ap, bp, cp, ldc, alpha, beta, ep ? &local : NULL);
        else kd->edge(rows, kc, ap, bp, cp, ldc, alpha, beta, ep ? &local : NULL);
        return;
    }
    kd->ukr(kc, ap, bp, tile, nr, 1.0f, 0.0f, NULL);
    clip_merge_tile(cp, ldc, tile, nr, rows, cols, alpha, beta, ep, jr);
}

static void macro_block(const clip_gemm_desc *kd, ptrdiff_t kc, const float *pa, ptrdiff_t mc, const float *bbase,
                        ptrdiff_t j0, ptrdiff_t j1, float *c, ptrdiff_t ldc, float alpha, float beta,
                        const clip_epilogue *ep) {
    const int mr = kd->mr, nr = kd->nr;
    float tile[TILE_MAX] __attribute__((aligned(64)));
    // Row panels outermost: the MR x KC sliver of A (18 KB at 12 x 384) stays in L1 while the B panels stream past
    // it from L2/L3 in order, which the hardware prefetcher follows (3-7 % faster on an AVX-512 Zen 4 than keeping a
    // 48 KB B panel, which does not fit L1, and cycling the A slivers; no difference measurable on an AVX2 Zen 3).
    if (mc <= SMALL_M) {
        // Few rows (one image's tokens): each B panel is used by all of them before the next, so the weights, read
        // from memory once per product, stream evenly under the arithmetic instead of all during the first row panel.
        // One image of ViT-B/32 (50 rows, one thread's half of each layer's columns, weights cold): faster on an Ice
        // Lake core in 14 of 15 interleaved pairs (by up to 26 %), one equal; the tiles and their sums are the same.
        for (ptrdiff_t jr = j0; jr < j1; jr += nr) {
            const ptrdiff_t cols = j1 - jr < nr ? j1 - jr : nr;
            for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
                const ptrdiff_t rows = mc - ir < mr ? mc - ir : mr;
                macro_tile(kd, kc, pa + ir * kc, rows, bbase + jr * kc, jr, cols, c + ir * ldc + jr, ldc, alpha, beta,
                           ep, tile);
            }
        }
        return;
    }
    for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
        const ptrdiff_t rows = mc - ir < mr ? mc - ir : mr;
        for (ptrdiff_t jr = j0; jr < j1; jr += nr) {
            const ptrdiff_t cols = j1 - jr < nr ? j1 - jr : nr;
            macro_tile(kd, kc, pa + ir * kc, rows, bbase + jr * kc, jr, cols, c + ir * ldc + jr, ldc, alpha, beta, ep,
                       tile);
        }
    }
}

int clip_sgemm(int kernel, int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
               const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta, float *c,
               ptrdiff_t ldc) {
    const clip_gemm_desc *kd = describe(kernel);
    if (!kd) return -1;
    if (m < 0 || n < 0 || k < 0) return -1;
    if (m == 0 || n == 0) return 0;
    if (ldc < n) return -1;
    if (k == 0 || alpha == 0.0f) {
        for (ptrdiff_t i = 0; i < m; i++) {
            float *ci = c + i * ldc;
            if (beta == 0.0f) memset(ci, 0, (size_t)n * sizeof(float));
            else for (ptrdiff_t j = 0; j < n; j++) ci[j] *= beta;
        }
        return 0;
    }
    const int mr = kd->mr, nr = kd->nr;
    const ptrdiff_t mc_max = (ptrdiff_t)mr * MC_TILES;
    const ptrdiff_t kc_max = k < KC ? k : KC;
    const ptrdiff_t nc_max = n < NC ? n : NC;
    float *pa = clip_scratch_get(&scratch_a, (size_t)(mc_max * kc_max));
    float *pb = clip_scratch_get(&scratch_b, (size_t)(((nc_max + nr - 1) / nr) * nr * kc_max));
    if (!pa || !pb) return -1;
    for (ptrdiff_t jc = 0; jc < n; jc += NC) {
        const ptrdiff_t nc = n - jc < NC ? n - jc : NC;
        for (ptrdiff_t pc = 0; pc < k; pc += KC) {
            const ptrdiff_t kc = k - pc < KC ? k - pc : KC;
            // Later K blocks accumulate onto what the first one wrote.
            const float beta_k = pc == 0 ? beta : 1.0f;
            pack_b(trans_b, b, ldb, pc, kc, jc, nc, nr, pb);
            for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
                const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
                pack_a(kd, trans_a, a, lda, ic, mc, pc, kc, pa);
                macro_block(kd, kc, pa, mc, pb, 0, nc, c + ic * ldc + jc, ldc, alpha, beta_k, NULL);
            }
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------
// Pre-packed B: a weight matrix packed once, in the panel layout `pack_b` produces, for every KC block:
// block p (rows [pc, pc + kc)) starts at pc * npad, panel j of it at pc * npad + j * kc * NR.

static ptrdiff_t round_up(ptrdiff_t v, ptrdiff_t m) { return (v + m - 1) / m * m; }

int clip_gemm_block_k(void) { return KC; }

ptrdiff_t clip_packed_b_count(int kernel, ptrdiff_t k, ptrdiff_t n) {
    const clip_gemm_desc *kd = describe(kernel);
    if (!kd || k < 0 || n < 0) return -1;
    return k * round_up(n, kd->nr);
}

int clip_gemm_panel_width(int kernel) {
    const clip_gemm_desc *kd = describe(kernel);
    return kd ? kd->nr : -1;
}

int clip_pack_b(int kernel, int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, float *out) {
    const clip_gemm_desc *kd = describe(kernel);
    if (!kd || k < 0 || n < 0) return -1;
    ptrdiff_t npad = round_up(n, kd->nr);
    advise_huge_pages(out, (size_t)(k * npad) * sizeof(float));
    for (ptrdiff_t pc = 0; pc < k; pc += KC) {
        ptrdiff_t kc = k - pc < KC ? k - pc : KC;
        pack_b(trans_b, b, ldb, pc, kc, 0, n, kd->nr, out + pc * npad);
    }
    return 0;
}

// Where the left-hand rows of a packed product come from: a row-major matrix, or the receptive fields of a
// channels-last image (implicit im2col).
typedef struct {
    int trans_a;
    const float *a;
    ptrdiff_t lda;
    const clip_conv_geometry *conv;  // when set, A is the im2col of conv->image and `a`/`lda` are unused
} a_source;

static void pack_a_source(const clip_gemm_desc *kd, const a_source *src, ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t p0,
                          ptrdiff_t kc, float *dst) {
    if (src->conv) pack_a_conv(kd, src->conv, i0, mc, p0, kc, dst);
    else pack_a(kd, src->trans_a, src->a, src->lda, i0, mc, p0, kc, dst);
}

// The packed B columns one pass over the row blocks of A covers: a kc-deep slice of them stays in half the core's L2
// (Intel's 2 MiB, Zen 4's 1 MiB, Zen 3's 512 KiB) while every A block streams past it. Without it a wide product
// (ViT-B's c_fc, 3,072 columns: a 4.7 MB slice) re-read B from L3 for every 192 rows: 150-165 GFLOP/s on one core of
// an Intel Xeon (model 207) where the blocked loop reaches 195-205 (single thread, best of 30; bitwise the same
// results, the order of the k sums is unchanged). Columns are split into equal blocks so a slice just over the bound
// does not leave a sliver.
static ptrdiff_t nc_block(ptrdiff_t kc, ptrdiff_t cols, int nr) {
    static _Atomic ptrdiff_t budget = 0;
    ptrdiff_t bytes = atomic_load_explicit(&budget, memory_order_relaxed);
    if (bytes == 0) {
        long l2 = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE)
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        bytes = l2 > 0 ? (ptrdiff_t)l2 / 2 : (ptrdiff_t)1 << 19;
        bytes = bytes < ((ptrdiff_t)1 << 17) ? (ptrdiff_t)1 << 17 : bytes > ((ptrdiff_t)1 << 22) ? (ptrdiff_t)1 << 22 : bytes;
        atomic_store_explicit(&budget, bytes, memory_order_relaxed);
    }
    ptrdiff_t most = bytes / (kc * (ptrdiff_t)sizeof(float)) / nr * nr;
    if (most < nr) most = nr;
    const ptrdiff_t blocks = (cols + most - 1) / most;
    return ((cols + blocks - 1) / blocks + nr - 1) / nr * nr;
}

static int packed_driver(int kernel, const a_source *src, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                         const float *packed, ptrdiff_t j0, ptrdiff_t j1, float beta, float *c, ptrdiff_t ldc,
                         const clip_epilogue *ep) {
    const clip_gemm_desc *kd = describe(kernel);
    if (!kd) return -1;
    const int mr = kd->mr, nr = kd->nr;
    if (m < 0 || k < 0 || j0 < 0 || j1 > n || j0 > j1 || j0 % nr != 0) return -1;
    if (m == 0 || j1 == j0) return 0;
    if (k == 0 || alpha == 0.0f) {
        for (ptrdiff_t i = 0; i < m; i++) {
            float *ci = c + i * ldc;
            for (ptrdiff_t j = j0; j < j1; j++) ci[j] = beta == 0.0f ? 0.0f : ci[j] * beta;
        }
        clip_tile_epilogue(ep, c + j0, ldc, m, j1 - j0, j0);
        return 0;
    }
    const ptrdiff_t npad = round_up(n, nr);
    const ptrdiff_t mc_max = (ptrdiff_t)mr * MC_TILES;
    const ptrdiff_t kc_max = k < KC ? k : KC;
    // When B's columns come in several blocks, every row block of A passes each of them: all of A's kc-deep slice is
    // packed once per k block when it takes at most 8 MiB (3,152 rows of ViT-B/16 at batch 16: 4.8 MB), else each row
    // block is packed again for every column block.
    const ptrdiff_t m_pad = (m + mr - 1) / mr * mr;
    const int split = nc_block(kc_max, j1 - j0, nr) < j1 - j0;  // the deepest k block splits if any does
    const int keep_a = split && m_pad * kc_max * (ptrdiff_t)sizeof(float) <= ((ptrdiff_t)8 << 20);
    float *pa = clip_scratch_get(&scratch_a, (size_t)((keep_a ? m_pad : mc_max) * kc_max));
    if (!pa) return -1;
    for (ptrdiff_t pc = 0; pc < k; pc += KC) {
        const ptrdiff_t kc = k - pc < KC ? k - pc : KC;
        const float beta_k = pc == 0 ? beta : 1.0f;
        const float *block = packed + pc * npad;
        const ptrdiff_t ncb = nc_block(kc, j1 - j0, nr);
        const int repack = !keep_a || ncb >= j1 - j0;
        if (!repack) {
            for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
                pack_a_source(kd, src, ic, m - ic < mc_max ? m - ic : mc_max, pc, kc, pa + ic * kc);
            }
        }
        for (ptrdiff_t jc = j0; jc < j1; jc += ncb) {
            const ptrdiff_t je = j1 - jc < ncb ? j1 : jc + ncb;
            for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
                const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
                if (repack) pack_a_source(kd, src, ic, mc, pc, kc, pa);
                macro_block(kd, kc, repack ? pa : pa + ic * kc, mc, block, jc, je, c + ic * ldc, ldc, alpha, beta_k,
                            pc + kc == k ? ep : NULL);
            }
        }
    }
    return 0;
}

int clip_sgemm_packed(int kernel, int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a,
                      ptrdiff_t lda, const float *packed, ptrdiff_t j0, ptrdiff_t j1, float beta, float *c,
                      ptrdiff_t ldc, const clip_epilogue *ep) {
    const a_source src = {trans_a, a, lda, NULL};
    return packed_driver(kernel, &src, m, n, k, alpha, packed, j0, j1, beta, c, ldc, ep);
}

int clip_conv_packed(int kernel, const clip_conv_geometry *g, ptrdiff_t row0, ptrdiff_t rows, ptrdiff_t n,
                     const float *packed, ptrdiff_t j0, ptrdiff_t j1, float *c, ptrdiff_t ldc,
                     const clip_epilogue *ep) {
    if (!g || !g->image || g->height <= 0 || g->width <= 0 || g->channels <= 0 || g->kernel <= 0 || g->stride <= 0 ||
        g->padding < 0 || g->out_height <= 0 || g->out_width <= 0)
        return -1;
    if (row0 < 0 || rows < 0 || row0 + rows > g->out_height * g->out_width) return -1;
    // Rows are relative to row0: shift the geometry's first pixel instead of the pack functions' indices.
    clip_conv_geometry shifted = *g;
    shifted.first_pixel = g->first_pixel + row0;
    const a_source src = {0, NULL, 0, &shifted};
    return packed_driver(kernel, &src, rows, n, g->kernel * g->kernel * g->channels, 1.0f, packed, j0, j1, 0.0f, c, ldc,
                         ep);
}
