/* AVX-512 (F, BW, VL, VNNI) kernels (x86-64), selected at run time.
 *
 * The path is the AVX2 path with the kernels that measure faster here replaced:
 * moe_kernels_avx512_init copies the AVX2 table and overrides its entries, so a
 * format without an AVX-512 kernel runs exactly as on the AVX2 path. Only this
 * file is compiled for AVX-512 (target attributes), so the binary still runs on
 * AVX2-only machines. */
#include "internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

moe_kernels moe_kernels_avx512;

/*
 * int8 rows times int16 activations: one or two rows x T tokens (T = 1..8), n a
 * multiple of 16. 32 weights are widened to int16 once and meet each token's
 * 32 codes in one vpdpwssd (multiply pairs, add to 16 int32 lanes); the AVX2
 * path needs a widen, a madd and an add per 16. A lane of a 1024-value block
 * adds at most 64 products, < 64 * 127 * 32767 < 2^29. The block's sums are
 * scaled by its d16 into f32 lanes, summed across lanes at the end. A (row,
 * token) is accumulated in the same order whatever T, so matmul rows equal
 * matvec and batched decode equals decoding alone.
 */
__attribute__((always_inline)) AVX512 static inline void
i8_rows(const uint8_t *row, int64_t rb, const moe_xq *x, int64_t n, float *y, int64_t ys, const int T, const int R) {
    /* R = 1 or 2 rows (2 for 5 to 8 tokens: every activation load serves both rows; 2 x 8 int32
     * sums and four widened weight vectors fit AVX-512's 32 registers). Each (row, token) takes
     * the same steps in the same order whatever R, so the bits do not depend on it. */
    const int8_t *w[2] = {(const int8_t *)(row + 4), (const int8_t *)(row + (R > 1 ? rb : 0) + 4)};
    __m512 acc[2][8];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < n; c += MOE_QBLOCK16) {
        const int64_t end = c + MOE_QBLOCK16 < n ? c + MOE_QBLOCK16 : n;
        __m512i sum[2][8];
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++) sum[r][t] = _mm512_setzero_si512();
        int64_t k = c;
        for (; k + 64 <= end; k += 64) {
            __m512i w0[2], w1[2];
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(w[r] + k + MOE_PREFETCH_BYTES), _MM_HINT_T0);
                w0[r] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w[r] + k)));
                w1[r] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w[r] + k + 32)));
            }
            for (int t = 0; t < T; t++) {
                const __m512i x0 = _mm512_loadu_si512((const void *)(x[t].q16 + k));
                const __m512i x1 = _mm512_loadu_si512((const void *)(x[t].q16 + k + 32));
                for (int r = 0; r < R; r++)
                    sum[r][t] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(sum[r][t], w0[r], x0), w1[r], x1);
            }
        }
        /* the block's last 16 to 48 columns: masked loads, the lanes past the end are zero */
        for (; k < end; k += 32) {
            const __mmask32 m = end - k >= 32 ? 0xFFFFFFFFu : (1u << (end - k)) - 1;
            __m512i wv[2];
            for (int r = 0; r < R; r++) wv[r] = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, w[r] + k));
            for (int t = 0; t < T; t++) {
                const __m512i xv = _mm512_maskz_loadu_epi16(m, x[t].q16 + k);
                for (int r = 0; r < R; r++) sum[r][t] = _mm512_dpwssd_epi32(sum[r][t], wv[r], xv);
            }
        }
        for (int t = 0; t < T; t++) {
            const __m512 d = _mm512_set1_ps(x[t].d16[c / MOE_QBLOCK16]);
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][t]), d, acc[r][t]);
        }
    }
    for (int r = 0; r < R; r++) {
        const float scale = moe_load_f32(row + r * rb);
        for (int t = 0; t < T; t++) y[t * ys + r] = scale * _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* One call walks a run of rows, so short rows (512-column expert down products) do not pay a
 * call and its set-up per row; 5 to 8 tokens take two rows at a time. */
#define I8_ROWS(T)                                                                                      \
    AVX512 __attribute__((noinline)) static void rows8_##T(const uint8_t *w, int64_t rb, int64_t nrows,   \
                                                           const moe_xq *x, int64_t n, float *y,         \
                                                           int64_t ys) {                                 \
        int64_t r = 0;                                                                                  \
        if (T >= 5)                                                                                     \
            for (; r + 2 <= nrows; r += 2) i8_rows(w + r * rb, rb, x, n, y + r, ys, T, 2);              \
        for (; r < nrows; r++) i8_rows(w + r * rb, rb, x, n, y + r, ys, T, 1);                          \
    }
I8_ROWS(1)
I8_ROWS(2)
I8_ROWS(3)
I8_ROWS(4)
I8_ROWS(5)
I8_ROWS(6)
I8_ROWS(7)
I8_ROWS(8)

/* Tokens in blocks of 8: within a block every row is read once for all of its tokens (8 int16
 * activation rows of 1024 values are 16 KB, L1), so a batched decode step of up to 8 sequences
 * reads each weight row from memory once. One token (decode) is one sequential row stream. */
AVX512 static void tile_i8(const uint8_t *w, int64_t rb, int64_t nrows, const moe_xq *x, int64_t ntok,
                           int64_t n, float *y, int64_t ystride) {
    typedef void (*rows_fn)(const uint8_t *, int64_t, int64_t, const moe_xq *, int64_t, float *, int64_t);
    static const rows_fn rows_of[8] = {rows8_1, rows8_2, rows8_3, rows8_4, rows8_5, rows8_6, rows8_7, rows8_8};
    for (int64_t t0 = 0; t0 < ntok; t0 += 8) {
        const int64_t m = ntok - t0 < 8 ? ntok - t0 : 8;
        rows_of[m - 1](w, rb, nrows, x + t0, n, y + t0 * ystride, ystride);
    }
}

/*
 * The grouped formats' tiles (tile_grouped.h) over the AVX2 path's reordered activations
 * (pair_i4 in dot_avx2.c). A sub-block's low codes meet its first 32 activation codes and its
 * high codes the next 32 in two vpdpbusd (unsigned codes x signed int8, four products per int32
 * lane): lanes 0..3 are its first activation block, 4..7 its second. Two vphaddd levels fold
 * four sub-blocks into the lanes the AVX2 tiles build with maddubs, unpacks and madd; the
 * integer sums are exact, so both paths give the same bits for every product.
 */
AVX512 static inline __m256i tile_fold(const __m256i *lo, const __m256i *hi, const int8_t *qp, const int live) {
    __m256i s[4];
    for (int k = 0; k < 4; k++) {
        s[k] = _mm256_setzero_si256();
        if (k >= live) continue;
        s[k] = _mm256_dpbusd_epi32(s[k], lo[k], _mm256_loadu_si256((const __m256i *)(qp + 64 * k)));
        s[k] = _mm256_dpbusd_epi32(s[k], hi[k], _mm256_loadu_si256((const __m256i *)(qp + 64 * k + 32)));
    }
    return _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
}

/* Signed weights (|w| in lo/hi, w in slo/shi): |w| times x with w's sign, the AVX2 path's
 * products in the same four-byte lanes. */
AVX512 static inline __m256i tile_fold_signed(const __m256i *lo, const __m256i *hi, const __m256i *slo,
                                              const __m256i *shi, const int8_t *qp, const int live) {
    __m256i s[4];
    for (int k = 0; k < 4; k++) {
        s[k] = _mm256_setzero_si256();
        if (k >= live) continue;
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(qp + 64 * k));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(qp + 64 * k + 32));
        s[k] = _mm256_dpbusd_epi32(s[k], lo[k], _mm256_sign_epi8(x0, slo[k]));
        s[k] = _mm256_dpbusd_epi32(s[k], hi[k], _mm256_sign_epi8(x1, shi[k]));
    }
    return _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
}

/* 3-bit codes: the high bits of weights 0..15 of both blocks (lo), then 16..31 (hi), are a
 * 32-bit byte mask each, and a masked add puts the 4 in. */
AVX512 static inline void tile_high_bits(uint32_t h0, uint32_t h1, __m256i *lo, __m256i *hi) {
    const __m256i four = _mm256_set1_epi8(4);
    const __mmask32 ml = (h0 & 0xFFFFu) | (h1 << 16), mh = (h0 >> 16) | (h1 & 0xFFFF0000u);
    *lo = _mm256_mask_add_epi8(*lo, ml, *lo, four);
    *hi = _mm256_mask_add_epi8(*hi, mh, *hi, four);
}

#define TILE_TARGET AVX512
#include "tile_grouped.h"

void moe_kernels_avx512_init(void) {
    moe_kernels k = moe_kernels_avx2;
    k.tile_i8 = tile_i8;
    k.tile_q = tile_q;   /* with the AVX2 pair_i4, whose layout it reads */
    moe_kernels_avx512 = k;
}
#endif
