/* Portable definitions of the model's non-matrix kernels: the SwiGLU activation, the
 * attention of the query heads that share one key/value head (over an f32 or f16 cache),
 * and the f32 -> f16 conversion of cached keys and values. */
#include "internal.h"
#include <math.h>

/* gate <- silu(gate) * up = gate / (1 + e^-gate) * up, the activation of a SwiGLU MLP. */
void moe_swiglu_scalar(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1 + expf(-gate[i])) * up[i];
}

double moe_log_sum_exp_scalar(const float *x, int64_t n) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    if (!isfinite(max)) return max;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i])) sum += expf(x[i] - max);
    return max + log(sum);
}

/* Element i of a key/value stream of f32 or f16. */
static inline float kv_at(const void *base, int64_t i, int f16) {
    return f16 ? moe_f16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

/*
 * The portable definition: scores[h * visible + j] = scale * K_j . q_h,
 * softmax over j (max subtracted), out_h = sum_j p_hj V_j.
 */
static void attend(const float *q, const void *k, const void *v, int64_t visible, int64_t stride, int hd, int G,
                   float scale, float *scores, float *out, int f16) {
    for (int h = 0; h < G; h++) {
        float *s = scores + h * visible, max = -INFINITY, sum = 0;
        for (int64_t j = 0; j < visible; j++) {
            float acc = 0;
            for (int d = 0; d < hd; d++) acc += kv_at(k, j * stride + d, f16) * q[h * hd + d];
            s[j] = scale * acc;
            max = s[j] > max ? s[j] : max;
        }
        for (int64_t j = 0; j < visible; j++) {
            s[j] = expf(s[j] - max);
            sum += s[j];
        }
        float inv = 1 / sum, *o = out + h * hd;
        for (int d = 0; d < hd; d++) o[d] = 0;
        for (int64_t j = 0; j < visible; j++)
            for (int d = 0; d < hd; d++) o[d] += s[j] * kv_at(v, j * stride + d, f16);
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}

void moe_attend_group_scalar(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                             int hd, int G, float scale, float *scores, float *out) {
    attend(q, k, v, visible, stride, hd, G, scale, scores, out, 0);
}

void moe_attend_group_f16_scalar(const float *q, const uint16_t *k, const uint16_t *v, int64_t visible,
                                 int64_t stride, int hd, int G, float scale, float *scores, float *out) {
    attend(q, k, v, visible, stride, hd, G, scale, scores, out, 1);
}

void moe_to_f16_scalar(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = moe_f32_to_f16(src[i]);
}
