/* AVX2 + FMA + F16C dot-product kernels (x86-64), selected at run time. */
#include "internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float dot_f32(const float *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) r += w[i] * x[i];
    return r;
}

/* bf16 is the top half of an f32: widen to 32 bits and shift left by 16. */
AVX2 static inline __m256 bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* Four accumulators, as dot_f32: with several tokens per row (a product of a few rows) the
 * loop is bound by the latency of the multiply-adds, not by the weight stream. */
AVX2 static float dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(bf16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(bf16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) {
        uint32_t u = (uint32_t)moe_load_u16(w + i) << 16;
        float f;
        memcpy(&f, &u, 4);
        r += f * x[i];
    }
    return r;
}

AVX2 static inline __m256 f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

AVX2 static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(f16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(f16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(f16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(f16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(f16x8(w + i), _mm256_loadu_ps(x + i), a0);
    float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) r += moe_f16_to_f32(moe_load_u16(w + i)) * x[i];
    return r;
}

AVX2 static void widen_bf16(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8(src + i));
    moe_widen_bf16_scalar(src + i, dst + i, n - i);
}

AVX2 static void widen_f16(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, f16x8(src + i));
    moe_widen_f16_scalar(src + i, dst + i, n - i);
}

/* 64 int8 weights times 64 int16 activations -> 8 int32 partial sums
 * (each at most 8 * 127 * 32767 in magnitude, so a 1024-value block's stay below 2^31). */
AVX2 static inline __m256i dot_i8_i16_64(const int8_t *w, const int16_t *x) {
    __m256i s0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w)),
                                   _mm256_loadu_si256((const __m256i *)x));
    __m256i s1 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16))),
                                   _mm256_loadu_si256((const __m256i *)(x + 16)));
    __m256i s2 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 32))),
                                   _mm256_loadu_si256((const __m256i *)(x + 32)));
    __m256i s3 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 48))),
                                   _mm256_loadu_si256((const __m256i *)(x + 48)));
    return _mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3));
}

/* One row, any n (the tiles take n a multiple of 16): each int16 block 64 columns at a time
 * in SIMD, a block's last n % 64 columns in scalar code. */
AVX2 static float dot_i8(const uint8_t *row, const moe_xq *x, int64_t n) {
    const int8_t *w = (const int8_t *)(row + 4);
    __m256 acc = _mm256_setzero_ps();
    float rest = 0;
    for (int64_t c0 = 0; c0 < n; c0 += MOE_QBLOCK16) {
        const int64_t end = c0 + MOE_QBLOCK16 < n ? c0 + MOE_QBLOCK16 : n, simd = c0 + ((end - c0) & ~(int64_t)63);
        const float d = x->d16[c0 / MOE_QBLOCK16];
        __m256i s = _mm256_setzero_si256();
        for (int64_t k = c0; k < simd; k += 64) {
            _mm_prefetch((const char *)(w + k + MOE_PREFETCH_BYTES), _MM_HINT_T0);
            s = _mm256_add_epi32(s, dot_i8_i16_64(w + k, x->q16 + k));
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d), acc);
        int32_t r = 0;   /* at most 63 products */
        for (int64_t k = simd; k < end; k++) r += (int32_t)w[k] * (int32_t)x->q16[k];
        rest += d * (float)r;
    }
    return moe_load_f32(row) * (hsum(acc) + rest);
}

/* 16 bytes of nibbles (32 weights, 0..15) times 32 int8 activations -> 8 float partial sums. */
AVX2 static inline __m256 i4_block(const uint8_t *data, const int8_t *xq) {
    __m128i raw = _mm_loadu_si128((const __m128i *)data);
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
    __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)xq));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Group header: scale s, and c = min (asymmetric) or -8 s (symmetric). */
#define I4_HEADER(p, asym, s, c)                                   \
    float s = _cvtsh_ss(moe_load_u16(p));                          \
    float c = (asym) ? _cvtsh_ss(moe_load_u16((p) + 2)) : -8.0f * s

/*
 * Same decomposition as the scalar dot_i4: nibbles are the unsigned maddubs
 * operand and the offset (-8 s or min) is applied per activation block through
 * s_b = d_b * sum(xq). Two independent accumulators (consecutive groups) hide
 * the FMA latency.
 */
__attribute__((always_inline)) AVX2 static inline float
dot_i4_g32(const uint8_t *row, const moe_xq *x, int64_t n, int asym) {
    const int64_t gb = (asym ? 4 : 2) + 16, ng = n / 32;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float o0 = 0, o1 = 0;
    int64_t g = 0;
    for (; g + 2 <= ng; g += 2, row += 2 * gb) {
        _mm_prefetch((const char *)(row + MOE_PREFETCH_BYTES), _MM_HINT_T0);
        I4_HEADER(row, asym, s0, c0);
        I4_HEADER(row + gb, asym, s1, c1);
        a0 = _mm256_fmadd_ps(i4_block(row + gb - 16, x->q + 32 * g), _mm256_set1_ps(s0 * x->d[g]), a0);
        a1 = _mm256_fmadd_ps(i4_block(row + 2 * gb - 16, x->q + 32 * g + 32), _mm256_set1_ps(s1 * x->d[g + 1]), a1);
        o0 += c0 * x->s[g];
        o1 += c1 * x->s[g + 1];
    }
    if (g < ng) {
        I4_HEADER(row, asym, s0, c0);
        a0 = _mm256_fmadd_ps(i4_block(row + gb - 16, x->q + 32 * g), _mm256_set1_ps(s0 * x->d[g]), a0);
        o0 += c0 * x->s[g];
    }
    return hsum(_mm256_add_ps(a0, a1)) + (o0 + o1);
}

/* Rows of a multiple of 64 columns run as tiles on this path (tile_q); g32 rows of another
 * width take this kernel, other groups the portable one. */
AVX2 static float dot_i4(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym) {
    if (group != 32) return moe_kernels_scalar.dot_i4(row, x, n, group, asym);
    return asym ? dot_i4_g32(row, x, n, 1) : dot_i4_g32(row, x, n, 0);
}

/* 16 bytes of grid indices (32 weights) times 32 int8 activations -> 8 float partial sums. The
 * indices pick the int8 grid values (shuffle), and |w| (unsigned) times x with w's sign gives
 * the signed products maddubs needs: pairs stay below 2 * 127 * 127 < 2^15. */
AVX2 static inline __m256 nl4_block(const uint8_t *data, const int8_t *xq, __m256i grid) {
    __m128i raw = _mm_loadu_si128((const __m128i *)data);
    __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
    __m256i w = _mm256_shuffle_epi8(grid, idx);
    __m256i x = _mm256_loadu_si256((const __m256i *)xq);
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Grid rows (nl4, groups of 32) whose width is not a multiple of 64 (the others run as tiles),
 * as dot_i4_g32 without the offset: two accumulators over consecutive groups. */
AVX2 static float dot_nl4(const uint8_t *row, const moe_xq *x, int64_t n) {
    const __m256i grid = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)moe_nl4_grid));
    const int64_t gb = 2 + 16, ng = n / 32;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t g = 0;
    for (; g + 2 <= ng; g += 2, row += 2 * gb) {
        _mm_prefetch((const char *)(row + MOE_PREFETCH_BYTES), _MM_HINT_T0);
        const float s0 = _cvtsh_ss(moe_load_u16(row)), s1 = _cvtsh_ss(moe_load_u16(row + gb));
        a0 = _mm256_fmadd_ps(nl4_block(row + 2, x->q + 32 * g, grid), _mm256_set1_ps(s0 * x->d[g]), a0);
        a1 = _mm256_fmadd_ps(nl4_block(row + gb + 2, x->q + 32 * g + 32, grid), _mm256_set1_ps(s1 * x->d[g + 1]), a1);
    }
    if (g < ng)
        a0 = _mm256_fmadd_ps(nl4_block(row + 2, x->q + 32 * g, grid), _mm256_set1_ps(_cvtsh_ss(moe_load_u16(row)) * x->d[g]), a0);
    return hsum(_mm256_add_ps(a0, a1));
}


/*
 * Activation quantizers, the same arithmetic as quantize_x/quantize_x16 in
 * dispatch.c (max, one multiply by the same reciprocal, round half to even),
 * so they give the same codes. n must be a multiple of 32 (int8 codes) or 16
 * (int16 codes) here; the driver falls back to the scalar quantizer otherwise.
 */
AVX2 static inline int block_amax(const float *x, int len, float *amax) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i expo = _mm256_set1_epi32(0x7F800000);
    __m256 m = _mm256_setzero_ps();
    __m256i bad = _mm256_setzero_si256();
    for (int i = 0; i < len; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256i e = _mm256_and_si256(_mm256_castps_si256(v), expo);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, expo));
        m = _mm256_max_ps(m, _mm256_and_ps(v, absmask));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    *amax = _mm_cvtss_f32(h);
    return _mm256_testz_si256(bad, bad);
}

AVX2 static void quant_i8(const float *x, int64_t n, int8_t *q, float *d, float *s) {
    for (int64_t c0 = 0, b = 0; c0 < n; c0 += 32, b++) {
        float amax;
        if (!block_amax(x + c0, 32, &amax)) {
            memset(q + c0, 0, 32);
            d[b] = s[b] = NAN;
            continue;
        }
        __m256 inv = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c0), inv));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c0 + 8), inv));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c0 + 16), inv));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c0 + 24), inv));
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        /* packs interleave 128-bit lanes; the permute restores element order */
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + c0), w);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)_mm_cvtsi128_si32(s4);
    }
}

/* n a multiple of 16; a last, shorter block is zero-padded to MOE_QBLOCK16 as in quantize_x16. */
AVX2 static void quant_i16(const float *x, int64_t n, int16_t *q, float *d) {
    for (int64_t c0 = 0, b = 0; c0 < n; c0 += MOE_QBLOCK16, b++) {
        const int len = n - c0 < MOE_QBLOCK16 ? (int)(n - c0) : MOE_QBLOCK16;
        float amax;
        if (len < MOE_QBLOCK16) memset(q + c0 + len, 0, (size_t)(MOE_QBLOCK16 - len) * sizeof(int16_t));
        if (!block_amax(x + c0, len, &amax)) {
            memset(q + c0, 0, (size_t)len * sizeof(int16_t));
            d[b] = NAN;
            continue;
        }
        __m256 inv = _mm256_set1_ps(amax > 0 ? 32767.0f / amax : 0.0f);
        for (int i = 0; i < len; i += 16) {
            __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c0 + i), inv));
            __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + c0 + i + 8), inv));
            __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, c), 0xD8);
            _mm256_storeu_si256((__m256i *)(q + c0 + i), w);
        }
        d[b] = amax / 32767.0f;
    }
}

/* The same columns two tiles ahead: the stream this tile walks next. */
__attribute__((always_inline)) AVX2 static inline void
i8_prefetch(const uint8_t *row, int64_t rb, int64_t k, const int R) {
    for (int r = 0; r < R; r++) {
        _mm_prefetch((const char *)(row + (r + 2 * R) * rb + 4 + k), _MM_HINT_T0);
        _mm_prefetch((const char *)(row + (r + 2 * R) * rb + 4 + k + 63), _MM_HINT_T0);
    }
}

/* Adds 16 columns from k of R rows times T tokens to the integer sums. */
__attribute__((always_inline)) AVX2 static inline void
i8_step(const uint8_t *row, int64_t rb, const moe_xq *x, int64_t k, __m256i sum[2][8], const int R, const int T) {
    __m256i wv[2];
    for (int r = 0; r < R; r++) wv[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + r * rb + 4 + k)));
    for (int t = 0; t < T; t++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(x[t].q16 + k));
        for (int r = 0; r < R; r++) sum[r][t] = _mm256_add_epi32(sum[r][t], _mm256_madd_epi16(wv[r], xv));
    }
}

/*
 * int8 tiles: R rows x T tokens over int16 activations, n a multiple of 16.
 * Each 16 weights are widened once and multiplied with T activation rows (and
 * each activation load serves R rows); the int32 sums of a 1024-value block are
 * scaled by its d16 and added to f32 accumulators, which live in memory: a
 * 2 x 4 tile's 8 integer sums, 2 weight vectors and an activation take 11 of
 * the 16 vector registers, and the accumulators are touched once per block.
 * Up to 4 tokens the compiler unrolls the 16-column steps; for 5 to 8 tokens
 * (one row) it must not: unrolled, it interleaves steps until the sums spill.
 */
__attribute__((always_inline)) AVX2 static inline void
i8_tile(const uint8_t *row, int64_t rb, const moe_xq *x, int64_t n, float *y, int64_t ys, const int R, const int T) {
    float acc[2][8][8];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) _mm256_storeu_ps(acc[r][t], _mm256_setzero_ps());
    for (int64_t c = 0; c < n; c += MOE_QBLOCK16) {
        const int64_t end = c + MOE_QBLOCK16 < n ? c + MOE_QBLOCK16 : n;
        __m256i sum[2][8];
        for (int r = 0; r < R; r++)
            for (int t = 0; t < T; t++) sum[r][t] = _mm256_setzero_si256();
        if (T <= 4) {
            int64_t k = c;
            for (; k + 64 <= end; k += 64) {
                i8_prefetch(row, rb, k, R);
                for (int j = 0; j < 64; j += 16) i8_step(row, rb, x, k + j, sum, R, T);
            }
            for (; k < end; k += 16) i8_step(row, rb, x, k, sum, R, T);
        } else {
#pragma clang loop unroll(disable)
            for (int64_t k = c; k < end; k += 16) {
                if ((k & 63) == 0) i8_prefetch(row, rb, k, R);
                i8_step(row, rb, x, k, sum, R, T);
            }
        }
        /* keeps the accumulators in memory rather than competing for registers with the sums */
        __asm__ volatile("" ::: "memory");
        for (int t = 0; t < T; t++) {
            __m256 d = _mm256_broadcast_ss(x[t].d16 + c / MOE_QBLOCK16);
            for (int r = 0; r < R; r++)
                _mm256_storeu_ps(acc[r][t], _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][t]), d, _mm256_loadu_ps(acc[r][t])));
        }
        __asm__ volatile("" ::: "memory");
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) y[t * ys + r] = moe_load_f32(row + r * rb) * hsum(_mm256_loadu_ps(acc[r][t]));
}

/* A tile function runs its tile down nrows rows (a multiple of R): one call per run of rows
 * rather than per row, so short rows (an expert's down product has 512 columns) do not pay a
 * call, its register set-up and spills every time. */
#define I8_TILE(R, T)                                                                                 \
    AVX2 __attribute__((noinline)) static void tile8_##R##x##T(const uint8_t *w, int64_t rb, int64_t nrows, \
                                                              const moe_xq *x, int64_t n, float *y, \
                                                              int64_t ys) {                         \
        for (int64_t r = 0; r < nrows; r += R) i8_tile(w + r * rb, rb, x, n, y + r, ys, R, T);        \
    }
I8_TILE(1, 1)
I8_TILE(1, 4)
I8_TILE(2, 4)
/* One row x 5 to 8 tokens: every 16 widened weights meet all of them. */
I8_TILE(1, 5)
I8_TILE(1, 6)
I8_TILE(1, 7)
I8_TILE(1, 8)

/* A block of 5 to 8 tokens (a batched decode step of 5 to 8 sequences, prefill) runs one row
 * at a time against all of them (8 tokens: 60-65 against 54-58 G multiply-adds/s for 2 x 4
 * on one Zen 3 core, hot and from memory). A block of 4 runs as 2-row x 4-token tiles (each
 * activation load serves two rows: 55-58 against 47-50 for 1 x 4), fewer tokens as single
 * rows; a single token (decode) walks the rows one at a time. (Several rows at once read
 * several rows' streams at once, and from memory that measured slower for one token: 11
 * against 16 GB/s on one Zen 3 core, moepack-kernel-bench "cold".) Every tile accumulates a
 * (row, token) in the same order, so a row comes out bit-identical whichever tile computed it. */
AVX2 static void tile_i8(const uint8_t *w, int64_t rb, int64_t nrows, const moe_xq *x, int64_t ntok,
                         int64_t n, float *y, int64_t ystride) {
    if (ntok == 1) {
        tile8_1x1(w, rb, nrows, x, n, y, ystride);
        return;
    }
    for (int64_t t0 = 0; t0 < ntok; t0 += MOE_TILE_TOKEN_BLOCK) {
        const int64_t t1 = t0 + MOE_TILE_TOKEN_BLOCK < ntok ? t0 + MOE_TILE_TOKEN_BLOCK : ntok;
        if (t1 - t0 >= 5) {
            static void (*const rows_of[4])(const uint8_t *, int64_t, int64_t, const moe_xq *, int64_t, float *, int64_t) = {
                tile8_1x5, tile8_1x6, tile8_1x7, tile8_1x8};
            rows_of[t1 - t0 - 5](w, rb, nrows, x + t0, n, y + t0 * ystride, ystride);
            continue;
        }
        for (int64_t r = 0; r < nrows; r += MOE_TILE_ROW_BLOCK) {
            const int64_t nr = nrows - r < MOE_TILE_ROW_BLOCK ? nrows - r : MOE_TILE_ROW_BLOCK;
            const uint8_t *p = w + r * rb;
            float *yr = y + t0 * ystride + r;
            if (t1 - t0 == 4) {
                const int64_t even = nr & ~(int64_t)1;
                tile8_2x4(p, rb, even, x + t0, n, yr, ystride);
                if (even < nr) tile8_1x4(p + even * rb, rb, 1, x + t0, n, yr + even, ystride);
            } else {
                for (int64_t t = t0; t < t1; t++) tile8_1x1(p, rb, nr, x + t, n, yr + (t - t0) * ystride, ystride);
            }
        }
    }
}

/*
 * Tiles of the grouped formats (tile_grouped.h). pair_i4 reorders each 64 activation codes to
 * the order of a sub-block's codes ([0..15, 32..47 | 16..31, 48..63]) and lays out each block's
 * d and -8 sum in the tiles' lane order, per four sub-blocks. Here two maddubs and an add give a
 * sub-block's integer sums in 16 int16 lanes (lanes 0..7 its first 32-value activation block,
 * 8..15 the second), and four sub-blocks are folded into one vector of int32 lanes with two
 * unpack-and-add levels in int16 and one madd. Doing the float work once per 256 weights
 * instead of once per 64 is 15-30% faster than scaling every sub-block's 8 lanes (kernel
 * harness, one Zen 3 core), and folding before the madd (one madd per four sub-blocks, not
 * four) another 8-12% for 2 to 4 tokens. Lanes past a row's last sub-block have d = sum = 0.
 */
AVX2 static void pair_i4(const moe_xq *x, int64_t n, int8_t *qp, float *dv, float *m8) {
    const int64_t nsub = n / 64;
    for (int64_t j = 0; j < nsub; j++) {
        const int8_t *q = x->q + 64 * j;
        int8_t *o = qp + 64 * j;
        memcpy(o, q, 16);
        memcpy(o + 16, q + 32, 16);
        memcpy(o + 32, q + 16, 16);
        memcpy(o + 48, q + 48, 16);
    }
    for (int64_t q = 0; q < (nsub + 3) / 4; q++)
        for (int k = 0; k < 4; k++) {
            const int64_t j = 4 * q + k;
            for (int b = 0; b < 2; b++) {
                dv[8 * q + 4 * b + k] = j < nsub ? x->d[2 * j + b] : 0.0f;
                m8[8 * q + 4 * b + k] = j < nsub ? -8.0f * x->s[2 * j + b] : 0.0f;
            }
        }
}

/* Sub-block k's codes (lo/hi, at most 15) times a token's codes: 16 int16 lanes, each the sum of
 * four products (at most 4 * 15 * 127 = 7620), lanes 0..7 the first activation block. */
AVX2 static inline __m256i i4_pairs(__m256i lo, __m256i hi, const int8_t *qp) {
    return _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qp)),
                            _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qp + 32))));
}

/* Four sub-blocks' int16 sums folded into int32 lanes [k0b0 k1b0 k2b0 k3b0 | k0b1 k1b1 k2b1 k3b1]:
 * two unpack-and-add levels keep each 32-bit unit within one sub-block (its int16 halves add up
 * to at most 4 * 7620 < 2^15), and one madd adds the halves. */
AVX2 static inline __m256i tile_fold(const __m256i *lo, const __m256i *hi, const int8_t *qp, const int live) {
    __m256i p[4];
    for (int k = 0; k < 4; k++) p[k] = k < live ? i4_pairs(lo[k], hi[k], qp + 64 * k) : _mm256_setzero_si256();
    __m256i a = _mm256_add_epi16(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
    __m256i b = _mm256_add_epi16(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
    __m256i c = _mm256_add_epi16(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
    return _mm256_madd_epi16(c, _mm256_set1_epi16(1));
}

/* Signed weights (|w| in lo/hi, w in slo/shi): |w| times x with w's sign, pairs below
 * 2 * 127 * 127 < 2^15, each sub-block widened to int32 by a madd (four bytes per lane, as
 * vpdpbusd adds them) and folded by two hadd levels. */
AVX2 static inline __m256i tile_fold_signed(const __m256i *lo, const __m256i *hi, const __m256i *slo, const __m256i *shi,
                                            const int8_t *qp, const int live) {
    const __m256i one = _mm256_set1_epi16(1);
    __m256i p[4];
    for (int k = 0; k < 4; k++) {
        p[k] = _mm256_setzero_si256();
        if (k >= live) continue;
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(qp + 64 * k));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(qp + 64 * k + 32));
        p[k] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo[k], _mm256_sign_epi8(x0, slo[k])), one),
                                _mm256_madd_epi16(_mm256_maddubs_epi16(hi[k], _mm256_sign_epi8(x1, shi[k])), one));
    }
    return _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
}

/* 3-bit codes: byte j / 8 of each block's high-bit word spread over 8 bytes, bit j % 8 tested,
 * 4 added where it is set. lo holds weights 0..15 of both blocks, hi 16..31. */
AVX2 static inline void tile_high_bits(uint32_t h0, uint32_t h1, __m256i *lo, __m256i *hi) {
    const __m256i h = _mm256_set_epi32((int)h1, (int)h1, (int)h1, (int)h1, (int)h0, (int)h0, (int)h0, (int)h0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL), four = _mm256_set1_epi8(4);
    const __m256i spread_lo = _mm256_set_epi64x(0x0101010101010101LL, 0, 0x0101010101010101LL, 0);
    const __m256i spread_hi = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                                0x0303030303030303LL, 0x0202020202020202LL);
    const __m256i tl = _mm256_and_si256(_mm256_shuffle_epi8(h, spread_lo), bit);
    const __m256i th = _mm256_and_si256(_mm256_shuffle_epi8(h, spread_hi), bit);
    *lo = _mm256_or_si256(*lo, _mm256_and_si256(_mm256_cmpeq_epi8(tl, bit), four));
    *hi = _mm256_or_si256(*hi, _mm256_and_si256(_mm256_cmpeq_epi8(th, bit), four));
}

#define TILE_TARGET AVX2
#include "tile_grouped.h"

/* 3- and 2-bit rows whose width is not a multiple of 64 (the others run as tiles), as the
 * portable kernel: s * sum_b d_b qdot_b - m s * sum_b s_b, two accumulators over alternate
 * blocks. A block's codes come from the tiles' unpack, put back in weight order. */
AVX2 __attribute__((always_inline)) static inline float lowbit_row(const uint8_t *row, const moe_xq *x, int64_t n,
                                                                  const int bits, const int group) {
    const int64_t gb = 2 + group * bits / 8, nsub = group / 32;
    const float mid = (float)(1 << (bits - 1));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float o0 = 0, o1 = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        _mm_prefetch((const char *)(row + MOE_PREFETCH_BYTES), _MM_HINT_T0);
        const float s = _cvtsh_ss(moe_load_u16(row));
        for (int64_t k = 0; k < nsub; k++) {
            const int64_t b = g0 / 32 + k;
            const uint8_t *blk = row + 2 + k * MOE_LOWBIT_BLOCK(bits);
            __m256i lo, hi;
            tile_lowbit_pair(blk, blk, bits, &lo, &hi);
            const __m256i c = _mm256_permute2x128_si256(lo, hi, 0x20);
            const __m256i q = _mm256_maddubs_epi16(c, _mm256_loadu_si256((const __m256i *)(x->q + 32 * b)));
            const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(q, _mm256_set1_epi16(1)));
            if (b & 1) {
                a1 = _mm256_fmadd_ps(p, _mm256_set1_ps(s * x->d[b]), a1);
                o1 += -mid * s * x->s[b];
            } else {
                a0 = _mm256_fmadd_ps(p, _mm256_set1_ps(s * x->d[b]), a0);
                o0 += -mid * s * x->s[b];
            }
        }
    }
    return hsum(_mm256_add_ps(a0, a1)) + (o0 + o1);
}

AVX2 static float dot_lowbit(const uint8_t *row, const moe_xq *x, int64_t n, int bits, int group) {
    if (bits == 3) return group == 64 ? lowbit_row(row, x, n, 3, 64) : lowbit_row(row, x, n, 3, 32);
    return group == 64 ? lowbit_row(row, x, n, 2, 64) : lowbit_row(row, x, n, 2, 32);
}

/* ---- attention ---- */

/* Sums of 8 vectors, as one vector: lane i = sum of a[i]'s lanes. */
AVX2 static inline __m256 hsum8(const __m256 *a) {
    __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
}

/* e^x for x <= 88: 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, p a degree-6
 * polynomial (relative error ~2e-7); below -87 the result is 0. */
AVX2 static inline __m256 exp_ps(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* silu(g) * u over n values: g / (1 + e^-g) * u, e^-g clamped to [e^-87, e^88]
 * (beyond that the result is 0 or g * u to f32 precision). */
AVX2 static void swiglu(float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), hi = _mm256_set1_ps(88.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp_ps(_mm256_min_ps(_mm256_sub_ps(_mm256_setzero_ps(), g), hi));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) gate[i] = gate[i] / (1 + expf(-gate[i])) * up[i];
}

/* log sum e^x: the maximum, then e^(x - max) with exp_ps, summed in float lanes per 1024
 * values and in double across them. A NaN neither wins the maximum (max_ps returns its second
 * operand when one is NaN) nor adds more than exp_ps's floor, e^-87. */
AVX2 static double log_sum_exp(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + i), m);
    float lanes[8], max = -INFINITY;
    _mm256_storeu_ps(lanes, m);
    for (int k = 0; k < 8; k++) max = lanes[k] > max ? lanes[k] : max;
    for (; i < n; i++) max = x[i] > max ? x[i] : max;
    if (!isfinite(max)) return max;
    const __m256 vmax = _mm256_set1_ps(max);
    double total = 0;
    for (i = 0; i + 8 <= n;) {
        __m256 sum = _mm256_setzero_ps();
        for (int64_t end = i + 1024 < n ? i + 1024 : n; i + 8 <= end; i += 8)
            sum = _mm256_add_ps(sum, exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax)));
        total += hsum(sum);
    }
    for (; i < n; i++)
        if (!isnan(x[i])) total += expf(x[i] - max);
    return max + log(total);
}

/* 8 cached values from element i of a key/value stream of f32 or f16. */
__attribute__((always_inline)) AVX2 static inline __m256 kv8(const void *base, int64_t i, const int f16) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)))
               : _mm256_loadu_ps((const float *)base + i);
}

/*
 * moe_attend_group_scalar with 8 keys scored at a time per head (one K block
 * serves every head of the group from L1), a vectorised softmax, and the
 * weighted values summed in registers over blocks of 64 positions per head.
 * Keys and values are f32 or f16 (`f16`, widened as they are loaded).
 * Needs hd a multiple of 8 and at most 64 heads per group (the normalisers
 * live on the stack); otherwise the portable version runs.
 */
__attribute__((always_inline)) AVX2 static inline void
attend(const float *q, const void *k, const void *v, int64_t visible, int64_t stride, int hd, int G, float scale,
       float *scores, float *out, const int f16) {
    const int64_t esize = f16 ? 2 : 4;
    const char *kc = k, *vc = v;
    const __m256 vscale = _mm256_set1_ps(scale);
    int64_t j = 0;
    for (; j + 8 <= visible; j += 8) {
        /* every line of the keys two blocks ahead: one stream the hardware alone keeps too short */
        for (int i = 16; i < 24; i++)
            for (int64_t b = 0; b < hd * esize; b += 64) _mm_prefetch(kc + ((j + i) * stride) * esize + b, _MM_HINT_T0);
        for (int h = 0; h < G; h++) {
            const float *qh = q + h * hd;
            __m256 a[8];
            for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
            for (int d = 0; d < hd; d += 8) {
                __m256 qv = _mm256_loadu_ps(qh + d);
                for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(kv8(k, (j + i) * stride + d, f16), qv, a[i]);
            }
            _mm256_storeu_ps(scores + h * visible + j, _mm256_mul_ps(hsum8(a), vscale));
        }
    }
    for (; j < visible; j++)
        for (int h = 0; h < G; h++) {
            __m256 a = _mm256_setzero_ps();
            for (int d = 0; d < hd; d += 8) a = _mm256_fmadd_ps(kv8(k, j * stride + d, f16), _mm256_loadu_ps(q + h * hd + d), a);
            scores[h * visible + j] = scale * hsum(a);
        }
    float inv[64];
    for (int h = 0; h < G; h++) {
        float *s = scores + h * visible, max = -INFINITY;
        int64_t i = 0;
        __m256 m = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= visible; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(s + i));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        max = _mm_cvtss_f32(m4);
        for (int64_t t = i; t < visible; t++) max = s[t] > max ? s[t] : max;
        __m256 vmax = _mm256_set1_ps(max), sum = _mm256_setzero_ps();
        for (i = 0; i + 8 <= visible; i += 8) {
            __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmax));
            _mm256_storeu_ps(s + i, e);
            sum = _mm256_add_ps(sum, e);
        }
        float total = hsum(sum);
        for (; i < visible; i++) {
            s[i] = expf(s[i] - max);
            total += s[i];
        }
        inv[h] = 1 / total;
    }
    memset(out, 0, sizeof(float) * (size_t)G * (size_t)hd);
    for (int64_t j0 = 0; j0 < visible; j0 += 64) {
        int64_t j1 = j0 + 64 < visible ? j0 + 64 : visible;
        for (int h = 0; h < G; h++) {
            const float *p = scores + h * visible;
            for (int d0 = 0; d0 < hd; d0 += 64) {
                int nd = (hd - d0) / 8 < 8 ? (hd - d0) / 8 : 8;
                float *o = out + h * hd + d0;
                __m256 acc[8];
                for (int i = 0; i < nd; i++) acc[i] = _mm256_loadu_ps(o + 8 * i);
                if (nd == 8) {
                    for (int64_t t = j0; t < j1; t++) {
                        __m256 w = _mm256_broadcast_ss(p + t);
                        const int64_t e = t * stride + d0;
                        /* the first head's pass brings in the next block of values */
                        if (h == 0)
                            for (int64_t b = 0; b < 64 * esize; b += 64)
                                _mm_prefetch(vc + (e + 64 * stride) * esize + b, _MM_HINT_T0);
                        for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(w, kv8(v, e + 8 * i, f16), acc[i]);
                    }
                } else {
                    for (int64_t t = j0; t < j1; t++) {
                        __m256 w = _mm256_broadcast_ss(p + t);
                        for (int i = 0; i < nd; i++) acc[i] = _mm256_fmadd_ps(w, kv8(v, t * stride + d0 + 8 * i, f16), acc[i]);
                    }
                }
                for (int i = 0; i < nd; i++) _mm256_storeu_ps(o + 8 * i, acc[i]);
            }
        }
    }
    for (int h = 0; h < G; h++) {
        __m256 f = _mm256_set1_ps(inv[h]);
        for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(out + h * hd + d, _mm256_mul_ps(_mm256_loadu_ps(out + h * hd + d), f));
    }
}

AVX2 static void attend_group(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                              int hd, int G, float scale, float *scores, float *out) {
    if (hd % 8 != 0 || G > 64) moe_attend_group_scalar(q, k, v, visible, stride, hd, G, scale, scores, out);
    else attend(q, k, v, visible, stride, hd, G, scale, scores, out, 0);
}

AVX2 static void attend_group_f16(const float *q, const uint16_t *k, const uint16_t *v, int64_t visible,
                                  int64_t stride, int hd, int G, float scale, float *scores, float *out) {
    if (hd % 8 != 0 || G > 64) moe_attend_group_f16_scalar(q, k, v, visible, stride, hd, G, scale, scores, out);
    else attend(q, k, v, visible, stride, hd, G, scale, scores, out, 1);
}

/* f32 -> f16, round to nearest even (as moe_f32_to_f16). */
AVX2 static void to_f16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = moe_f32_to_f16(src[i]);
}

/* a[0..<n] read as `streams` equal parts side by side, 128 bytes of each per step. */
AVX2 static float sum_f32(const float *a, int64_t n, int streams) {
    const int64_t len = n / streams / 32 * 32;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < len; i += 32)
        for (int s = 0; s < streams; s++) {
            const float *p = a + s * len + i;
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + 24));
        }
    float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (int64_t i = streams * len; i < n; i++) r += a[i];
    return r;
}

const moe_kernels moe_kernels_avx2 = {dot_f32, dot_bf16, dot_i8, dot_i4, sum_f32, pair_i4, tile_q, quant_i8, quant_i16,
    tile_i8, attend_group, attend_group_f16, to_f16, swiglu, log_sum_exp, dot_f16, widen_bf16, widen_f16, dot_nl4, dot_lowbit};
#endif
