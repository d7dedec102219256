/* Shared between the MoEKernels translation units; not public. */
#ifndef MOE_KERNELS_INTERNAL_H
#define MOE_KERNELS_INTERNAL_H
#include "MoEKernels.h"
#include <string.h>

/* Activations are quantized to int8 in blocks of this many values. */
#define MOE_QBLOCK 32

static inline float moe_load_f32(const void *p) { float f; memcpy(&f, p, 4); return f; }
static inline uint16_t moe_load_u16(const void *p) { uint16_t h; memcpy(&h, p, 2); return h; }

/*
 * One activation row quantized for the integer kernels: nb blocks of 32
 * int8 values (the last block zero-padded), each with scale d and s = d * sum(q).
 */
typedef struct {
    const int8_t *q;
    const float *d;
    const float *s;
} moe_xq;

/*
 * Dot-product kernels of one path. n = cols. w points at the start of one
 * stored row. group/asym describe int4 rows.
 */
typedef struct {
    float (*dot_f32)(const float *w, const float *x, int64_t n);
    float (*dot_bf16)(const uint16_t *w, const float *x, int64_t n);
    float (*dot_i8)(const uint8_t *row, const moe_xq *x, int64_t n);
    float (*dot_i4)(const uint8_t *row, const moe_xq *x, int64_t n, int group, int asym);
    float (*sum_f32)(const float *a, int64_t n);   /* read-bandwidth probe */
    /* Optional: two adjacent int4 rows at once, bit-identical to two dot_i4 calls. */
    void (*dot2_i4)(const uint8_t *row0, const uint8_t *row1, const moe_xq *x, int64_t n,
                    int group, int asym, float *out);
} moe_kernels;

extern const moe_kernels moe_kernels_scalar;
#if defined(__x86_64__)
extern const moe_kernels moe_kernels_avx2;
#endif
#if defined(__aarch64__)
extern const moe_kernels moe_kernels_neon;
#endif

/* Scalar pieces reused by the SIMD paths for row tails. */
float moe_dot_i8_tail(const int8_t *w, const moe_xq *x, int64_t from, int64_t n);

/* Worker pool: run fn(ctx, chunk, nchunks) once for every chunk in
 * 0..<nchunks, spread over the caller and the workers (any order, any thread). */
typedef void (*moe_task_fn)(void *ctx, int chunk, int nchunks);
void moe_pool_run(moe_task_fn fn, void *ctx, int nchunks);

#endif
