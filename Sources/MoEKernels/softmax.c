// Row statistics of logits for evaluation: log-softmax normaliser, KL divergence, argmax.
// Plain C compiled with -O3 so evaluation stays fast in debug builds too.
#include "MoEKernelsSoftmax.h"

#include <math.h>

double moe_log_sum_exp(const float *x, size_t n) {
    double max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (x[i] > max) max = x[i];
    }
    if (!isfinite(max)) return max;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isnan(x[i])) sum += exp((double)x[i] - max);
    }
    return max + log(sum);
}

double moe_kl_divergence(const float *p, double log_zp, const float *q, double log_zq, size_t n) {
    double kl = 0;
    for (size_t i = 0; i < n; i++) {
        double lp = (double)p[i] - log_zp;
        if (isnan(lp) || lp == -INFINITY) continue;
        kl += exp(lp) * (lp - ((double)q[i] - log_zq));
    }
    return kl;
}

size_t moe_argmax(const float *x, size_t n) {
    size_t best = 0;
    float best_value = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (x[i] > best_value) {
            best = i;
            best_value = x[i];
        }
    }
    return best;
}
