/*
 * Tiles of every grouped format (int4/q4 g32/g64/g128, symmetric or not, nl4g32, q3 and q2
 * g32/g64) over the reordered activations pair_i4 makes (dot_avx2.c). Included by dot_avx2.c
 * and dot_avx512.c, which define before it:
 *
 *   TILE_TARGET                the target attribute of the including file;
 *   tile_fold(lo, hi, qp, live)  the int32 sums of four sub-blocks of unsigned codes (lo[k], hi[k]
 *                              as tile_codes gives them) against one token's codes qp, folded into
 *                              the lanes [k0b0 k1b0 k2b0 k3b0 | k0b1 k1b1 k2b1 k3b1] (sub-block k,
 *                              activation block b); sub-blocks k >= live count 0;
 *   tile_fold_signed(...)      the same for signed weight values (|w| given as lo/hi, the signs
 *                              as slo/shi);
 *   tile_high_bits(h0, h1, lo, hi)  adds 4 to the 3-bit codes whose high bit is set: bit j of
 *                              h0 (h1) is that of weight j of the sub-block's first (second) block.
 *
 * The integer sums are exact on either path, and the float work after them is written once,
 * here, so both paths give the same bits for every product. Every tile accumulates a (row,
 * token) in the same order, so a row comes out bit-identical whichever tile computed it
 * (batched decode equals decoding alone).
 *
 * A sub-block is 64 weights: one 32-byte load of a g64/g128 group's nibbles, two 16-byte loads
 * of consecutive g32 groups, or the codes of two 32-weight blocks of a 3- or 2-bit group. Its
 * codes are laid out as lo = weights 0..15 and 32..47, hi = 16..31 and 48..63 (the int4 nibble
 * order), which pair_i4's activation order matches. The float work, one conversion and two
 * FMAs (acc += s (f d - m sum), with the weight scale s of the lane's group, the activation
 * scale d and sum = d * sum(q) of its block, m the code offset), is done once per 256 weights.
 */
#ifndef MOE_TILE_GROUPED_H
#define MOE_TILE_GROUPED_H

/* Code families of the tiles. */
enum { TILE_Q4 = 0, TILE_NL4 = 1, TILE_LOW = 2 };

/* The f16 at each of four group headers, as [h0 h1 h2 h3 | h0 h1 h2 h3]. */
TILE_TARGET static inline __m256 tile_f16x4(const uint8_t *h0, const uint8_t *h1, const uint8_t *h2,
                                            const uint8_t *h3) {
    __m128 v = _mm_cvtph_ps(_mm_setr_epi16((short)moe_load_u16(h0), (short)moe_load_u16(h1), (short)moe_load_u16(h2),
                                           (short)moe_load_u16(h3), 0, 0, 0, 0));
    return _mm256_set_m128(v, v);
}

/* The f16 at eight headers, lane i from h[i]. */
TILE_TARGET static inline __m256 tile_f16x8(const uint8_t *const h[8]) {
    return _mm256_cvtph_ps(_mm_setr_epi16((short)moe_load_u16(h[0]), (short)moe_load_u16(h[1]), (short)moe_load_u16(h[2]),
                                          (short)moe_load_u16(h[3]), (short)moe_load_u16(h[4]), (short)moe_load_u16(h[5]),
                                          (short)moe_load_u16(h[6]), (short)moe_load_u16(h[7])));
}

TILE_TARGET static inline float tile_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The codes of two 3- or 2-bit blocks b0, b1 (weights 0..31 and 32..63 of a sub-block) as
 * bytes in the sub-block order (see the top of this file). Weight 8k + i of a block sits in bits
 * 2k..2k+1 of its byte i, so a 64-bit shift of the block's first 8 bytes by 2k gives weights
 * 8k..8k+7 in the low bits of each byte: shifts 0 and 2 give weights 0..15, 4 and 6 weights
 * 16..31. For 3 bits the high bit of weight j is bit j of the next 32-bit word (tile_high_bits). */
TILE_TARGET static inline void tile_lowbit_pair(const uint8_t *b0, const uint8_t *b1, const int bits, __m256i *lo,
                                                __m256i *hi) {
    uint64_t q0, q1;
    memcpy(&q0, b0, 8);
    memcpy(&q1, b1, 8);
    const __m256i v = _mm256_set_epi64x((long long)q1, (long long)q1, (long long)q0, (long long)q0);
    const __m256i three = _mm256_set1_epi8(3);
    *lo = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(2, 0, 2, 0)), three);
    *hi = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_set_epi64x(6, 4, 6, 4)), three);
    if (bits == 3) {
        uint32_t h0, h1;
        memcpy(&h0, b0 + 8, 4);
        memcpy(&h1, b1 + 8, 4);
        tile_high_bits(h0, h1, lo, hi);
    }
}

/* Bytes of one group (header included). */
static inline int64_t tile_group_bytes(const int fam, const int group, const int asym, const int bits) {
    if (fam == TILE_LOW) return 2 + group * bits / 8;
    return (asym ? 4 : 2) + group / 2;
}

/* The codes of sub-block `sub` of a row (see the top of this file). Grid rows give the grid's
 * signed values. */
__attribute__((always_inline)) TILE_TARGET static inline void
tile_codes(const uint8_t *row, int64_t sub, const int fam, const int group, const int asym, const int bits,
           __m256i *lo, __m256i *hi) {
    const int64_t gb = tile_group_bytes(fam, group, asym, bits);
    if (fam == TILE_LOW) {
        const uint8_t *b0, *b1;
        if (group == 64) { b0 = row + sub * gb + 2; b1 = b0 + 4 * bits; }
        else { b0 = row + 2 * sub * gb + 2; b1 = b0 + gb; }
        tile_lowbit_pair(b0, b1, bits, lo, hi);
        return;
    }
    const int hdr = asym ? 4 : 2;
    __m256i raw;
    if (group == 32) {
        const uint8_t *g0 = row + 2 * sub * gb + hdr;
        raw = _mm256_loadu2_m128i((const __m128i *)(g0 + gb), (const __m128i *)g0);
    } else {
        const int per = group / 64;
        raw = _mm256_loadu_si256((const __m256i *)(row + sub / per * gb + hdr + 32 * (sub % per)));
    }
    const __m256i mask = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(raw, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
    if (fam == TILE_NL4) {
        const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)moe_nl4_grid));
        *lo = _mm256_shuffle_epi8(grid, *lo);
        *hi = _mm256_shuffle_epi8(grid, *hi);
    }
}

/* The header of the group holding activation block b (0, 1) of sub-block `sub`. */
static inline const uint8_t *tile_head(const uint8_t *row, int64_t sub, int b, const int fam, const int group,
                                       const int asym, const int bits) {
    const int64_t gb = tile_group_bytes(fam, group, asym, bits);
    if (group == 32) return row + (2 * sub + b) * gb;
    return row + sub / (group / 64) * gb;
}

/* One step of a tile: sub-blocks j..j+live-1 (live <= 4; the last step of a row may have
 * fewer) of one row against T tokens, into acc[t]. q = j / 4 indexes dv and m8. */
__attribute__((always_inline)) TILE_TARGET static inline void
tile_step(const uint8_t *row, int64_t rb, const moe_xq *x, int64_t j, __m256 *acc, const int T, const int fam,
          const int group, const int asym, const int bits, const int live) {
    const int64_t q = j / 4;
    __m256i lo[4], hi[4], slo[4], shi[4];
    const uint8_t *head[8];
    for (int k = 0; k < 4; k++) {
        const int64_t sub = k < live ? j + k : j;   /* past the end: any valid header; its lanes are 0 */
        head[k] = tile_head(row, sub, 0, fam, group, asym, bits);
        head[4 + k] = tile_head(row, sub, 1, fam, group, asym, bits);
        if (k < live) {
            tile_codes(row, sub, fam, group, asym, bits, &lo[k], &hi[k]);
            if (fam == TILE_NL4) {
                slo[k] = lo[k];
                shi[k] = hi[k];
                lo[k] = _mm256_abs_epi8(lo[k]);
                hi[k] = _mm256_abs_epi8(hi[k]);
            }
        }
    }
    /* the same sub-blocks four rows ahead: the stream a single token walks next */
    _mm_prefetch((const char *)(head[0] + 4 * rb), _MM_HINT_T0);
    _mm_prefetch((const char *)(head[0] + 4 * rb + 64), _MM_HINT_T0);
    _mm_prefetch((const char *)(head[0] + 4 * rb + 128), _MM_HINT_T0);
    __m256 sv, cv;
    if (group == 32) {
        sv = tile_f16x8(head);
        const uint8_t *mins[8];
        for (int i = 0; i < 8; i++) mins[i] = head[i] + 2;
        cv = asym ? tile_f16x8(mins) : sv;
    } else {
        sv = tile_f16x4(head[0], head[1], head[2], head[3]);
        cv = asym ? tile_f16x4(head[0] + 2, head[1] + 2, head[2] + 2, head[3] + 2) : sv;
    }
    /* the code offset m in units of pair_i4's -8 sum: 8 for int4, 4 and 2 for 3 and 2 bits */
    const float offset = fam == TILE_LOW ? (float)(1 << (bits - 1)) / 8.0f : 1.0f;
    for (int t = 0; t < T; t++) {
        const int8_t *qp = x[t].qp + 64 * j;
        const __m256i sums = fam == TILE_NL4 ? tile_fold_signed(lo, hi, slo, shi, qp, live) : tile_fold(lo, hi, qp, live);
        const __m256 f = _mm256_cvtepi32_ps(sums);
        const __m256 dv = _mm256_loadu_ps(x[t].dv + 8 * q), m8 = _mm256_loadu_ps(x[t].m8 + 8 * q);
        if (fam == TILE_NL4) {
            acc[t] = _mm256_fmadd_ps(sv, _mm256_mul_ps(f, dv), acc[t]);
        } else if (asym) {
            /* min times the activation sum: -8 sum scaled back exactly */
            acc[t] = _mm256_fmadd_ps(f, _mm256_mul_ps(dv, sv), acc[t]);
            acc[t] = _mm256_fmadd_ps(cv, _mm256_mul_ps(m8, _mm256_set1_ps(-0.125f)), acc[t]);
        } else {
            /* symmetric: the -m s offset factors out, acc += s (f d - m sum); offset is a power of 2 */
            const __m256 off = fam == TILE_LOW ? _mm256_mul_ps(m8, _mm256_set1_ps(offset)) : m8;
            acc[t] = _mm256_fmadd_ps(sv, _mm256_fmadd_ps(f, dv, off), acc[t]);
        }
    }
}

__attribute__((always_inline)) TILE_TARGET static inline void
tile_rows(const uint8_t *row, int64_t rb, int64_t nrows, const moe_xq *x, int64_t n, float *y, int64_t ystride,
          const int T, const int fam, const int group, const int asym, const int bits) {
    const int64_t nsub = n / 64, full = nsub & ~(int64_t)3;
    for (int64_t r = 0; r < nrows; r++, row += rb) {
        __m256 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j < full; j += 4) tile_step(row, rb, x, j, acc, T, fam, group, asym, bits, 4);
        switch (nsub - full) {
        case 1: tile_step(row, rb, x, j, acc, T, fam, group, asym, bits, 1); break;
        case 2: tile_step(row, rb, x, j, acc, T, fam, group, asym, bits, 2); break;
        case 3: tile_step(row, rb, x, j, acc, T, fam, group, asym, bits, 3); break;
        }
        for (int t = 0; t < T; t++) y[t * ystride + r] = tile_hsum(acc[t]);
    }
}

typedef void (*tile_fn)(const uint8_t *, int64_t, int64_t, const moe_xq *, int64_t, float *, int64_t);

#define TILE_ONE(NAME, T, FAM, G, A, B)                                                                \
    TILE_TARGET __attribute__((noinline)) static void NAME##_##T(const uint8_t *row, int64_t rb, int64_t nrows, \
                                                                const moe_xq *x, int64_t n, float *y, int64_t ys) { \
        tile_rows(row, rb, nrows, x, n, y, ys, T, FAM, G, A, B);                                       \
    }
#define TILE_SET(NAME, FAM, G, A, B) \
    TILE_ONE(NAME, 1, FAM, G, A, B) TILE_ONE(NAME, 2, FAM, G, A, B) TILE_ONE(NAME, 3, FAM, G, A, B) TILE_ONE(NAME, 4, FAM, G, A, B)
TILE_SET(t_q4g32, TILE_Q4, 32, 0, 4)
TILE_SET(t_q4g32a, TILE_Q4, 32, 1, 4)
TILE_SET(t_q4g64, TILE_Q4, 64, 0, 4)
TILE_SET(t_q4g64a, TILE_Q4, 64, 1, 4)
TILE_SET(t_q4g128, TILE_Q4, 128, 0, 4)
TILE_SET(t_q4g128a, TILE_Q4, 128, 1, 4)
TILE_SET(t_nl4g32, TILE_NL4, 32, 0, 4)
TILE_SET(t_q3g32, TILE_LOW, 32, 0, 3)
TILE_SET(t_q3g64, TILE_LOW, 64, 0, 3)
TILE_SET(t_q2g32, TILE_LOW, 32, 0, 2)
TILE_SET(t_q2g64, TILE_LOW, 64, 0, 2)
#define TILE_FNS(NAME) {NAME##_1, NAME##_2, NAME##_3, NAME##_4}

/* Rows of y[t * ystride + r] for nrows rows and ntok tokens of format fmt (moe_tile_variant(fmt)
 * >= 0, n a multiple of 64). A single token (decode) walks the rows one after another, so the
 * memory system sees one sequential stream (tiles of several rows, which read several row
 * streams at once, measured 10 against 14 GB/s on one Zen 3 core and 18 against 25 GB/s on two,
 * cold, moepack-kernel-bench). Several tokens run in blocks of MOE_TILE_TOKEN_BLOCK: every token
 * of a block is done on a run of MOE_TILE_ROW_BLOCK rows, up to 4 at a time, before the next
 * run, so a batched decode step reads each row from memory once. A tile walks a run of rows
 * itself: for 512-column rows (expert down products) that measured 52 against 44 (2 tokens) and
 * 61 against 53 (4 tokens) G multiply-adds/s on one Zen 3 core, hot, against one call per row. */
TILE_TARGET static void tile_q(int fmt, const uint8_t *w, int64_t rb, int64_t nrows, const moe_xq *x, int64_t ntok,
                               int64_t n, float *y, int64_t ystride) {
    static const tile_fn sets[MOE_TILE_VARIANTS][4] = {
        TILE_FNS(t_q4g32), TILE_FNS(t_q4g32a), TILE_FNS(t_q4g64), TILE_FNS(t_q4g64a), TILE_FNS(t_q4g128),
        TILE_FNS(t_q4g128a), TILE_FNS(t_nl4g32), TILE_FNS(t_q3g32), TILE_FNS(t_q3g64), TILE_FNS(t_q2g32),
        TILE_FNS(t_q2g64)};
    const int v = moe_tile_variant(fmt);
    if (v < 0) return;
    const tile_fn *f = sets[v];
    if (ntok == 1) {
        /* The tile prefetches four rows ahead; start the first eight now, or a chunk of an
         * expert-sized matrix begins with demand misses (12 against 14 GB/s on one core). */
        moe_prefetch_rows(w, (nrows < 8 ? nrows : 8) * rb);
        f[0](w, rb, nrows, x, n, y, ystride);
        return;
    }
    for (int64_t t0 = 0; t0 < ntok; t0 += MOE_TILE_TOKEN_BLOCK) {
        const int64_t t1 = t0 + MOE_TILE_TOKEN_BLOCK < ntok ? t0 + MOE_TILE_TOKEN_BLOCK : ntok;
        for (int64_t r = 0; r < nrows; r += MOE_TILE_ROW_BLOCK) {
            const int64_t nr = nrows - r < MOE_TILE_ROW_BLOCK ? nrows - r : MOE_TILE_ROW_BLOCK;
            for (int64_t t = t0; t < t1; t += 4) {
                const int64_t m = t1 - t < 4 ? t1 - t : 4;
                f[m - 1](w + r * rb, rb, nr, x + t, n, y + t * ystride + r, ystride);
            }
        }
    }
}

#endif
