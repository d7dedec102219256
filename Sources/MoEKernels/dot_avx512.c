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
 * int8 rows times int16 activations: one row x T tokens (T = 1..8), n a
 * multiple of 16. 32 weights are widened to int16 once and meet each token's
 * 32 codes in one vpdpwssd (multiply pairs, add to 16 int32 lanes); the AVX2
 * path needs a widen, a madd and an add per 16. A lane of a 1024-value block
 * adds at most 64 products, < 64 * 127 * 32767 < 2^29. The block's sums are
 * scaled by its d16 into f32 lanes, summed across lanes at the end. A (row,
 * token) is accumulated in the same order whatever T, so matmul rows equal
 * matvec and batched decode equals decoding alone.
 */
__attribute__((always_inline)) AVX512 static inline void
i8_row(const uint8_t *row, const moe_xq *x, int64_t n, float *y, int64_t ys, const int T) {
    const int8_t *w = (const int8_t *)(row + 4);
    __m512 acc[8];
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < n; c += MOE_QBLOCK16) {
        const int64_t end = c + MOE_QBLOCK16 < n ? c + MOE_QBLOCK16 : n;
        __m512i sum[8];
        for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_si512();
        int64_t k = c;
        for (; k + 64 <= end; k += 64) {
            _mm_prefetch((const char *)(w + k + MOE_PREFETCH_BYTES), _MM_HINT_T0);
            const __m512i w0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k)));
            const __m512i w1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k + 32)));
            for (int t = 0; t < T; t++) {
                sum[t] = _mm512_dpwssd_epi32(sum[t], w0, _mm512_loadu_si512((const void *)(x[t].q16 + k)));
                sum[t] = _mm512_dpwssd_epi32(sum[t], w1, _mm512_loadu_si512((const void *)(x[t].q16 + k + 32)));
            }
        }
        /* the block's last 16 to 48 columns: masked loads, the lanes past the end are zero */
        for (; k < end; k += 32) {
            const __mmask32 m = end - k >= 32 ? 0xFFFFFFFFu : (1u << (end - k)) - 1;
            const __m512i wv = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, w + k));
            for (int t = 0; t < T; t++)
                sum[t] = _mm512_dpwssd_epi32(sum[t], wv, _mm512_maskz_loadu_epi16(m, x[t].q16 + k));
        }
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_set1_ps(x[t].d16[c / MOE_QBLOCK16]), acc[t]);
    }
    const float scale = moe_load_f32(row);
    for (int t = 0; t < T; t++) y[t * ys] = scale * _mm512_reduce_add_ps(acc[t]);
}

/* One call walks a run of rows, so short rows (512-column expert down products) do not pay a
 * call and its set-up per row. */
#define I8_ROWS(T)                                                                                      \
    AVX512 __attribute__((noinline)) static void rows8_##T(const uint8_t *w, int64_t rb, int64_t nrows,   \
                                                           const moe_xq *x, int64_t n, float *y,         \
                                                           int64_t ys) {                                 \
        for (int64_t r = 0; r < nrows; r++) i8_row(w + r * rb, x, n, y + r, ys, T);                     \
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
 * int4 g64/g128 tiles over the AVX2 path's reordered activations (pair_i4 in
 * dot_avx2.c: each 64 codes as [0..15, 32..47 | 16..31, 48..63], with d and
 * -8 sum laid out per four sub-blocks of 64 weights). A sub-block's low nibbles
 * meet the first 32 codes and its high nibbles the next 32 in two vpdpbusd
 * (unsigned nibbles x signed codes, four products per int32 lane): lanes 0..3
 * are its first activation block, 4..7 its second. Two vphaddd levels fold four
 * sub-blocks into the lanes [k0b0 k1b0 k2b0 k3b0 | k0b1 k1b1 k2b1 k3b1] the
 * AVX2 tile builds with maddubs, unpacks and madd; the integer sums are exact
 * and the float work after them is the AVX2 tile's, so both paths give the
 * same bits for every int4 g64/g128 product.
 */
AVX512 static inline __m256 f16x4(const uint8_t *h0, const uint8_t *h1, const uint8_t *h2, const uint8_t *h3) {
    __m128 v = _mm_cvtph_ps(_mm_setr_epi16((short)moe_load_u16(h0), (short)moe_load_u16(h1), (short)moe_load_u16(h2),
                                           (short)moe_load_u16(h3), 0, 0, 0, 0));
    return _mm256_set_m128(v, v);
}

AVX512 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((always_inline)) AVX512 static inline void
i4_step(const uint8_t *row, int64_t rb, const moe_xq *x, int64_t j, __m256 *acc,
        const int T, const int group, const int asym, const int live) {
    const int hdr = asym ? 4 : 2, per = group / 64;
    const int64_t gb = hdr + group / 2, q = j / 4;
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const uint8_t *head[4];
    __m256i lo[4], hi[4];
    for (int k = 0; k < 4; k++) {
        const int64_t sub = k < live ? j + k : j;   /* past the end: any valid header; its lanes are 0 */
        head[k] = row + sub / per * gb;
        if (k < live) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(head[k] + hdr + 32 * (sub % per)));
            lo[k] = _mm256_and_si256(raw, mask);
            hi[k] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
        }
    }
    /* the same sub-blocks four rows ahead: the stream a single token walks next */
    _mm_prefetch((const char *)(head[0] + 4 * rb), _MM_HINT_T0);
    _mm_prefetch((const char *)(head[0] + 4 * rb + 64), _MM_HINT_T0);
    _mm_prefetch((const char *)(head[0] + 4 * rb + 128), _MM_HINT_T0);
    const __m256 sv = f16x4(head[0], head[1], head[2], head[3]);
    const __m256 cv = asym ? f16x4(head[0] + 2, head[1] + 2, head[2] + 2, head[3] + 2) : sv;
    for (int t = 0; t < T; t++) {
        const int8_t *qp = x[t].qp + 64 * j;
        __m256i s[4];
        for (int k = 0; k < 4; k++) {
            s[k] = _mm256_setzero_si256();
            if (k < live) {
                s[k] = _mm256_dpbusd_epi32(s[k], lo[k], _mm256_loadu_si256((const __m256i *)(qp + 64 * k)));
                s[k] = _mm256_dpbusd_epi32(s[k], hi[k], _mm256_loadu_si256((const __m256i *)(qp + 64 * k + 32)));
            }
        }
        const __m256i folded = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
        const __m256 f = _mm256_cvtepi32_ps(folded);
        const __m256 dv = _mm256_loadu_ps(x[t].dv + 8 * q), m8 = _mm256_loadu_ps(x[t].m8 + 8 * q);
        if (asym) {
            acc[t] = _mm256_fmadd_ps(f, _mm256_mul_ps(dv, sv), acc[t]);
            acc[t] = _mm256_fmadd_ps(cv, _mm256_mul_ps(m8, _mm256_set1_ps(-0.125f)), acc[t]);
        } else {
            acc[t] = _mm256_fmadd_ps(sv, _mm256_fmadd_ps(f, dv, m8), acc[t]);
        }
    }
}

__attribute__((always_inline)) AVX512 static inline void
i4_tile(const uint8_t *row, int64_t rb, int64_t nrows, const moe_xq *x, int64_t n, float *y, int64_t ystride,
        const int T, const int group, const int asym) {
    const int64_t nsub = n / 64, full = nsub & ~(int64_t)3;
    for (int64_t r = 0; r < nrows; r++, row += rb) {
        __m256 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j < full; j += 4) i4_step(row, rb, x, j, acc, T, group, asym, 4);
        switch (nsub - full) {
        case 1: i4_step(row, rb, x, j, acc, T, group, asym, 1); break;
        case 2: i4_step(row, rb, x, j, acc, T, group, asym, 2); break;
        case 3: i4_step(row, rb, x, j, acc, T, group, asym, 3); break;
        }
        for (int t = 0; t < T; t++) y[t * ystride + r] = hsum(acc[t]);
    }
}

#define I4_TILE(T, G, A)                                                                        \
    AVX512 __attribute__((noinline)) static void tile_1x##T##_g##G##_##A(                      \
        const uint8_t *row, int64_t rb, int64_t nrows, const moe_xq *x, int64_t n, float *y, int64_t ys) { \
        i4_tile(row, rb, nrows, x, n, y, ys, T, G, A);                                          \
    }
#define I4_TILES(G, A) I4_TILE(1, G, A) I4_TILE(2, G, A) I4_TILE(3, G, A) I4_TILE(4, G, A)
I4_TILES(64, 0)
I4_TILES(64, 1)
I4_TILES(128, 0)
I4_TILES(128, 1)

typedef void (*i4_tile_fn)(const uint8_t *, int64_t, int64_t, const moe_xq *, int64_t, float *, int64_t);
#define I4_SET(G, A) {tile_1x1_g##G##_##A, tile_1x2_g##G##_##A, tile_1x3_g##G##_##A, tile_1x4_g##G##_##A}

/* Tokens in blocks of 8, rows in runs of 16 within a block, up to 4 tokens per tile pass: the
 * AVX2 tile_i4's schedule (a batched decode step reads each row from memory once). */
AVX512 static void tile_i4(const uint8_t *w, int64_t rb, int64_t nrows, const moe_xq *x, int64_t ntok,
                           int64_t n, int group, int asym, float *y, int64_t ystride) {
    static const i4_tile_fn sets[2][2][4] = {{I4_SET(64, 0), I4_SET(64, 1)}, {I4_SET(128, 0), I4_SET(128, 1)}};
    const i4_tile_fn *f = sets[group == 128][asym != 0];
    if (ntok == 1) {
        /* the tile prefetches four rows ahead; the first eight are requested now */
        for (const uint8_t *p = w, *e = w + (nrows < 8 ? nrows : 8) * rb; p < e; p += 64) _mm_prefetch((const char *)p, _MM_HINT_T0);
        f[0](w, rb, nrows, x, n, y, ystride);
        return;
    }
    for (int64_t t0 = 0; t0 < ntok; t0 += 8) {
        const int64_t t1 = t0 + 8 < ntok ? t0 + 8 : ntok;
        for (int64_t r = 0; r < nrows; r += 16) {
            const int64_t nr = nrows - r < 16 ? nrows - r : 16;
            for (int64_t t = t0; t < t1; t += 4) {
                const int64_t m = t1 - t < 4 ? t1 - t : 4;
                f[m - 1](w + r * rb, rb, nr, x + t, n, y + t * ystride + r, ystride);
            }
        }
    }
}


/* int4 g32 and nl4 rows keep the AVX2 kernels: 512-bit versions (two groups per register,
 * vpdpbusd) measured 7% (g32) and 25% (nl4) slower on a 2-core Zen 4 (moepack-kernel-bench,
 * one thread, hot), the cost of spreading two groups' 16-byte loads over a register. */
void moe_kernels_avx512_init(void) {
    moe_kernels k = moe_kernels_avx2;
    k.tile_i8 = tile_i8;
    k.tile_i4 = tile_i4;   /* with the AVX2 pair_i4, whose layout it reads */
    moe_kernels_avx512 = k;
}
#endif
