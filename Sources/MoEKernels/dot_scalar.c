/* Portable dot-product kernels: the definition every SIMD path must match. */
#include "internal.h"

static float dot_f32(const float *w, const float *x, int64_t n) {
    float acc[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) acc[k] += w[i + k] * x[i + k];
    for (; i < n; i++) acc[0] += w[i] * x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    float acc = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)moe_load_u16(w + i) << 16;
        float f;
        memcpy(&f, &u, 4);
        acc += f * x[i];
    }
    return acc;
}

float moe_dot_f16_scalar(const uint16_t *w, const float *x, int64_t n) {
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += moe_f16_to_f32(moe_load_u16(w + i)) * x[i];
    return acc;
}

void moe_widen_bf16_scalar(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)moe_load_u16(src + i) << 16;
        memcpy(dst + i, &u, 4);
    }
}

void moe_widen_f16_scalar(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = moe_f16_to_f32(moe_load_u16(src + i));
}

/* Sum over the int16 activation blocks b of d16[b] * (int dot of block b), times the row scale.
 * A block sum is at most 1024 * 127 * 32767 < 2^33: it is kept in 64 bits here (the SIMD
 * paths split it over lanes that each stay below 2^31). */
static float dot_i8(const uint8_t *row, const moe_xq *x, int64_t n) {
    const int8_t *w = (const int8_t *)(row + 4);
    float acc = 0;
    for (int64_t c0 = 0; c0 < n; c0 += MOE_QBLOCK16) {
        int64_t end = c0 + MOE_QBLOCK16 < n ? c0 + MOE_QBLOCK16 : n;
        int64_t isum = 0;
        for (int64_t i = c0; i < end; i++) isum += (int32_t)w[i] * (int32_t)x->q16[i];
        acc += x->d16[c0 / MOE_QBLOCK16] * (float)isum;
    }
    return moe_load_f32(row) * acc;
}

/*
 * int4 group g with scale s (and min m): sum_j w_j x_j where
 *   symmetric  w_j = s (q_j - 8)  ->  s * sum_b d_b qdot_b  - 8 s * sum_b s_b
 *   asymmetric w_j = s q_j + m    ->  s * sum_b d_b qdot_b  +   m * sum_b s_b
 * with qdot_b = sum q_j xq_j over activation block b and s_b = d_b * sum xq_j.
 */
static float dot_i4(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym) {
    float acc = 0, off = 0;
    int64_t gb = (asym ? 4 : 2) + group / 2;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        float s = moe_f16_to_f32(moe_load_u16(row));
        float c = asym ? moe_f16_to_f32(moe_load_u16(row + 2)) : -8.0f * s;
        const uint8_t *data = row + (asym ? 4 : 2);
        for (int k = 0; k < group / MOE_QBLOCK; k++) {
            int64_t b = g0 / MOE_QBLOCK + k;
            const int8_t *xq = x->q + b * MOE_QBLOCK;
            const uint8_t *qb = data + 16 * k;
            int32_t isum = 0;
            for (int i = 0; i < 16; i++)
                isum += (int32_t)(qb[i] & 0xF) * xq[i] + (int32_t)(qb[i] >> 4) * xq[i + 16];
            acc += (s * x->d[b]) * (float)isum;
            off += c * x->s[b];
        }
    }
    return acc + off;
}

/*
 * Grid rows (nl4, groups of 32, one per activation block b): w_j = s grid[nib_j], so
 *   sum_j w_j x_j -> sum_b s d_b * sum_i grid[nib_i] xq_i
 * with no offset term (the grid values are signed).
 */
float moe_dot_nl4_scalar(const uint8_t *row, const moe_xq *x, int64_t n) {
    float acc = 0;
    for (int64_t b = 0; b < n / MOE_QBLOCK; b++, row += 2 + MOE_QBLOCK / 2) {
        const float s = moe_f16_to_f32(moe_load_u16(row));
        const uint8_t *qb = row + 2;
        const int8_t *xq = x->q + b * MOE_QBLOCK;
        int32_t isum = 0;
        for (int i = 0; i < 16; i++)
            isum += (int32_t)moe_nl4_grid[qb[i] & 0xF] * xq[i] + (int32_t)moe_nl4_grid[qb[i] >> 4] * xq[i + 16];
        acc += (s * x->d[b]) * (float)isum;
    }
    return acc;
}

/*
 * 3- and 2-bit rows: w_j = s (c_j - m) with m = 2^(bits-1), so as for symmetric int4
 *   sum_j w_j x_j -> s * sum_b d_b * sum_i c_i xq_i  -  m s * sum_b s_b
 * over the activation blocks b of each group (one scale per 32 or 64 weights).
 */
float moe_dot_lowbit_scalar(const uint8_t *row, const moe_xq *x, int64_t n, int bits, int group) {
    const int64_t gb = 2 + group * bits / 8;
    const float mid = (float)(1 << (bits - 1));
    float acc = 0, off = 0;
    for (int64_t g0 = 0; g0 < n; g0 += group, row += gb) {
        const float s = moe_f16_to_f32(moe_load_u16(row));
        for (int k = 0; k < group / MOE_QBLOCK; k++) {
            const int64_t b = g0 / MOE_QBLOCK + k;
            const uint8_t *blk = row + 2 + k * MOE_LOWBIT_BLOCK(bits);
            const int8_t *xq = x->q + b * MOE_QBLOCK;
            int32_t isum = 0;
            for (int j = 0; j < 32; j++) {
                int c = (blk[j & 7] >> (2 * (j >> 3))) & 3;
                if (bits == 3) c |= ((blk[8 + (j >> 3)] >> (j & 7)) & 1) << 2;
                isum += c * xq[j];
            }
            acc += (s * x->d[b]) * (float)isum;
            off += -mid * s * x->s[b];
        }
    }
    return acc + off;
}

/* a[0..<n] read as `streams` (1..MOE_READ_STREAMS_MAX) equal parts side by side. */
static float sum_f32(const float *a, int64_t n, int streams) {
    const int64_t len = n / streams / 8 * 8;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < len; i += 8)
        for (int s = 0; s < streams; s++)
            for (int k = 0; k < 8; k++) acc[k] += a[s * len + i + k];
    for (int64_t i = streams * len; i < n; i++) acc[0] += a[i];
    float r = 0;
    for (int k = 0; k < 8; k++) r += acc[k];
    return r;
}

const moe_kernels moe_kernels_scalar = {dot_f32, dot_bf16, dot_i8, dot_i4, sum_f32, NULL, NULL, NULL, NULL, NULL,
    moe_attend_group_scalar, moe_attend_group_f16_scalar, moe_to_f16_scalar, moe_swiglu_scalar,
    moe_log_sum_exp_scalar, moe_dot_f16_scalar, moe_widen_bf16_scalar, moe_widen_f16_scalar, moe_dot_nl4_scalar,
    moe_dot_lowbit_scalar};
