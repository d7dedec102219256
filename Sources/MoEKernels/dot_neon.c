/* NEON dot-product kernels (aarch64, baseline ARMv8 NEON: no dotprod needed). */
#include "internal.h"
#if defined(__aarch64__)
#include <arm_neon.h>

static float dot_f32(const float *w, const float *x, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(w + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
    float r = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) r += w[i] * x[i];
    return r;
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t v = vld1q_u16(w + i);
        a0 = vfmaq_f32(a0, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(v), 16)), vld1q_f32(x + i + 4));
    }
    float r = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) {
        uint32_t u = (uint32_t)moe_load_u16(w + i) << 16;
        float f;
        memcpy(&f, &u, 4);
        r += f * x[i];
    }
    return r;
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + i))), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + i + 4))), vld1q_f32(x + i + 4));
    }
    float r = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) r += moe_f16_to_f32(moe_load_u16(w + i)) * x[i];
    return r;
}

static void widen_bf16(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src + i), 16)));
    moe_widen_bf16_scalar(src + i, dst + i, n - i);
}

static void widen_f16(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    moe_widen_f16_scalar(src + i, dst + i, n - i);
}

/* 32 x 32 int8 products summed into 4 int32 lanes. Two products per int16
 * lane stay below 2 * 127 * 127 < 2^15. */
static inline int32x4_t dot32(int8x16_t w0, int8x16_t w1, const int8_t *xq) {
    int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
    p0 = vmlal_s8(p0, vget_high_s8(w0), vget_high_s8(x0));
    int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
    p1 = vmlal_s8(p1, vget_high_s8(w1), vget_high_s8(x1));
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}

/* 64 int8 weights times 64 int16 activations, widened and summed into 4 int32
 * lanes (each at most 16 * 127 * 32767 in magnitude). */
static inline int32x4_t dot_i8_i16_64(const int8_t *w, const int16_t *x) {
    int32x4_t s = vdupq_n_s32(0);
    for (int k = 0; k < 64; k += 16) {
        int8x16_t wv = vld1q_s8(w + k);
        int16x8_t wl = vmovl_s8(vget_low_s8(wv)), wh = vmovl_s8(vget_high_s8(wv));
        int16x8_t xl = vld1q_s16(x + k), xh = vld1q_s16(x + k + 8);
        s = vmlal_s16(s, vget_low_s16(wl), vget_low_s16(xl));
        s = vmlal_high_s16(s, wl, xl);
        s = vmlal_s16(s, vget_low_s16(wh), vget_low_s16(xh));
        s = vmlal_high_s16(s, wh, xh);
    }
    return s;
}

/* Each int16 block 64 columns at a time in SIMD, a block's last n % 64 columns in scalar code. */
static float dot_i8(const uint8_t *row, const moe_xq *x, int64_t n) {
    const int8_t *w = (const int8_t *)(row + 4);
    float32x4_t acc = vdupq_n_f32(0);
    float rest = 0;
    for (int64_t c0 = 0; c0 < n; c0 += MOE_QBLOCK16) {
        const int64_t end = c0 + MOE_QBLOCK16 < n ? c0 + MOE_QBLOCK16 : n, simd = c0 + ((end - c0) & ~(int64_t)63);
        const float d = x->d16[c0 / MOE_QBLOCK16];
        /* at most 256 products per lane per block: below 2^31 */
        int32x4_t s = vdupq_n_s32(0);
        for (int64_t k = c0; k < simd; k += 64) {
            __builtin_prefetch(w + k + MOE_PREFETCH_BYTES);
            s = vaddq_s32(s, dot_i8_i16_64(w + k, x->q16 + k));
        }
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), d);
        int32_t r = 0;   /* at most 63 products */
        for (int64_t k = simd; k < end; k++) r += (int32_t)w[k] * (int32_t)x->q16[k];
        rest += d * (float)r;
    }
    return moe_load_f32(row) * (vaddvq_f32(acc) + rest);
}

static float dot_i4(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym) {
    const uint8x16_t low = vdupq_n_u8(0x0F);
    const int hdr = asym ? 4 : 2, nsub = group / MOE_QBLOCK;
    const int64_t gb = hdr + group / 2;
    float32x4_t acc = vdupq_n_f32(0);
    float off = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        float s = moe_f16_to_f32(moe_load_u16(row));
        float c = asym ? moe_f16_to_f32(moe_load_u16(row + 2)) : -8.0f * s;
        const uint8_t *data = row + hdr;
        const int64_t b0 = g0 / MOE_QBLOCK;
        for (int k = 0; k < nsub; k++) {
            uint8x16_t raw = vld1q_u8(data + 16 * k);
            int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(raw, low));
            int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
            int32x4_t p = dot32(lo, hi, x->q + (b0 + k) * MOE_QBLOCK);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), s * x->d[b0 + k]);
            off += c * x->s[b0 + k];
        }
    }
    return vaddvq_f32(acc) + off;
}

/* Grid rows (nl4, groups of 32): the nibbles index the int8 grid (table lookup), then the
 * same signed int8 product as int4 without its offset. */
static float dot_nl4(const uint8_t *row, const moe_xq *x, int64_t n) {
    const int8x16_t grid = vld1q_s8(moe_nl4_grid);
    const uint8x16_t low = vdupq_n_u8(0x0F);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / MOE_QBLOCK; b++, row += 2 + MOE_QBLOCK / 2) {
        const float s = moe_f16_to_f32(moe_load_u16(row));
        uint8x16_t raw = vld1q_u8(row + 2);
        int8x16_t lo = vqtbl1q_s8(grid, vandq_u8(raw, low));
        int8x16_t hi = vqtbl1q_s8(grid, vshrq_n_u8(raw, 4));
        int32x4_t p = dot32(lo, hi, x->q + b * MOE_QBLOCK);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), s * x->d[b]);
    }
    return vaddvq_f32(acc);
}

/* The codes of a 3- or 2-bit block, weights 0..15 and 16..31 (layout in internal.h): the low
 * two bits by a shift per 8 bytes, the high bit of weight j (3 bits) by testing bit j % 8 of
 * byte j / 8 of the high word. */
static inline void lowbit_codes(const uint8_t *blk, const int bits, int8x16_t *c0, int8x16_t *c1) {
    const uint8x8_t b = vld1_u8(blk);
    const uint8x16_t bb = vcombine_u8(b, b), three = vdupq_n_u8(3);
    const int8x16_t sh0 = {0, 0, 0, 0, 0, 0, 0, 0, -2, -2, -2, -2, -2, -2, -2, -2};
    const int8x16_t sh1 = {-4, -4, -4, -4, -4, -4, -4, -4, -6, -6, -6, -6, -6, -6, -6, -6};
    uint8x16_t l0 = vandq_u8(vshlq_u8(bb, sh0), three), l1 = vandq_u8(vshlq_u8(bb, sh1), three);
    if (bits == 3) {
        uint32_t hi;
        memcpy(&hi, blk + 8, 4);
        const uint8x16_t h = vreinterpretq_u8_u32(vdupq_n_u32(hi)), four = vdupq_n_u8(4);
        const uint8x16_t i0 = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        const uint8x16_t i1 = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
        const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(vqtbl1q_u8(h, i0), bit), four));
        l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(vqtbl1q_u8(h, i1), bit), four));
    }
    *c0 = vreinterpretq_s8_u8(l0);
    *c1 = vreinterpretq_s8_u8(l1);
}

/* 3- and 2-bit rows as the portable kernel: s * sum_b d_b qdot_b - m s * sum_b s_b. */
static float dot_lowbit(const uint8_t *row, const moe_xq *x, int64_t n, int bits, int group) {
    const int64_t gb = 2 + group * bits / 8;
    const float mid = (float)(1 << (bits - 1));
    float32x4_t acc = vdupq_n_f32(0);
    float off = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        const float s = moe_f16_to_f32(moe_load_u16(row));
        for (int k = 0; k < group / MOE_QBLOCK; k++) {
            const int64_t b = g0 / MOE_QBLOCK + k;
            int8x16_t c0, c1;
            lowbit_codes(row + 2 + k * MOE_LOWBIT_BLOCK(bits), bits, &c0, &c1);
            int32x4_t p = dot32(c0, c1, x->q + b * MOE_QBLOCK);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), s * x->d[b]);
            off += -mid * s * x->s[b];
        }
    }
    return vaddvq_f32(acc) + off;
}

/* a[0..<n] read as `streams` equal parts side by side, 64 bytes of each per step. */
static float sum_f32(const float *a, int64_t n, int streams) {
    const int64_t len = n / streams / 16 * 16;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < len; i += 16)
        for (int s = 0; s < streams; s++) {
            const float *p = a + s * len + i;
            a0 = vaddq_f32(a0, vld1q_f32(p));
            a1 = vaddq_f32(a1, vld1q_f32(p + 4));
            a2 = vaddq_f32(a2, vld1q_f32(p + 8));
            a3 = vaddq_f32(a3, vld1q_f32(p + 12));
        }
    float r = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (int64_t i = streams * len; i < n; i++) r += a[i];
    return r;
}

const moe_kernels moe_kernels_neon = {dot_f32, dot_bf16, dot_i8, dot_i4, sum_f32, NULL, NULL, NULL, NULL, NULL,
    moe_attend_group_scalar, moe_attend_group_f16_scalar, moe_to_f16_scalar, moe_swiglu_scalar,
    moe_log_sum_exp_scalar, dot_f16, widen_bf16, widen_f16, dot_nl4, dot_lowbit};
#endif
