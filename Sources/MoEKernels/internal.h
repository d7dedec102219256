/* Shared between the MoEKernels translation units; not public. */
#ifndef MOE_KERNELS_INTERNAL_H
#define MOE_KERNELS_INTERNAL_H
#include "MoEKernels.h"
#include <string.h>

/* Activations meet int4 weights as int8 in blocks of MOE_QBLOCK values, and
 * int8 weights as int16 in blocks of MOE_QBLOCK16 (int8 x int8 would cost int8
 * weights measurable accuracy; see docs/quantization.md). One int16 scale per
 * 1024 values lets the integer sums of a block run to 1024 columns before one
 * conversion to float: a block sum stays below 1024 * 127 * 32767 < 2^33, split
 * over at least 4 lanes of at most 256 products each (< 2^31). The 8-token int8
 * tile then converts once per row of a 1024-column product instead of four
 * times. */
#define MOE_QBLOCK 32
#define MOE_QBLOCK16 1024

/* Spin-wait hint. */
#if defined(__x86_64__)
#include <immintrin.h>
#define MOE_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define MOE_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define MOE_CPU_RELAX() ((void)0)
#endif

static inline float moe_load_f32(const void *p) { float f; memcpy(&f, p, 4); return f; }
static inline uint16_t moe_load_u16(const void *p) { uint16_t h; memcpy(&h, p, 2); return h; }

/*
 * One activation row quantized for the integer kernels. For int4 weights:
 * blocks of 32 int8 values q (the last block zero-padded), each with scale d
 * and s = d * sum(q). For int8 weights: blocks of 1024 int16 values q16 (the
 * last block zero-padded) with scale d16. Only the form the weight format needs
 * is filled in.
 */
typedef struct {
    const int8_t *q;
    const float *d;
    const float *s;
    const int16_t *q16;
    const float *d16;
    /* Optional reordered form of q/d/s for int4 g64/g128 tiles (see pair_i4). */
    const int8_t *qp;
    const float *dv;    /* per 256 values, 8 lanes in pair_i4's order: each block's d */
    const float *m8;    /* the same lanes: -8 * d * sum(q) of each block */
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
    float (*sum_f32)(const float *a, int64_t n, int streams);   /* read-bandwidth probe (moe_read_sum) */
    /* Optional, together: products of the grouped formats (moe_tile_variant(fmt) >= 0, n a
     * multiple of 64) over the reordered activations pair_i4 makes (tile_grouped.h). tile_q
     * writes y[t * ystride + r] for nrows rows (stride rb) and ntok tokens (x[0..<ntok]). */
    void (*pair_i4)(const moe_xq *x, int64_t n, int8_t *qp, float *dv, float *m8);
    void (*tile_q)(int fmt, const uint8_t *w, int64_t rb, int64_t nrows, const moe_xq *x, int64_t ntok,
                   int64_t n, float *y, int64_t ystride);
    /* Optional activation quantizers for n a multiple of 32 (quant_i8) or 16 (quant_i16),
     * giving the same codes as the portable ones in dispatch.c. */
    void (*quant_i8)(const float *x, int64_t n, int8_t *q, float *d, float *s);
    void (*quant_i16)(const float *x, int64_t n, int16_t *q, float *d);
    /* Optional: int8 products for n a multiple of 16, same arguments as tile_q's after fmt. */
    void (*tile_i8)(const uint8_t *w, int64_t rb, int64_t nrows, const moe_xq *x, int64_t ntok,
                    int64_t n, float *y, int64_t ystride);
    /* Attention of G query heads sharing one key/value head (moe_attend_group). */
    void (*attend_group)(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                         int hd, int G, float scale, float *scores, float *out);
    /* The same over keys and values stored as f16 (moe_attend_group_f16). */
    void (*attend_group_f16)(const float *q, const uint16_t *k, const uint16_t *v, int64_t visible,
                             int64_t stride, int hd, int G, float scale, float *scores, float *out);
    /* dst[i] = f16(src[i]), round to nearest even (moe_f32_to_f16_n). */
    void (*to_f16)(const float *src, uint16_t *dst, int64_t n);
    /* gate <- silu(gate) * up (moe_swiglu). */
    void (*swiglu)(float *gate, const float *up, int64_t n);
    /* log sum_i e^x[i], NaN entries left out (moe_log_sum_exp_f32). */
    double (*log_sum_exp)(const float *x, int64_t n);
    float (*dot_f16)(const uint16_t *w, const float *x, int64_t n);
    /* dst[i] = f32 of the bf16 / f16 value src[i] (exact), for i in 0..<n. */
    void (*widen_bf16)(const uint16_t *src, float *dst, int64_t n);
    void (*widen_f16)(const uint16_t *src, float *dst, int64_t n);
    /* Grid-format (nl4) row: sum over groups of scale * sum_b d_b * sum grid[nib] xq. */
    float (*dot_nl4)(const uint8_t *row, const moe_xq *x, int64_t n);
    /* 3- or 2-bit row (MOE_KERNEL_LOWBIT) in groups of `group` (32 or 64). */
    float (*dot_lowbit)(const uint8_t *row, const moe_xq *x, int64_t n, int bits, int group);
} moe_kernels;

/* The grouped formats' tiles (tile_grouped.h), indexed by this variant: int4/q4 by group and
 * symmetry, nl4g32, q3 and q2 by group; -1 for a format without one. */
#define MOE_TILE_VARIANTS 11
static inline int moe_tile_variant(int fmt) {
    const moe_format_traits *f = moe_format_info(fmt);
    if (!f) return -1;
    const int g = f->group == 32 ? 0 : (f->group == 64 ? 1 : (f->group == 128 ? 2 : -1));
    if (g < 0) return -1;
    switch (f->kernel) {
    case MOE_KERNEL_INT4: return 2 * g + (f->symmetric ? 0 : 1);
    case MOE_KERNEL_NL4: return g == 0 ? 6 : -1;
    case MOE_KERNEL_LOWBIT: return g == 2 ? -1 : 7 + 2 * (f->bits == 2) + g;
    default: return -1;
    }
}

/* Tokens a tile loop keeps in L1 while it walks the rows: 8 int16 activation rows of 1024
 * values are 16 KB. Within such a block every row is read once for all of its tokens, so a
 * batched decode step (up to 8 sequences) reads each weight row from memory once; prefill
 * re-reads a chunk's rows (from L2) once per block. */
#define MOE_TILE_TOKEN_BLOCK 8
/* When a block's tokens take several tile passes, the passes run over this many rows at a
 * time (16 KB of 1024-column int8 rows), so the later passes find the rows in L1. */
#define MOE_TILE_ROW_BLOCK 16

/* The 16 values of the non-uniform 4-bit grid (formats.c). */
extern const int8_t moe_nl4_grid[16];
float moe_dot_nl4_scalar(const uint8_t *row, const moe_xq *x, int64_t n);
/* The values of the uniform grids: 16-level int4 -8..7, 3-bit -4..3, 2-bit -2..1 (quant_grid.c). */
extern const int8_t moe_q4_grid[16];
extern const int8_t moe_q3_grid[8];
extern const int8_t moe_q2_grid[4];
/* Index of the grid value nearest to v among the L ascending values g (L a power of two; ties
 * to the lower one). */
static inline int moe_nearest_code(const float *g, int L, float v) {
    int lo = 0;
    for (int half = L / 2; half > 0; half >>= 1)
        if (lo + half < L && v > 0.5f * (g[lo + half - 1] + g[lo + half])) lo += half;
    return lo;
}

/* One group of n <= 128 weights on a grid of `levels` values (16, 8 or 4; quant_grid.c): the
 * f16 scale and the n code indices. imp[n] weights the squared error (NULL: all 1); search = 0
 * is the plain rule only. MOE_ERR_RANGE when the scale does not fit f16. */
int moe_quantize_grid_group(const float *v, const float *imp, int n, const int8_t *grid, int levels, int search,
                            uint16_t *scale, uint8_t *codes);

/*
 * The 3- and 2-bit formats store a group as its f16 scale and then, per 32 weights, the codes
 * c (0..2^bits-1, the weight s (c - 2^(bits-1))): 8 bytes of the low two bits, weight 8k + i
 * in bits 2k..2k+1 of byte i (i < 8, k < 4), and for 3 bits 4 more bytes, bit j of that
 * little-endian word the high bit of weight j. MOE_LOWBIT_BLOCK is the bytes per 32 weights.
 */
#define MOE_LOWBIT_BLOCK(bits) ((bits) * 4)

/* Nibble position of element j (0..group-1) inside a 4-bit group's data bytes:
 * sub-block k = j / 32 uses bytes [16k, 16k+16); element 32k+i (i < 16) is the
 * low nibble of byte 16k+i, element 32k+16+i the high nibble. */
static inline void moe_put_nibble(uint8_t *data, int j, unsigned v) {
    int k = j >> 5, i = j & 31;
    uint8_t *b = data + 16 * k + (i & 15);
    if (i < 16) *b = (uint8_t)((*b & 0xF0u) | v);
    else *b = (uint8_t)((*b & 0x0Fu) | (v << 4));
}

/* The codes of 32 weights of a 3- or 2-bit group into their MOE_LOWBIT_BLOCK(bits) bytes. */
static inline void moe_put_lowbit_block(uint8_t *blk, int bits, const uint8_t *codes) {
    memset(blk, 0, (size_t)MOE_LOWBIT_BLOCK(bits));
    for (int j = 0; j < 32; j++) {
        blk[j & 7] |= (uint8_t)((codes[j] & 3u) << (2 * (j >> 3)));
        if (bits == 3) blk[8 + (j >> 3)] |= (uint8_t)(((codes[j] >> 2) & 1u) << (j & 7));
    }
}
float moe_dot_lowbit_scalar(const uint8_t *row, const moe_xq *x, int64_t n, int bits, int group);

extern const moe_kernels moe_kernels_scalar;
#if defined(__x86_64__)
extern const moe_kernels moe_kernels_avx2;
/* The AVX2 table with the AVX-512 kernels in place (dot_avx512.c), filled in once at start-up. */
extern moe_kernels moe_kernels_avx512;
void moe_kernels_avx512_init(void);
#endif
#if defined(__aarch64__)
extern const moe_kernels moe_kernels_neon;
#endif

void moe_swiglu_scalar(float *gate, const float *up, int64_t n);
double moe_log_sum_exp_scalar(const float *x, int64_t n);
void moe_attend_group_scalar(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                             int hd, int G, float scale, float *scores, float *out);
void moe_attend_group_f16_scalar(const float *q, const uint16_t *k, const uint16_t *v, int64_t visible,
                                 int64_t stride, int hd, int G, float scale, float *scores, float *out);
void moe_to_f16_scalar(const float *src, uint16_t *dst, int64_t n);
float moe_dot_f16_scalar(const uint16_t *w, const float *x, int64_t n);
void moe_widen_bf16_scalar(const uint16_t *src, float *dst, int64_t n);
void moe_widen_f16_scalar(const uint16_t *src, float *dst, int64_t n);

/* Cache lines of the weight stream are requested this many bytes ahead of
 * the kernels' loads, so a matvec keeps enough reads in flight to run at
 * memory bandwidth rather than at memory latency. */
#define MOE_PREFETCH_BYTES 1536

#if defined(__x86_64__)
/* Brings the first `bytes` of a weight stream towards L1 before its kernel starts. */
static inline void moe_prefetch_rows(const uint8_t *p, int64_t bytes) {
    for (const uint8_t *end = p + bytes; p < end; p += 64) _mm_prefetch((const char *)p, _MM_HINT_T0);
}
#endif

/* Worker pool: run fn(ctx, chunk, nchunks) once for every chunk in
 * 0..<nchunks, spread over the caller and the workers (any order, any thread). */
#define MOE_MAX_POOL 64
typedef void (*moe_task_fn)(void *ctx, int chunk, int nchunks);
void moe_pool_run(moe_task_fn fn, void *ctx, int nchunks);

#endif
