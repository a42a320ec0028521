#ifndef CCLIPKERNELS_H
#define CCLIPKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set extensions the kernels use, as bits of `clip_cpu_features()`.
enum {
    CLIP_CPU_AVX2 = 1 << 0,         // x86-64 AVX2 and FMA
    CLIP_CPU_AVX512 = 1 << 1,       // AVX-512 F, BW, DQ and VL
    CLIP_CPU_AVX512_VNNI = 1 << 2,  // vpdpbusd on 512-bit vectors
    CLIP_CPU_AVX512_BF16 = 1 << 3,  // vdpbf16ps
    CLIP_CPU_AVX_VNNI = 1 << 4,     // vpdpbusd on 256-bit vectors without AVX-512 (Alder Lake and later)
    CLIP_CPU_X86_ALL = (1 << 5) - 1,
    CLIP_CPU_NEON = 1 << 5,         // AArch64 Advanced SIMD
    CLIP_CPU_NEON_DOTPROD = 1 << 6, // sdot/udot (Armv8.2 DotProd)
    CLIP_CPU_SHA = 1 << 7,          // x86 SHA extensions (sha256rnds2), for content hashes
};

/// The levels `CLIP_CPU` names (`portable`, `avx2`, `avx512`, `neon`; `native` or unset: all the CPU has).
typedef enum {
    CLIP_LEVEL_PORTABLE = 0,
    CLIP_LEVEL_AVX2 = 1,
    CLIP_LEVEL_AVX512 = 2,
    CLIP_LEVEL_NEON = 3,
} clip_level;

/// The features this CPU and OS support, whatever `CLIP_CPU` says.
unsigned clip_cpu_hardware(void);

/// The features the kernels may use: the hardware's, limited to the level `CLIP_CPU` names. Read once per process.
unsigned clip_cpu_features(void);

/// The highest level within `clip_cpu_features()`.
int clip_cpu_level(void);

/// A message when `CLIP_CPU` names an unknown level or one this CPU lacks (the features are then the hardware's,
/// and callers must refuse to run rather than ignore the setting), else NULL.
const char *clip_cpu_error(void);

/// Micro-kernels the SGEMM can run. `CLIP_GEMM_AUTO` picks the fastest one `clip_cpu_features()` allows.
typedef enum {
    CLIP_GEMM_AUTO = 0,
    CLIP_GEMM_PORTABLE = 1,  // plain C, vectorised by the compiler for the baseline ISA (SSE2, NEON)
    CLIP_GEMM_AVX2 = 2,      // x86-64 AVX2 + FMA, 6x16 register tile
    CLIP_GEMM_AVX512 = 3,    // x86-64 AVX-512F, 12x32 register tile
    CLIP_GEMM_NEON = 4,      // AArch64 NEON, 8x12 register tile
} clip_gemm_kernel;

/// Element-wise activations a packed GEMM can apply to its output tiles.
typedef enum {
    CLIP_ACTIVATION_NONE = 0,
    CLIP_ACTIVATION_QUICK_GELU = 1,  // x·σ(1.702x), OpenAI CLIP's MLP
    CLIP_ACTIVATION_GELU = 2,        // x·Φ(x) with the exact error function
    CLIP_ACTIVATION_RELU = 3,        // max(x, 0), the ResNet's
    CLIP_ACTIVATION_GELU_TANH = 4,   // GELU's tanh approximation (PyTorch's approximate='tanh'), SigLIP's MLP
} clip_activation;

/// Activations the register tiles do not compute: applied by `clip_epilogue_tile` as a pass over the stored tile.
#define CLIP_ACTIVATION_IN_PASS(act) ((act) == CLIP_ACTIVATION_GELU || (act) == CLIP_ACTIVATION_GELU_TANH)

/// Work a packed GEMM does on each finished output tile while it is still in cache: C[i, j] += bias[j] (when `bias`
/// is not NULL; indexed by absolute column), then the activation. Replaces separate passes over C.
typedef struct {
    const float *bias;
    int activation;
} clip_epilogue;

/// 1 when `kernel` can run on this CPU (and OS), else 0.
int clip_gemm_kernel_available(int kernel);

/// The kernel `CLIP_GEMM_AUTO` resolves to on this CPU.
int clip_gemm_best_kernel(void);

/// Row-major single-precision GEMM: C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C.
/// op(A) is A (`trans_a == 0`, A is [m, lda]) or Aᵀ (A is [k, lda]); likewise for B.
/// When `beta == 0`, C is not read (it may hold garbage or NaN).
/// Returns 0 on success, -1 if `kernel` is not available on this CPU or an argument is invalid.
int clip_sgemm(int kernel, int trans_a, int trans_b,
               ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
               float alpha, const float *a, ptrdiff_t lda,
               const float *b, ptrdiff_t ldb,
               float beta, float *c, ptrdiff_t ldc);

/// The K blocking of packed B (rows per block).
int clip_gemm_block_k(void);

/// Floats needed to hold B ([k, n]) packed for `kernel`, or -1.
ptrdiff_t clip_packed_b_count(int kernel, ptrdiff_t k, ptrdiff_t n);

/// Column-panel width of `kernel` (the granule for splitting packed B between threads), or -1.
int clip_gemm_panel_width(int kernel);

/// Packs op(B) ([k, n]; B stored [n, ldb] when `trans_b`) once, for repeated products with `clip_sgemm_packed`.
int clip_pack_b(int kernel, int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, float *out);

/// C[:, j0..<j1] = alpha · op(A) · B[:, j0..<j1] + beta · C with B pre-packed for the same `kernel`;
/// `j0` must be a multiple of the panel width. C columns are absolute (C points at column 0).
/// `ep` (may be NULL) is applied to C[:, j0..<j1] after the product.
int clip_sgemm_packed(int kernel, int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a,
                      ptrdiff_t lda, const float *packed_b, ptrdiff_t j0, ptrdiff_t j1, float beta, float *c,
                      ptrdiff_t ldc, const clip_epilogue *ep);

/// A convolution's left-hand side without im2col: output pixel r (row-major over out_height × out_width, counted from
/// `first_pixel`) reads the kernel × kernel field of a channels-last [height, width, channels] image at
/// (oy·stride − padding, ox·stride − padding), zero outside the image; k order (dy, dx, channel).
typedef struct {
    const float *image;
    ptrdiff_t height, width, channels;
    ptrdiff_t kernel, stride, padding;
    ptrdiff_t out_height, out_width;
    ptrdiff_t first_pixel;  // 0 for callers; used internally
} clip_conv_geometry;

/// C[0..rows, j0..<j1] = im2col(image)[row0 ..< row0+rows] · B[:, j0..<j1] with B pre-packed for `kernel` (k =
/// kernel² · channels), then `ep`. The same result as packing an explicit im2col buffer, without writing one.
int clip_conv_packed(int kernel, const clip_conv_geometry *g, ptrdiff_t row0, ptrdiff_t rows, ptrdiff_t n,
                     const float *packed_b, ptrdiff_t j0, ptrdiff_t j1, float *c, ptrdiff_t ldc,
                     const clip_epilogue *ep);

/// 1 when this CPU has AVX512-BF16 (the bf16 GEMM below can run).
int clip_bf16_available(void);

/// bf16 values needed to pack B ([k, n]) for the bf16 GEMM.
ptrdiff_t clip_packed_b_bf16_count(ptrdiff_t k, ptrdiff_t n);

/// Packs op(B) as bf16 (round to nearest even) in the bf16 GEMM's layout.
int clip_pack_b_bf16(int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, uint16_t *out);

/// C[:, j0..<j1] = A · B[:, j0..<j1] + beta · C with A [m, k] fp32 (rounded to bf16 while packed) and B pre-packed
/// bf16; fp32 accumulation. Returns -1 without AVX512-BF16.
int clip_sgemm_packed_bf16(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda, const uint16_t *packed,
                           ptrdiff_t j0, ptrdiff_t j1, float beta, float *c, ptrdiff_t ldc, const clip_epilogue *ep);

/// Row-major C[m,n] = alpha · op(A) · op(B) + beta · C as `clip_sgemm` takes its operands, with both operands rounded
/// to bf16 (nearest even) while packed and fp32 sums: mixed-precision training's products of activations and
/// gradients. Returns -1 without AVX512-BF16.
int clip_sgemm_bf16(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float *a,
                    ptrdiff_t lda, const float *b, ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc);

/// Column-panel width of the bf16 GEMM.
int clip_bf16_panel_width(void);

/// `x` rounded to the nearest bf16 value (for tests and unpacking).
float clip_bf16_round(float x);

/// 1 when `kernel` (a `clip_gemm_kernel`) has an int8 GEMM on this CPU: AVX512-VNNI, AVX2, or NEON with DotProd.
int clip_int8_kernel_available(int kernel);

/// The int8 kernel `CLIP_GEMM_AUTO` resolves to, or -1 when this CPU has none.
int clip_int8_best_kernel(void);

/// Column-panel width of `kernel`'s int8 GEMM, or -1.
int clip_int8_panel_width(int kernel);

/// Consecutive k values packed side by side per column in `kernel`'s int8 layout (4, or 2 for AVX2), or -1.
int clip_int8_group(int kernel);

/// Bytes of int8 codes, and entries of the per-column scale/sum arrays, for B ([k, n]) packed for `kernel`; -1 when
/// it has no int8 GEMM.
ptrdiff_t clip_packed_b_int8_bytes(int kernel, ptrdiff_t k, ptrdiff_t n);
ptrdiff_t clip_packed_b_int8_columns(int kernel, ptrdiff_t n);

/// Quantises op(B) per column (scale max|b|/127, codes rounded half to even) and packs it for `kernel`.
int clip_pack_b_int8(int kernel, int trans_b, ptrdiff_t k, ptrdiff_t n, const float *b, ptrdiff_t ldb, int8_t *out,
                     float *scales, int32_t *sums);

/// C[:, j0..<j1] = A · B[:, j0..<j1] + beta · C with A [m, k] fp32 quantised per row on the fly and B packed int8 for
/// the same `kernel`; exact int32 sums, dequantised in fp32 (identical results on every kernel). Returns -1 when the
/// kernel has no int8 GEMM here or on invalid arguments.
int clip_gemm_packed_int8(int kernel, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a, ptrdiff_t lda,
                          const int8_t *packed, const float *scales, const int32_t *sums, ptrdiff_t j0, ptrdiff_t j1,
                          float beta, float *c, ptrdiff_t ldc, const clip_epilogue *ep);

/// One head of softmax(scale · Q·Kᵀ) · V over `tokens` rows: row i of Q, K and V at q, k, v + i·ld (hd values each),
/// row i of the result at out + i·ldo. With `causal`, row i attends to rows 0...i only. `kernel` is the instruction
/// set (a `clip_gemm_kernel`; every one has an attention kernel). Scratch is per thread. Returns -1 when the kernel is
/// unavailable, its scratch cannot be allocated, or on invalid arguments.
int clip_attention_head(int kernel, ptrdiff_t tokens, ptrdiff_t hd, float scale, int causal, const float *q,
                        const float *k, const float *v, ptrdiff_t ld, float *out, ptrdiff_t ldo);

/// QuickGELU x·σ(1.702x) in place (vectorised exp, error ≤ 2 ulp).
void clip_quick_gelu(float *x, ptrdiff_t n);

/// GELU x·Φ(x) in place, with the exact normal CDF (erfc fit, relative error < 2e-7; vectorised).
void clip_gelu(float *x, ptrdiff_t n);

/// GELU's tanh approximation ½x(1 + tanh(√(2/π)(x + 0.044715x³))) = x·σ(2√(2/π)(x + 0.044715x³)) in place, as
/// PyTorch's `approximate='tanh'` (vectorised exp, error ≤ 2 ulp of the sigmoid).
void clip_gelu_tanh(float *x, ptrdiff_t n);

/// SwiGLU over `rows` rows: row r of `gx` (2·hidden values) holds the gate g then the value x; row r of `out`
/// (hidden values) gets silu(g)·x, silu(g) = g·σ(g) (vectorised exp, error ≤ 2 ulp of the sigmoid).
void clip_swiglu(const float *gx, ptrdiff_t rows, ptrdiff_t hidden, float *out);

/// Rotary position embedding in place over `n` values in timm's interleaved layout: each pair (a, b) = (x[2i],
/// x[2i+1]) becomes (a·cos[2i] − b·sin[2i], b·cos[2i+1] + a·sin[2i+1]). `n` even.
void clip_rotary_interleaved(float *x, ptrdiff_t n, const float *sin, const float *cos);

/// Softmax over `n` values in place (max-subtracted).
void clip_softmax(float *x, ptrdiff_t n);

/// LayerNorm of `rows` rows of `width` values: (x − mean) / sqrt(var + eps) · gamma + beta; `out` may equal `x`.
void clip_layer_norm(const float *x, ptrdiff_t rows, ptrdiff_t width, const float *gamma, const float *beta,
                     float eps, float *out);

/// Depthwise convolution, stride 1, of one channels-last image zero-padded to `padded_width` columns (and enough rows):
/// out[oy][ox][ch] = bias[ch] + Σ_{dy,dx < kernel} x[oy + dy][ox + dx][ch] · weight[dy][dx][ch], for output rows
/// y0..<y1 of `out` [rows][out_width][channels]. `weight` is [kernel][kernel][channels].
void clip_depthwise_conv2d(const float *x, ptrdiff_t padded_width, ptrdiff_t channels, const float *weight,
                           const float *bias, ptrdiff_t kernel, ptrdiff_t y0, ptrdiff_t y1, ptrdiff_t out_width,
                           float *out);

/// The same with stride `stride`: out[oy][ox][ch] = bias[ch] + Σ x[oy·stride + dy][ox·stride + dx][ch] · weight[dy][dx][ch]
/// (FastViT's stride-2 downsampling; a channel multiplier is the caller's, by repeating input channels).
void clip_depthwise_conv2d_strided(const float *x, ptrdiff_t padded_width, ptrdiff_t channels, const float *weight,
                                   const float *bias, ptrdiff_t kernel, ptrdiff_t stride, ptrdiff_t y0, ptrdiff_t y1,
                                   ptrdiff_t out_width, float *out);

/// Backward of QuickGELU: dh *= f'(z), with f'(z) recovered from z and the forward output h = f(z).
void clip_quick_gelu_backward(const float *z, const float *h, float *dh, ptrdiff_t n);

/// Backward of GELU: dh *= Φ(z) + z·φ(z).
void clip_gelu_backward(const float *z, float *dh, ptrdiff_t n);

/// Backward of GELU's tanh approximation: dh *= ½(1 + t) + ½z(1 − t²)·β(1 + 3κz²), t = tanh(β(z + κz³)).
void clip_gelu_tanh_backward(const float *z, float *dh, ptrdiff_t n);

/// Backward of LayerNorm over `rows` rows of width `w` (statistics recomputed from x): writes dx and adds this
/// chunk's dγ = Σ dy·x̂ and dβ = Σ dy into `dgamma`, `dbeta`.
void clip_layer_norm_backward(const float *x, const float *dy, ptrdiff_t rows, ptrdiff_t w, const float *gamma,
                              float eps, float *dx, float *dgamma, float *dbeta);

/// sum[i] += Σ_r x[r·w + i] (a bias gradient).
void clip_add_rows(const float *x, ptrdiff_t rows, ptrdiff_t w, float *sum);

/// One AdamW update of n parameters: m, v moments; p = p·decay − step_size·m / (√v / c2_root + eps).
void clip_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float beta1, float beta2, float decay,
                float step_size, float c2_root, float eps);

/// Σ x², accumulated in double.
double clip_sum_squares(const float *x, ptrdiff_t n);

/// SHA-256's compression of `blocks` 64-byte blocks into `state` (the eight working words), with the SHA
/// extensions when `clip_cpu_features()` has them.
void clip_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);
/// The same with the implementation chosen by the caller (tests): the SHA extensions when `accelerated` is non-zero
/// (the caller checks the CPU has them), portable C otherwise.
void clip_sha256_blocks_with(int accelerated, uint32_t state[8], const uint8_t *data, size_t blocks);

/// SHA-1's compression of `blocks` 64-byte blocks into `state` (five words): git blob ids, as the Hugging Face
/// Hub gives them for small files.
void clip_sha1_blocks(uint32_t state[5], const uint8_t *data, size_t blocks);

/// The index of the first NaN or infinity among n floats, or -1.
ptrdiff_t clip_first_non_finite(const float *x, ptrdiff_t n);

/// Vector search: out[r] = rows[r, :] · q for the n rows of a row-major [n, d] matrix.
void clip_dot_rows(const float *rows, ptrdiff_t n, ptrdiff_t d, const float *q, float *out);

/// The compressed scan: out[r] = scales[r] · (codes[r, :] · q) for int8 codes of a row-major [n, d] matrix.
void clip_dot_rows_i8(const int8_t *rows, const float *scales, ptrdiff_t n, ptrdiff_t d, const float *q, float *out);

/// The exp used by the kernels above (for tests).
float clip_exp(float x);

/// Runs `iterations` of a register-only multiply-add loop on this thread (kind 0: fp32 with the GEMM's widest FMA,
/// 1: AVX512-BF16 dot products, 2: the int8 GEMM's instruction — AVX512-VNNI, AVX2 vpmaddwd or NEON sdot) and returns
/// the operations it did, or -1 when the CPU lacks that kind. Timing it on every core measures the arithmetic peak the GEMMs are compared with.
double clip_peak_loop(int kind, long iterations, float *sink);

/// CPUs this process may run on (affinity mask on Linux), at least 1.
int clip_available_cpus(void);

/// Makes glibc's malloc keep freed memory for reuse instead of returning it to the kernel (blocks up to 32 MiB come
/// from the heap, which is trimmed only beyond 1 GiB free). Returns 1 when applied, 0 where malloc is not glibc's.
int clip_retain_freed_memory(void);

/// A 64-bit checksum of `bytes` bytes (not cryptographic): the packed-weight cache's guard against damaged arrays.
uint64_t clip_checksum64(const void *data, size_t bytes, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif
