// Packed, cache-blocked SGEMM (the Goto/BLIS loop structure) with one register-tile micro-kernel per ISA.
// The micro-kernels for wider ISAs are compiled with per-function target attributes, so the library builds
// for the baseline ISA and picks the kernel at run time: it runs correctly on any x86-64 and on arm64.
#include "CCLIPKernels.h"
#include "scratch.h"
#include "tile_store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CLIP_X86 1
#endif

// A micro-kernel computes one full MR x NR tile and applies `ep` (NULL, or bias offset to the tile) to it.
typedef void (*ukr_fn)(ptrdiff_t kc, const float *pa, const float *pb, float *c, ptrdiff_t ldc,
                       float alpha, float beta, const clip_epilogue *ep);

// The same for a tile of `rows` < MR rows (full NR columns), written straight to C; NULL when a kernel has none.
typedef void (*edge_fn)(ptrdiff_t rows, ptrdiff_t kc, const float *pa, const float *pb, float *c, ptrdiff_t ldc,
                        float alpha, float beta, const clip_epilogue *ep);

typedef struct {
    int mr, nr;
    ukr_fn ukr;
    edge_fn edge;
} kernel_desc;

// Cache blocking: an MR x KC sliver of A stays in L1, an MC x KC block of A in L2, a KC x NC block of B in L2/L3.
enum { KC = 384, NC = 2048, MC_TILES = 16, TILE_MAX = 12 * 32 };

// ---------------------------------------------------------------------------------------------------------
// Portable micro-kernel: 4 x 8 with 4-wide vectors (GCC/Clang vector extensions): NEON on arm64, SSE on baseline
// x86-64. Eight accumulators plus two B vectors fit either register file.
enum { P_MR = 4, P_NR = 8 };
typedef float v4f __attribute__((vector_size(16)));

static inline v4f load4(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

static void ukr_portable(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                         ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    v4f acc[P_MR][2];
    for (int i = 0; i < P_MR; i++) {
        acc[i][0] = (v4f){0, 0, 0, 0};
        acc[i][1] = (v4f){0, 0, 0, 0};
    }
    for (ptrdiff_t p = 0; p < kc; p++) {
        const v4f b0 = load4(pb + p * P_NR), b1 = load4(pb + p * P_NR + 4);
        const float *ap = pa + p * P_MR;
        for (int i = 0; i < P_MR; i++) {
            const v4f av = (v4f){ap[i], ap[i], ap[i], ap[i]};
            acc[i][0] += av * b0;
            acc[i][1] += av * b1;
        }
    }
    const v4f va = (v4f){alpha, alpha, alpha, alpha}, vb = (v4f){beta, beta, beta, beta};
    for (int i = 0; i < P_MR; i++) {
        float *ci = c + i * ldc;
        v4f r0 = acc[i][0] * va, r1 = acc[i][1] * va;
        if (beta != 0.0f) {
            r0 += vb * load4(ci);
            r1 += vb * load4(ci + 4);
        }
        if (ep && ep->bias) {
            r0 += load4(ep->bias);
            r1 += load4(ep->bias + 4);
        }
        store4(ci, r0);
        store4(ci + 4, r1);
    }
    if (ep && ep->activation != CLIP_ACTIVATION_NONE) clip_epilogue_tile(c, ldc, P_MR, P_NR, NULL, ep->activation);
}

#ifdef CLIP_X86
// ---------------------------------------------------------------------------------------------------------
// AVX2 + FMA micro-kernel: 6 x 16 (12 ymm accumulators).
enum { A2_MR = 6, A2_NR = 16 };

__attribute__((target("avx2,fma")))
static void ukr_avx2(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                     ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    __m256 acc[A2_MR][2];
    for (int i = 0; i < A2_MR; i++) { acc[i][0] = _mm256_setzero_ps(); acc[i][1] = _mm256_setzero_ps(); }
    for (ptrdiff_t p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(pb + p * A2_NR);
        __m256 b1 = _mm256_loadu_ps(pb + p * A2_NR + 8);
        const float *ap = pa + p * A2_MR;
        for (int i = 0; i < A2_MR; i++) {
            __m256 av = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha);
    for (int i = 0; i < A2_MR; i++) {
        float *ci = c + i * ldc;
        __m256 r0 = _mm256_mul_ps(acc[i][0], va), r1 = _mm256_mul_ps(acc[i][1], va);
        if (beta != 0.0f) {
            __m256 vb = _mm256_set1_ps(beta);
            r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
            r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
        }
        if (ep && ep->bias) {
            r0 = _mm256_add_ps(r0, _mm256_loadu_ps(ep->bias));
            r1 = _mm256_add_ps(r1, _mm256_loadu_ps(ep->bias + 8));
        }
        _mm256_storeu_ps(ci, r0);
        _mm256_storeu_ps(ci + 8, r1);
    }
    if (ep && ep->activation != CLIP_ACTIVATION_NONE) clip_epilogue_tile(c, ldc, A2_MR, A2_NR, NULL, ep->activation);
}

// ---------------------------------------------------------------------------------------------------------
// AVX-512F micro-kernel: 12 x 32 (24 zmm accumulators, 2 for B, 1 broadcast).
enum { A5_MR = 12, A5_NR = 32 };

// The kernel for R <= 12 rows (R a compile-time constant after inlining); A panels keep their stride of 12.
// no_builtin: otherwise the accumulator zeroing becomes a memset of a stack array that is then reloaded into
// registers, costing ~100 cycles per call (most of a short-k attention tile).
__attribute__((target("avx512f"), no_builtin("memset"), always_inline))
static inline void ukr_avx512_rows(const int R, ptrdiff_t kc, const float *restrict pa, const float *restrict pb,
                                   float *restrict c, ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    __m512 acc[A5_MR][2];
    #pragma clang loop unroll(full)
    for (int i = 0; i < A5_MR; i++) {
        if (i < R) { acc[i][0] = _mm512_setzero_ps(); acc[i][1] = _mm512_setzero_ps(); }
    }
    for (ptrdiff_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(pb + p * A5_NR);
        __m512 b1 = _mm512_loadu_ps(pb + p * A5_NR + 16);
        const float *ap = pa + p * A5_MR;
        #pragma clang loop unroll(full)
        for (int i = 0; i < A5_MR; i++) {
            if (i >= R) continue;
            __m512 av = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha);
    #pragma clang loop unroll(full)
    for (int i = 0; i < A5_MR; i++) {
        if (i < R) { acc[i][0] = _mm512_mul_ps(acc[i][0], va); acc[i][1] = _mm512_mul_ps(acc[i][1], va); }
    }
    clip_store_tile32(R, c, ldc, acc, beta, ep);
}

__attribute__((target("avx512f")))
static void ukr_avx512(ptrdiff_t kc, const float *restrict pa, const float *restrict pb, float *restrict c,
                       ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
    ukr_avx512_rows(A5_MR, kc, pa, pb, c, ldc, alpha, beta, ep);
}

// The last row panel of a GEMM is usually partial (50 rows of a ViT-B/32 image are four panels and 2 rows): a kernel
// per row count does only those rows instead of a full 12-row tile into a buffer.
__attribute__((target("avx512f")))
static void edge_avx512(ptrdiff_t rows, ptrdiff_t kc, const float *restrict pa, const float *restrict pb,
                        float *restrict c, ptrdiff_t ldc, float alpha, float beta, const clip_epilogue *ep) {
#define EDGE_CALL(R) ukr_avx512_rows(R, kc, pa, pb, c, ldc, alpha, beta, ep)
    CLIP_EDGE_ROWS(rows, EDGE_CALL)
#undef EDGE_CALL
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#endif

int clip_gemm_kernel_available(int kernel) {
    switch (kernel) {
    case CLIP_GEMM_AUTO:
    case CLIP_GEMM_PORTABLE:
        return 1;
#ifdef CLIP_X86
    case CLIP_GEMM_AVX2:
        return cpu_has_avx2();
    case CLIP_GEMM_AVX512:
        return cpu_has_avx512();
#endif
    default:
        return 0;
    }
}

int clip_gemm_best_kernel(void) {
#ifdef CLIP_X86
    if (cpu_has_avx512()) return CLIP_GEMM_AVX512;
    if (cpu_has_avx2()) return CLIP_GEMM_AVX2;
#endif
    return CLIP_GEMM_PORTABLE;
}

static int describe(int kernel, kernel_desc *d) {
    if (kernel == CLIP_GEMM_AUTO) kernel = clip_gemm_best_kernel();
    if (!clip_gemm_kernel_available(kernel)) return -1;
    switch (kernel) {
#ifdef CLIP_X86
    case CLIP_GEMM_AVX512: d->mr = A5_MR; d->nr = A5_NR; d->ukr = ukr_avx512; d->edge = edge_avx512; return 0;
    case CLIP_GEMM_AVX2: d->mr = A2_MR; d->nr = A2_NR; d->ukr = ukr_avx2; d->edge = NULL; return 0;
#endif
    case CLIP_GEMM_PORTABLE: d->mr = P_MR; d->nr = P_NR; d->ukr = ukr_portable; d->edge = NULL; return 0;
    default: return -1;
    }
}

static _Thread_local clip_scratch scratch_a, scratch_b;

#ifdef CLIP_X86
// A full 12-row panel of row-major A, 16 columns at a time through a register transpose (the scalar gather below
// was 2 % of ViT and 12 % of ResNet inference); returns the columns done.
__attribute__((target("avx512f")))
static ptrdiff_t pack_a_rows12_avx512(const float *a, ptrdiff_t lda, ptrdiff_t kc, float *dst) {
    ptrdiff_t p = 0;
    for (; p + 16 <= kc; p += 16) {
        __m512 r[12];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) r[i] = _mm512_loadu_ps(a + i * lda + p);
        clip_store_columns12(r, dst + p * 12);
    }
    return p;
}
#endif

// Packs rows [i0, i0+mc) x cols [p0, p0+kc) of op(A) into MR-row panels, k-major inside a panel,
// zero-padding the last panel.
static void pack_a(int trans_a, const float *a, ptrdiff_t lda, ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t p0,
                   ptrdiff_t kc, int mr, float *dst) {
    for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
        ptrdiff_t rows = mc - ir < mr ? mc - ir : mr;
        ptrdiff_t p = 0;
#ifdef CLIP_X86
        // mr is 12 only for the AVX-512 kernel, so the CPU has AVX-512F here.
        if (!trans_a && mr == 12 && rows == 12) p = pack_a_rows12_avx512(a + (i0 + ir) * lda + p0, lda, kc, dst);
#endif
        for (; p < kc; p++) {
            float *d = dst + p * mr;
            ptrdiff_t i = 0;
            if (!trans_a) {
                const float *s = a + (i0 + ir) * lda + (p0 + p);
                for (; i < rows; i++) d[i] = s[i * lda];
            } else {
                const float *s = a + (p0 + p) * lda + (i0 + ir);
                for (; i < rows; i++) d[i] = s[i];
            }
            for (; i < mr; i++) d[i] = 0.0f;
        }
        dst += kc * mr;
    }
}

// Source of im2col row `r` (an output pixel) for the kernel offset (dy, dx): the input pixel's channels, or NULL
// outside the image.
static inline const float *conv_field(const clip_conv_geometry *g, ptrdiff_t r, ptrdiff_t dy, ptrdiff_t dx) {
    const ptrdiff_t oy = r / g->out_width, ox = r % g->out_width;
    const ptrdiff_t iy = oy * g->stride + dy - g->padding, ix = ox * g->stride + dx - g->padding;
    if (iy < 0 || iy >= g->height || ix < 0 || ix >= g->width) return NULL;
    return g->image + (iy * g->width + ix) * g->channels;
}

#ifdef CLIP_X86
// A full 12-row panel, 16 k values at a time: with channels a multiple of 16 and blocks starting at multiples of
// 16, a block never straddles two kernel offsets, so each row contributes one contiguous (or all-zero) vector.
__attribute__((target("avx512f")))
static ptrdiff_t pack_a_conv12_avx512(const clip_conv_geometry *g, ptrdiff_t r0, ptrdiff_t p0, ptrdiff_t kc,
                                      float *dst) {
    const ptrdiff_t c = g->channels, k = g->kernel;
    ptrdiff_t p = 0;
    for (; p + 16 <= kc; p += 16) {
        const ptrdiff_t q = p0 + p, span = q / c, ch = q % c;
        const ptrdiff_t dy = span / k, dx = span % k;
        __m512 r[12];
        #pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) {
            const float *src = conv_field(g, r0 + i, dy, dx);
            r[i] = src ? _mm512_loadu_ps(src + ch) : _mm512_setzero_ps();
        }
        clip_store_columns12(r, dst + p * 12);
    }
    return p;
}
#endif

// Packs rows [i0, i0+mc) x k range [p0, p0+kc) of the implicit im2col matrix: row r is output pixel r (row-major
// over the output), k index p is (dy, dx, channel) in that order, zero where the field leaves the image.
static void pack_a_conv(const clip_conv_geometry *g, ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t p0, ptrdiff_t kc, int mr,
                        float *dst) {
    const ptrdiff_t c = g->channels, k = g->kernel;
    for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
        const ptrdiff_t rows = mc - ir < mr ? mc - ir : mr, r0 = g->first_pixel + i0 + ir;
        ptrdiff_t p = 0;
#ifdef CLIP_X86
        if (mr == 12 && rows == 12 && c % 16 == 0 && p0 % 16 == 0) p = pack_a_conv12_avx512(g, r0, p0, kc, dst);
#endif
        for (; p < kc; p++) {
            const ptrdiff_t q = p0 + p, span = q / c, ch = q % c;
            float *d = dst + p * mr;
            ptrdiff_t i = 0;
            for (; i < rows; i++) {
                const float *src = conv_field(g, r0 + i, span / k, span % k);
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
    for (ptrdiff_t jr = 0; jr < nc; jr += nr) {
        ptrdiff_t cols = nc - jr < nr ? nc - jr : nr;
        for (ptrdiff_t p = 0; p < kc; p++) {
            float *d = dst + p * nr;
            ptrdiff_t j = 0;
            if (!trans_b) {
                const float *s = b + (p0 + p) * ldb + (j0 + jr);
                for (; j < cols; j++) d[j] = s[j];
            } else {
                const float *s = b + (j0 + jr) * ldb + (p0 + p);
                for (; j < cols; j++) d[j] = s[j * ldb];
            }
            for (; j < nr; j++) d[j] = 0.0f;
        }
        dst += kc * nr;
    }
}

// One packed A block (mc rows) against B panels at `bbase + jr * kc` for columns jr in [j0, j1) (j0 a multiple of NR):
// C[0..mc, j0..j1] = alpha * A·B + beta * C, with `c` pointing at the block's first row and column 0. Partial row
// panels go to the kernel's edge variant when it has one; other edge tiles are computed into a buffer and merged.
static void macro_block(const kernel_desc *kd, ptrdiff_t kc, const float *pa, ptrdiff_t mc, const float *bbase,
                        ptrdiff_t j0, ptrdiff_t j1, float *c, ptrdiff_t ldc, float alpha, float beta,
                        const clip_epilogue *ep) {
    const int mr = kd->mr, nr = kd->nr;
    float tile[TILE_MAX] __attribute__((aligned(64)));
    // Row panels outermost: the MR x KC sliver of A (18 KB at 12 x 384) stays in L1 while the B panels stream past
    // it from L2/L3 in order, which the hardware prefetcher follows (3-7 % faster on this machine than keeping a
    // 48 KB B panel, which does not fit L1, and cycling the A slivers).
    for (ptrdiff_t ir = 0; ir < mc; ir += mr) {
        const ptrdiff_t rows = mc - ir < mr ? mc - ir : mr;
        const float *ap = pa + ir * kc;
        for (ptrdiff_t jr = j0; jr < j1; jr += nr) {
            const ptrdiff_t cols = j1 - jr < nr ? j1 - jr : nr;
            const float *bp = bbase + jr * kc;
            float *cp = c + ir * ldc + jr;
            if (cols == nr && (rows == mr || kd->edge)) {
                const clip_epilogue local = clip_tile_local(ep, jr);
                if (rows == mr) kd->ukr(kc, ap, bp, cp, ldc, alpha, beta, ep ? &local : NULL);
                else kd->edge(rows, kc, ap, bp, cp, ldc, alpha, beta, ep ? &local : NULL);
                continue;
            }
            kd->ukr(kc, ap, bp, tile, nr, 1.0f, 0.0f, NULL);
            clip_merge_tile(cp, ldc, tile, nr, rows, cols, alpha, beta, ep, jr);
        }
    }
}

int clip_sgemm(int kernel, int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
               const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta, float *c,
               ptrdiff_t ldc) {
    kernel_desc kd;
    if (describe(kernel, &kd) != 0) return -1;
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
    const int mr = kd.mr, nr = kd.nr;
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
                pack_a(trans_a, a, lda, ic, mc, pc, kc, mr, pa);
                macro_block(&kd, kc, pa, mc, pb, 0, nc, c + ic * ldc + jc, ldc, alpha, beta_k, NULL);
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
    kernel_desc kd;
    if (describe(kernel, &kd) != 0 || k < 0 || n < 0) return -1;
    return k * round_up(n, kd.nr);
}

int clip_gemm_panel_width(int kernel) {
    kernel_desc kd;
    return describe(kernel, &kd) == 0 ? kd.nr : -1;
}

int clip_pack_b(int kernel, int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, float *out) {
    kernel_desc kd;
    if (describe(kernel, &kd) != 0 || k < 0 || n < 0) return -1;
    ptrdiff_t npad = round_up(n, kd.nr);
    for (ptrdiff_t pc = 0; pc < k; pc += KC) {
        ptrdiff_t kc = k - pc < KC ? k - pc : KC;
        pack_b(trans_b, b, ldb, pc, kc, 0, n, kd.nr, out + pc * npad);
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

static void pack_a_source(const a_source *src, ptrdiff_t i0, ptrdiff_t mc, ptrdiff_t p0, ptrdiff_t kc, int mr,
                          float *dst) {
    if (src->conv) pack_a_conv(src->conv, i0, mc, p0, kc, mr, dst);
    else pack_a(src->trans_a, src->a, src->lda, i0, mc, p0, kc, mr, dst);
}

static int packed_driver(int kernel, const a_source *src, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                         const float *packed, ptrdiff_t j0, ptrdiff_t j1, float beta, float *c, ptrdiff_t ldc,
                         const clip_epilogue *ep) {
    kernel_desc kd;
    if (describe(kernel, &kd) != 0) return -1;
    const int mr = kd.mr, nr = kd.nr;
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
    float *pa = clip_scratch_get(&scratch_a, (size_t)(mc_max * kc_max));
    if (!pa) return -1;
    for (ptrdiff_t pc = 0; pc < k; pc += KC) {
        const ptrdiff_t kc = k - pc < KC ? k - pc : KC;
        const float beta_k = pc == 0 ? beta : 1.0f;
        const float *block = packed + pc * npad;
        for (ptrdiff_t ic = 0; ic < m; ic += mc_max) {
            const ptrdiff_t mc = m - ic < mc_max ? m - ic : mc_max;
            pack_a_source(src, ic, mc, pc, kc, mr, pa);
            macro_block(&kd, kc, pa, mc, block, j0, j1, c + ic * ldc, ldc, alpha, beta_k,
                        pc + kc == k ? ep : NULL);
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
