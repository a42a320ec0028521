// Private to CCLIPKernels, included by attention.c once per instruction set: the direct attention kernel written
// with the compiler's vector extensions, so one source serves AVX2 (8 lanes), NEON and the baseline x86 ISA (4 lanes).
// The includer defines AT_NAME(x) (a per-ISA name), AT_ATTR (target attributes), AT_W (lanes per vector) and AT_NB
// (vectors per register-tile row; AT_MR rows x AT_NB vectors of accumulators must fit the register file).
//
// Per head only Kᵀ (scale folded in) and V (padded to whole vectors) are copied; the scores live in a per-thread
// buffer; both products run on AT_MR-row register tiles whose width follows the token count and head size.

#define AT_MR 6

typedef float AT_NAME(vf) __attribute__((vector_size(4 * AT_W), aligned(4)));
typedef int32_t AT_NAME(vi) __attribute__((vector_size(4 * AT_W), aligned(4)));

// e^x, the polynomial and range reduction of elementwise.c's exp_poly, on whole vectors.
AT_ATTR __attribute__((always_inline)) static inline AT_NAME(vf) AT_NAME(exp)(AT_NAME(vf) x) {
    x = __builtin_elementwise_min(__builtin_elementwise_max(x, (AT_NAME(vf)){} - 87.0f), (AT_NAME(vf)){} + 88.3f);
    const AT_NAME(vf) n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    AT_NAME(vf) r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    AT_NAME(vf) p = (AT_NAME(vf)){} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const AT_NAME(vi) e = (__builtin_convertvector(n, AT_NAME(vi)) + 127) << 23;
    return p * (AT_NAME(vf))e;
}

// C[rows, nb·W] = A[rows, kk] · B[kk, nb·W]: A rows at a + i·lda (contiguous in k), B rows at b + p·ldb, all B and C
// vectors whole. With fewer than AT_MR rows the missing rows repeat the last one and are not stored.
AT_ATTR __attribute__((always_inline, no_builtin("memset"))) static inline void AT_NAME(tile)(
    const int nb, ptrdiff_t rows, ptrdiff_t kk, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb,
    float *c, ptrdiff_t ldc) {
    AT_NAME(vf) acc[AT_MR][AT_NB];
    const float *ar[AT_MR];
    #pragma clang loop unroll(full)
    for (int i = 0; i < AT_MR; i++) {
        ar[i] = a + (i < rows ? i : rows - 1) * lda;
        #pragma clang loop unroll(full)
        for (int v = 0; v < AT_NB; v++) acc[i][v] = (AT_NAME(vf)){};
    }
    for (ptrdiff_t p = 0; p < kk; p++) {
        AT_NAME(vf) bv[AT_NB];
        const float *bp = b + p * ldb;
        #pragma clang loop unroll(full)
        for (int v = 0; v < AT_NB; v++) {
            if (v < nb) bv[v] = *(const AT_NAME(vf) *)(bp + AT_W * v);
        }
        #pragma clang loop unroll(full)
        for (int i = 0; i < AT_MR; i++) {
            const float av = ar[i][p];
            #pragma clang loop unroll(full)
            for (int v = 0; v < AT_NB; v++) {
                if (v < nb) acc[i][v] += av * bv[v];
            }
        }
    }
    #pragma clang loop unroll(full)
    for (int i = 0; i < AT_MR; i++) {
        if (i >= rows) break;
        #pragma clang loop unroll(full)
        for (int v = 0; v < AT_NB; v++) {
            if (v < nb) *(AT_NAME(vf) *)(c + i * ldc + AT_W * v) = acc[i][v];
        }
    }
}

// Columns [0, vectors·W) of C in blocks of up to AT_NB vectors; each block width is a compile-time constant.
AT_ATTR static void AT_NAME(rows)(ptrdiff_t rows, ptrdiff_t vectors, ptrdiff_t kk, const float *a, ptrdiff_t lda,
                                  const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc) {
    for (ptrdiff_t v0 = 0; v0 < vectors; v0 += AT_NB) {
        const ptrdiff_t nb = vectors - v0 < AT_NB ? vectors - v0 : AT_NB;
        const float *bb = b + AT_W * v0;
        float *cc = c + AT_W * v0;
        switch (nb) {
#if AT_NB >= 4
        case 4: AT_NAME(tile)(4, rows, kk, a, lda, bb, ldb, cc, ldc); break;
        case 3: AT_NAME(tile)(3, rows, kk, a, lda, bb, ldb, cc, ldc); break;
#endif
        case 2: AT_NAME(tile)(2, rows, kk, a, lda, bb, ldb, cc, ldc); break;
        default: AT_NAME(tile)(1, rows, kk, a, lda, bb, ldb, cc, ldc); break;
        }
    }
}

// Softmax of the first `n` scores of a row in place, zero from n up to `padded` (a multiple of W).
AT_ATTR static void AT_NAME(softmax)(float *x, ptrdiff_t n, ptrdiff_t padded) {
    for (ptrdiff_t j = n; j < padded; j++) x[j] = -__builtin_inff();  // e^−∞ = 0 below
    AT_NAME(vf) mv = *(AT_NAME(vf) *)x;
    for (ptrdiff_t j = AT_W; j < padded; j += AT_W) mv = __builtin_elementwise_max(mv, *(AT_NAME(vf) *)(x + j));
    float top = mv[0];
    for (int l = 1; l < AT_W; l++) top = mv[l] > top ? mv[l] : top;
    AT_NAME(vf) sum = {};
    for (ptrdiff_t j = 0; j < padded; j += AT_W) {
        AT_NAME(vf) e = AT_NAME(exp)(*(AT_NAME(vf) *)(x + j) - top);
        // exp's clamp turns e^−∞ into e^−87, not 0: padding lanes are zeroed explicitly.
        e = j + AT_W <= n ? e : (AT_NAME(vf))((AT_NAME(vi))e & (*(AT_NAME(vf) *)(x + j) > -__builtin_inff()));
        *(AT_NAME(vf) *)(x + j) = e;
        sum += e;
    }
    float total = 0.0f;
    for (int l = 0; l < AT_W; l++) total += sum[l];
    const float inv = 1.0f / total;
    for (ptrdiff_t j = 0; j < padded; j += AT_W) *(AT_NAME(vf) *)(x + j) *= inv;
}

// One head. Scratch: kt [hd, tp] (Kᵀ scaled), vp [tp, hp] (V, zero past the tokens and the head), s [AT_MR, tp]
// (scores of one row block), o [AT_MR, hp] (its output); tp and hp are tokens and hd rounded up to whole vectors.
AT_ATTR static void AT_NAME(head)(ptrdiff_t tokens, ptrdiff_t hd, float scale, int causal, const float *q,
                                  const float *k, const float *v, ptrdiff_t ld, float *out, ptrdiff_t ldo, float *kt,
                                  float *vp, float *s, float *o, ptrdiff_t tp, ptrdiff_t hp) {
    for (ptrdiff_t d = 0; d < hd; d++) {
        for (ptrdiff_t j = tokens; j < tp; j++) kt[d * tp + j] = 0.0f;
    }
    for (ptrdiff_t j = 0; j < tokens; j++) {
        const float *kr = k + j * ld, *vr = v + j * ld;
        float *vo = vp + j * hp;
        for (ptrdiff_t d = 0; d < hd; d++) {
            kt[d * tp + j] = kr[d] * scale;
            vo[d] = vr[d];
        }
        for (ptrdiff_t d = hd; d < hp; d++) vo[d] = 0.0f;
    }
    // Padded keys have zero scores, but 0 · garbage could be NaN.
    memset(vp + tokens * hp, 0, (size_t)((tp - tokens) * hp) * sizeof(float));
    for (ptrdiff_t i0 = 0; i0 < tokens; i0 += AT_MR) {
        const ptrdiff_t rows = tokens - i0 < AT_MR ? tokens - i0 : AT_MR;
        // Causal rows never look past their own position: the block's last row bounds the keys it needs.
        const ptrdiff_t keys = causal ? i0 + rows : tokens, kp = (keys + AT_W - 1) / AT_W * AT_W;
        AT_NAME(rows)(rows, kp / AT_W, hd, q + i0 * ld, ld, kt, tp, s, tp);
        for (ptrdiff_t i = 0; i < rows; i++) AT_NAME(softmax)(s + i * tp, causal ? i0 + i + 1 : tokens, kp);
        // Padded score columns are zero, so the product may run over whole vectors of keys.
        AT_NAME(rows)(rows, hp / AT_W, kp, s, tp, vp, hp, o, hp);
        for (ptrdiff_t i = 0; i < rows; i++) memcpy(out + (i0 + i) * ldo, o + i * hp, (size_t)hd * sizeof(float));
    }
}

#undef AT_MR
