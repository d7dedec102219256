/*
 * MoEKernels: quantized weight formats and the CPU kernels that read them.
 *
 * A quantized matrix is one contiguous byte buffer plus (rows, cols, format).
 * Rows are stored one after another with a fixed stride (moe_row_bytes), so a
 * buffer can be memory-mapped straight from a file. The byte layouts are
 * specified in docs/quantization.md; all multi-byte values are little-endian.
 *
 * Kernels:
 *   moe_matvec   y[rows]    = W x
 *   moe_matmul   Y[T, rows] = X[T, cols] W^T
 * For the integer formats the activations are quantized once per call (int8
 * in blocks of 32 for int4 weights, int16 in blocks of 1024 for int8 weights,
 * one f32 scale per block), and the inner loop is an integer dot product. Rows are split over a persistent worker pool (moe_set_threads).
 *
 * Paths: a portable scalar path is always built; AVX-512 (F, BW, VL, VNNI) or
 * AVX2+FMA+F16C on x86-64 and NEON on aarch64 are chosen at start-up from the
 * CPU features. The environment variable MOEPACK_KERNELS=scalar forces the
 * portable path, MOEPACK_KERNELS=avx2 the AVX2 path on an AVX-512 machine.
 * All paths compute the same integer sums; they differ only in the order of
 * the floating-point accumulation.
 */
#ifndef MOE_KERNELS_H
#define MOE_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#include "MoEKernelsSoftmax.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Weight formats. Values are stable: they are written into bundle files. Every
 * format is one row of the table moe_format_info reads (formats.c): its name,
 * code bits, group, header bytes, symmetry, levels, grid and kernel family. */
enum {
    MOE_FMT_F32 = 0,
    MOE_FMT_BF16 = 1,
    MOE_FMT_INT8 = 2,       /* per-row f32 scale, symmetric, -127..127 */
    MOE_FMT_INT4G32 = 3,    /* groups of 32 along cols, f16 scale, symmetric -7..7 (15 levels) */
    MOE_FMT_INT4G64 = 4,
    MOE_FMT_INT4G128 = 5,
    MOE_FMT_INT4G32A = 6,   /* groups, f16 scale + f16 min, asymmetric 0..15 */
    MOE_FMT_INT4G64A = 7,
    MOE_FMT_INT4G128A = 8,
    MOE_FMT_F16 = 9,        /* IEEE binary16 (checkpoints stored in float16) */
    MOE_FMT_Q4G32 = 10,     /* groups, signed f16 scale, symmetric -8..7 (16 levels, ggml Q4_0 rule) */
    MOE_FMT_Q4G64 = 11,
    MOE_FMT_Q4G128 = 12,
    MOE_FMT_NL4G32 = 13,    /* groups of 32, f16 scale, a fixed non-uniform 16-value grid (IQ4_NL's) */
    MOE_FMT_Q3G32 = 14,     /* groups, signed f16 scale, 3-bit codes, symmetric -4..3 (8 levels) */
    MOE_FMT_Q3G64 = 15,
    MOE_FMT_Q2G32 = 16,     /* groups, signed f16 scale, 2-bit codes, symmetric -2..1 (4 levels) */
    MOE_FMT_Q2G64 = 17,
    MOE_FMT_COUNT = 18
};

/* The kernels that multiply a format's rows. */
enum {
    MOE_KERNEL_F32 = 0,
    MOE_KERNEL_BF16 = 1,
    MOE_KERNEL_F16 = 2,
    MOE_KERNEL_INT8 = 3,    /* int8 codes, one f32 scale per row; int16 activations */
    MOE_KERNEL_INT4 = 4,    /* nibbles in groups, f16 scale (+ f16 min); int8 activations */
    MOE_KERNEL_NL4 = 5,     /* nibbles indexing `grid`, f16 scale per group; int8 activations */
    MOE_KERNEL_LOWBIT = 6   /* 2- or 3-bit codes c in groups, f16 scale s, w = s (c - 2^(bits-1)); int8 activations */
};

/*
 * One row of the format table. Bytes of a row of n weights:
 *   group > 0:  (n / group) * (header + group * bits / 8)   (n must be a multiple of group)
 *   group = 0:  header + n * bits / 8
 * How the quantizer picks codes (the rule the name stands for) follows from the
 * fields: symmetric uniform formats with 15 levels use -7..7 (scale max|w| / 7),
 * with 16 levels -8..7 (the weight of largest magnitude maps to -8); asymmetric
 * ones 0..15 over [min, max]; grid formats the nearest grid value under the
 * best of a set of scales; the 3- and 2-bit formats (8 and 4 levels, -4..3 and
 * -2..1) the same search on their uniform grid (docs/quantization.md).
 */
typedef struct {
    const char *name;       /* the name bundles store */
    int bits;               /* bits of one stored value or code */
    int group;              /* weights sharing a scale along a row; 0: one per row (or none) */
    int header;             /* bytes of scale (and min) ahead of each group, or of the row if group = 0 */
    int symmetric;          /* 1: no stored offset, zero decodes to zero */
    int levels;             /* distinct codes the quantizer uses; 0 for the float formats */
    const int8_t *grid;     /* 16 code values (ascending) of a non-uniform format, else NULL */
    int kernel;             /* MOE_KERNEL_* */
} moe_format_traits;

/* The table row of a format id, NULL for an unknown id. */
const moe_format_traits *moe_format_info(int fmt);

/* Error codes (0 is success). moe_strerror gives a sentence for each. */
enum {
    MOE_OK = 0,
    MOE_ERR_FORMAT = -1,     /* unknown format id */
    MOE_ERR_SHAPE = -2,      /* negative sizes, or cols not a multiple of the int4 group size */
    MOE_ERR_NONFINITE = -3,  /* NaN or Inf in the weights */
    MOE_ERR_RANGE = -4,      /* a scale does not fit its storage type (f16 or bf16 overflow) */
    MOE_ERR_SIZE = -5,       /* destination buffer size does not match, or the size overflows */
    MOE_ERR_PATH = -6        /* requested kernel path is not available on this CPU */
};

/* Kernel paths. */
enum {
    MOE_PATH_SCALAR = 0,
    MOE_PATH_AVX2 = 1,
    MOE_PATH_NEON = 2,
    MOE_PATH_AVX512 = 3
};

const char *moe_strerror(int err);
const char *moe_format_name(int fmt);

/* The table's group (0 for formats without groups), and 1 for asymmetric formats. */
int moe_format_group(int fmt);
int moe_format_is_asymmetric(int fmt);

/* Bytes of one stored row, or a negative error (MOE_ERR_FORMAT/SHAPE/SIZE). */
int64_t moe_row_bytes(int fmt, int64_t cols);
/* Bytes of a rows x cols matrix, or a negative error. */
int64_t moe_matrix_bytes(int fmt, int64_t rows, int64_t cols);

/*
 * Quantize a row-major f32 matrix w[rows * cols] into dst (exactly
 * moe_matrix_bytes bytes). On error, if bad_row is not NULL it receives the
 * first offending row (or -1). NaN/Inf anywhere is MOE_ERR_NONFINITE.
 */
int moe_quantize(int fmt, const float *w, int64_t rows, int64_t cols,
                 void *dst, size_t dst_bytes, int64_t *bad_row);

/*
 * moe_quantize with an importance per column (importance[cols], e.g. the mean
 * square of each input channel over calibration tokens): the 16-level int4
 * formats (q4g*) choose each group's scale by a search that minimises
 * sum_j importance_j (w_j - deq_j)^2 instead of the plain Q4_0 rule. The other
 * formats ignore it (nl4g32 and the 3- and 2-bit q3g*, q2g* keep their unweighted
 * search: the weighted one measured worse for some experts on held-out tokens).
 * importance = NULL is moe_quantize; a group
 * whose importance is all zero takes the format's plain rule.
 */
int moe_quantize_weighted(int fmt, const float *w, int64_t rows, int64_t cols, const float *importance,
                          void *dst, size_t dst_bytes, int64_t *bad_row);

/*
 * Error-compensating (GPTQ) rounding of w[rows * cols] into dst: columns are rounded in
 * order and each one's error is spread over the later columns through hinv, the upper
 * Cholesky factor U of the inverse input Hessian (H^-1 = U^T U, cols x cols, row-major;
 * quant_gptq.c). w is overwritten (it ends as the dequantized matrix). Supported formats
 * (moe_gptq_supported): int8 and the scale-only grids q4g*, nl4g32, q3g*, q2g*; a group's
 * scale comes from the format's unweighted search on its current weights. With a diagonal
 * H this is exactly moe_quantize (q4g*: with the scale search) - nothing propagates.
 */
int moe_gptq_supported(int fmt);
int moe_quantize_gptq(int fmt, float *w, int64_t rows, int64_t cols, const float *hinv,
                      void *dst, size_t dst_bytes, int64_t *bad_row);

/* The small products of that rounding, kept out of OpenBLAS (whose threads spin between small
 * calls): c[width * width] += x^T x for x[count * width], upper triangle (j >= i) only; and
 * out[r] = x_r h x_r^T for every row of x[rows * cols], h[cols * cols] symmetric and full. */
void moe_gram_update(const float *x, int64_t count, int64_t width, float *c);
void moe_row_quadratic(const float *x, int64_t rows, int64_t cols, const float *h, double *out);

/* Reference decoder: dst[rows * cols] from a quantized buffer. */
int moe_dequantize(int fmt, const void *src, int64_t rows, int64_t cols, float *dst);

/* y[rows] = W x on the default path with the worker pool. */
int moe_matvec(int fmt, const void *w, int64_t rows, int64_t cols,
               const float *x, float *y);
/* y[T * rows] = x[T * cols] W^T on the default path with the worker pool. */
int moe_matmul(int fmt, const void *w, int64_t rows, int64_t cols,
               const float *x, int64_t T, float *y);
/* One product of a moe_matmul_many call: y[T * rows] = x[T * cols] W^T. */
typedef struct {
    int fmt;
    const void *w;
    int64_t rows, cols;
    const float *x;
    int64_t T;
    float *y;
} moe_product;
/* Runs n independent products as one job on the worker pool (the rows of all
 * of them share the threads). Outputs must not overlap inputs. Returns the
 * first product's error, before anything is computed, if any is invalid. */
int moe_matmul_many(const moe_product *items, int n);
/* Same as moe_matmul on an explicit path; threaded = 0 runs on the calling
 * thread only. Returns MOE_ERR_PATH if the path is not available here. */
int moe_matmul_on(int path, int threaded, int fmt, const void *w, int64_t rows,
                  int64_t cols, const float *x, int64_t T, float *y);

/* dst[0..<n] = the n values at src in fmt (f32, bf16 or f16) as f32, exactly, on the
 * calling thread and the default path. MOE_ERR_FORMAT for the other formats. */
int moe_widen(int fmt, const void *src, int64_t n, float *dst);

/* A buffer of at least n floats (64-byte aligned) that belongs to the calling thread and
 * is kept for its next call (one buffer per thread, grown on demand; its previous contents
 * are lost when it grows). NULL when the allocation fails. For scratch that a pool task
 * fills and uses before it returns. */
float *moe_thread_floats(int64_t n);

/* The exact f32 reference: decode each row then accumulate in double.
 * Slow; for tests and error measurements only. */
int moe_matmul_reference(int fmt, const void *w, int64_t rows, int64_t cols,
                         const float *x, int64_t T, float *y);

/* Path selection. moe_default_path() is what moe_matvec/matmul use. */
int moe_default_path(void);
int moe_path_available(int path);
int moe_set_default_path(int path);   /* MOE_OK or MOE_ERR_PATH */
const char *moe_path_name(int path);

/* Worker pool: total threads including the caller (1 = no workers).
 * Created once; resizing joins the old workers. Calls are serialized. */
int moe_set_threads(int n);
int moe_get_threads(void);
/* Runs fn(ctx, chunk, nchunks) for every chunk in 0..<nchunks on the pool
 * (any order, any thread; returns when all are done). fn must not call back
 * into the kernels' threaded entry points: the pool runs one job at a time. */
void moe_parallel_for(int nchunks, void (*fn)(void *ctx, int chunk, int nchunks), void *ctx);
/* Wall-clock nanoseconds spent inside pool jobs so far (from a job's call to its return,
 * single-chunk jobs run on the caller included), for measuring how much of a computation
 * runs outside them, on one thread. */
int64_t moe_pool_busy_ns(void);

/*
 * Grouped-query attention of `group` query heads q [group, head_dim]
 * that share one key/value head, against `visible` cached positions whose
 * rows start at k + j * stride and v + j * stride: for each head h,
 * out[h] = softmax(scale * K q[h]) V. scores is scratch of group * visible
 * floats. Runs on the calling thread, on the default path.
 */
void moe_attend_group(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                      int head_dim, int group, float scale, float *scores, float *out);

/* moe_attend_group over keys and values stored as f16 (IEEE binary16); each
 * is widened to f32 as it is read, and all arithmetic is f32. */
void moe_attend_group_f16(const float *q, const uint16_t *k, const uint16_t *v, int64_t visible, int64_t stride,
                          int head_dim, int group, float scale, float *scores, float *out);

/* dst[i] = moe_f32_to_f16(src[i]) for i in 0..<n, vectorised where the CPU can. */
void moe_f32_to_f16_n(const float *src, uint16_t *dst, int64_t n);

/* gate[i] <- silu(gate[i]) * up[i] = gate[i] / (1 + e^-gate[i]) * up[i], the
 * activation of a SwiGLU MLP, on the calling thread. */
void moe_swiglu(float *gate, const float *up, int64_t n);

/* log sum_i e^x[i] over n floats on the default path, for log-softmax normalisers: the
 * exponentials in float (SIMD where the CPU can, relative error ~2e-7 each), their sum in
 * double. NaN entries are left out; -inf for n = 0 or all -inf. */
double moe_log_sum_exp_f32(const float *x, int64_t n);

/* CRC-32C update with the CPU's crc32 instruction (x86-64 SSE4.2): the state
 * is the running register (start 0xFFFFFFFF, final value its complement).
 * Returns 0, leaving the state alone, where there is no such instruction. */
int moe_crc32c_update(uint32_t *state, const void *data, size_t n);

/* Keeps freed memory of large allocations in the heap (glibc: raises the
 * mmap and trim thresholds) so per-step buffers do not fault in fresh pages
 * on every step. For executables that run models; a no-op elsewhere. */
void moe_keep_heap_memory(void);

/* f16 helpers (IEEE binary16, round to nearest even). */
uint16_t moe_f32_to_f16(float f);
float moe_f16_to_f32(uint16_t h);

/* Read bandwidth probe: sums n floats using the worker pool (STREAM-like
 * "read" kernel); returns the sum so the compiler keeps the reads. The n
 * floats are cut into 64 pieces that the pool's threads take in turn, and
 * each piece is read as `streams` (1..MOE_READ_STREAMS_MAX) equal parts side
 * by side: several concurrent streams per core is how a core's prefetchers
 * reach the most bandwidth. */
#define MOE_READ_STREAMS_MAX 8
double moe_read_sum(const float *a, int64_t n, int streams);

#ifdef __cplusplus
}
#endif
#endif
