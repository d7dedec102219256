/* Portable definitions of the model's non-matrix kernels: the SwiGLU activation and
 * the attention of the query heads that share one key/value head. */
#include "internal.h"
#include <math.h>

/* gate <- silu(gate) * up = gate / (1 + e^-gate) * up, the activation of a SwiGLU MLP. */
void moe_swiglu_scalar(float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) gate[i] = gate[i] / (1 + expf(-gate[i])) * up[i];
}

/*
 * The portable definition: scores[h * visible + j] = scale * K_j . q_h,
 * softmax over j (max subtracted), out_h = sum_j p_hj V_j.
 */
void moe_attend_group_scalar(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                             int hd, int G, float scale, float *scores, float *out) {
    for (int h = 0; h < G; h++) {
        float *s = scores + h * visible, max = -INFINITY, sum = 0;
        for (int64_t j = 0; j < visible; j++) {
            float acc = 0;
            for (int d = 0; d < hd; d++) acc += k[j * stride + d] * q[h * hd + d];
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
            for (int d = 0; d < hd; d++) o[d] += s[j] * v[j * stride + d];
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}
