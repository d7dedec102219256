/* AVX2 + FMA + F16C dot-product kernels (x86-64), selected at run time. */
#include "internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

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

AVX2 static float dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float r = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) {
        uint32_t u = (uint32_t)moe_load_u16(w + i) << 16;
        float f;
        memcpy(&f, &u, 4);
        r += f * x[i];
    }
    return r;
}

/* 32 signed int8 x 32 signed int8 -> 8 int32 partial sums. maddubs needs an
 * unsigned operand: |w| times x with w's sign moved onto x (w, x in -127..127,
 * so pairs stay far from int16 saturation). */
AVX2 static inline __m256i dot_s8s8(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

AVX2 static float dot_i8(const uint8_t *row, const moe_xq *x, int64_t n) {
    const int8_t *w = (const int8_t *)(row + 4);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t full = n & ~(int64_t)(2 * MOE_QBLOCK - 1), i = 0;
    for (; i < full; i += 2 * MOE_QBLOCK) {
        __m256i p0 = dot_s8s8(_mm256_loadu_si256((const __m256i *)(w + i)),
                              _mm256_loadu_si256((const __m256i *)(x->q + i)));
        __m256i p1 = dot_s8s8(_mm256_loadu_si256((const __m256i *)(w + i + 32)),
                              _mm256_loadu_si256((const __m256i *)(x->q + i + 32)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(x->d[i / MOE_QBLOCK]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(x->d[i / MOE_QBLOCK + 1]), a1);
    }
    float r = hsum(_mm256_add_ps(a0, a1)) + moe_dot_i8_tail(w, x, full, n);
    return moe_load_f32(row) * r;
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
 * s_b = d_b * sum(xq). Two independent accumulators hide the FMA latency:
 * G = 32 pairs consecutive groups, larger groups pair sub-blocks in a group.
 */
__attribute__((always_inline)) AVX2 static inline float
dot_i4_g32(const uint8_t *row, const moe_xq *x, int64_t n, int asym) {
    const int64_t gb = (asym ? 4 : 2) + 16, ng = n / 32;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float o0 = 0, o1 = 0;
    int64_t g = 0;
    for (; g + 2 <= ng; g += 2, row += 2 * gb) {
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

__attribute__((always_inline)) AVX2 static inline float
dot_i4_gbig(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym) {
    const int hdr = asym ? 4 : 2, nsub = group / MOE_QBLOCK;
    const int64_t gb = hdr + group / 2;
    __m256 acc = _mm256_setzero_ps();
    float off = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        I4_HEADER(row, asym, s, c);
        const uint8_t *data = row + hdr;
        const int64_t b0 = g0 / MOE_QBLOCK;
        const int8_t *xq = x->q + g0;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        float sx0 = 0, sx1 = 0;
        for (int k = 0; k < nsub; k += 2) {
            a0 = _mm256_fmadd_ps(i4_block(data + 16 * k, xq + 32 * k), _mm256_broadcast_ss(x->d + b0 + k), a0);
            a1 = _mm256_fmadd_ps(i4_block(data + 16 * k + 16, xq + 32 * k + 32), _mm256_broadcast_ss(x->d + b0 + k + 1), a1);
            sx0 += x->s[b0 + k];
            sx1 += x->s[b0 + k + 1];
        }
        acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(s), acc);
        off += c * (sx0 + sx1);
    }
    return hsum(acc) + off;
}

/* Two rows at once (adjacent in memory): shares the activation loads and
 * scale broadcasts. Each row goes through exactly the same floating-point
 * operations as in dot_i4_g32/dot_i4_gbig, so results are bit-identical. */
__attribute__((always_inline)) AVX2 static inline __m256i i4_codes(const uint8_t *data) {
    __m128i raw = _mm_loadu_si128((const __m128i *)data);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

__attribute__((always_inline)) AVX2 static inline __m256 i4_dot(__m256i q, __m256i xv) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), _mm256_set1_epi16(1)));
}

__attribute__((always_inline)) AVX2 static inline void
dot2_i4_gbig(const uint8_t *r0, const uint8_t *r1, const moe_xq *x, int64_t n, int group, int asym, float *out) {
    const int hdr = asym ? 4 : 2, nsub = group / MOE_QBLOCK;
    const int64_t gb = hdr + group / 2;
    __m256 accA = _mm256_setzero_ps(), accB = accA;
    float offA = 0, offB = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, r0 += gb, r1 += gb) {
        I4_HEADER(r0, asym, sA, cA);
        I4_HEADER(r1, asym, sB, cB);
        const int64_t b0 = g0 / MOE_QBLOCK;
        const int8_t *xq = x->q + g0;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0v = a0, b1v = a0;
        float sx0 = 0, sx1 = 0;
        for (int k = 0; k < nsub; k += 2) {
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + 32 * k));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + 32 * k + 32));
            __m256 d0 = _mm256_broadcast_ss(x->d + b0 + k), d1 = _mm256_broadcast_ss(x->d + b0 + k + 1);
            a0 = _mm256_fmadd_ps(i4_dot(i4_codes(r0 + hdr + 16 * k), x0), d0, a0);
            a1 = _mm256_fmadd_ps(i4_dot(i4_codes(r0 + hdr + 16 * k + 16), x1), d1, a1);
            b0v = _mm256_fmadd_ps(i4_dot(i4_codes(r1 + hdr + 16 * k), x0), d0, b0v);
            b1v = _mm256_fmadd_ps(i4_dot(i4_codes(r1 + hdr + 16 * k + 16), x1), d1, b1v);
            sx0 += x->s[b0 + k];
            sx1 += x->s[b0 + k + 1];
        }
        accA = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(sA), accA);
        accB = _mm256_fmadd_ps(_mm256_add_ps(b0v, b1v), _mm256_set1_ps(sB), accB);
        offA += cA * (sx0 + sx1);
        offB += cB * (sx0 + sx1);
    }
    out[0] = hsum(accA) + offA;
    out[1] = hsum(accB) + offB;
}

AVX2 static void dot2_i4(const uint8_t *r0, const uint8_t *r1, const moe_xq *x, int64_t n, int group, int asym,
                         float *out) {
    switch (group) {
    case 64: if (asym) dot2_i4_gbig(r0, r1, x, n, 64, 1, out); else dot2_i4_gbig(r0, r1, x, n, 64, 0, out); return;
    case 128: if (asym) dot2_i4_gbig(r0, r1, x, n, 128, 1, out); else dot2_i4_gbig(r0, r1, x, n, 128, 0, out); return;
    default:
        out[0] = asym ? dot_i4_g32(r0, x, n, 1) : dot_i4_g32(r0, x, n, 0);
        out[1] = asym ? dot_i4_g32(r1, x, n, 1) : dot_i4_g32(r1, x, n, 0);
    }
}

AVX2 static float dot_i4(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym) {
    switch (group) {
    case 32: return asym ? dot_i4_g32(row, x, n, 1) : dot_i4_g32(row, x, n, 0);
    case 64: return asym ? dot_i4_gbig(row, x, n, 64, 1) : dot_i4_gbig(row, x, n, 64, 0);
    default: return asym ? dot_i4_gbig(row, x, n, 128, 1) : dot_i4_gbig(row, x, n, 128, 0);
    }
}

AVX2 static float sum_f32(const float *a, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(a + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(a + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(a + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(a + i + 24));
    }
    float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) r += a[i];
    return r;
}

const moe_kernels moe_kernels_avx2 = {dot_f32, dot_bf16, dot_i8, dot_i4, sum_f32, dot2_i4};
#endif
