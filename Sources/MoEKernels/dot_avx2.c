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

/* Same decomposition as the scalar dot_i4: the nibbles (0..15) are the
 * unsigned maddubs operand; the -8 offset or the min is applied per block
 * through s_b = d_b * sum(xq). */
AVX2 static float dot_i4(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    const int hdr = asym ? 4 : 2, nsub = group / MOE_QBLOCK;
    const int64_t gb = hdr + group / 2;
    __m256 acc = _mm256_setzero_ps();
    float off = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        float s = _cvtsh_ss(moe_load_u16(row));
        float c = asym ? _cvtsh_ss(moe_load_u16(row + 2)) : -8.0f * s;
        const uint8_t *data = row + hdr;
        const int64_t b0 = g0 / MOE_QBLOCK;
        for (int k = 0; k < nsub; k++) {
            __m128i raw = _mm_loadu_si128((const __m128i *)(data + 16 * k));
            __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x->q + (b0 + k) * MOE_QBLOCK));
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), ones);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(s * x->d[b0 + k]), acc);
            off += c * x->s[b0 + k];
        }
    }
    return hsum(acc) + off;
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

const moe_kernels moe_kernels_avx2 = {dot_f32, dot_bf16, dot_i8, dot_i4, sum_f32};
#endif
