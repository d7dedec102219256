#ifndef MOE_KERNELS_SOFTMAX_H
#define MOE_KERNELS_SOFTMAX_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// log Σ exp(x[i]) in double, with the maximum subtracted first (the log-softmax normaliser).
/// -inf when n == 0 or every x is -inf. NaN entries count as -inf.
double moe_log_sum_exp(const float *x, size_t n);

/// KL(p ‖ q) = Σ p_i (log p_i − log q_i) in double, where log p_i = p[i] − log_zp and
/// log q_i = q[i] − log_zq (logits and their normalisers from moe_log_sum_exp).
double moe_kl_divergence(const float *p, double log_zp, const float *q, double log_zq, size_t n);

/// Index of the largest value; the lowest index wins a tie; NaN never wins; 0 when n == 0.
size_t moe_argmax(const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
