/* f16 conversion, quantize and the reference decoder (the format table is formats.c). */
#include "internal.h"
#include <math.h>
#include <float.h>

const char *moe_strerror(int err) {
    switch (err) {
    case MOE_OK: return "ok";
    case MOE_ERR_FORMAT: return "unknown weight format";
    case MOE_ERR_SHAPE: return "invalid shape: sizes must be non-negative and rows of a grouped format a multiple of its group size";
    case MOE_ERR_NONFINITE: return "weights contain NaN or Inf";
    case MOE_ERR_RANGE: return "weight magnitude too large for the format's scale type";
    case MOE_ERR_SIZE: return "buffer size does not match the matrix shape";
    case MOE_ERR_PATH: return "kernel path not available on this CPU";
    default: return "unknown error";
    }
}

/* Bytes of one int4 or grid group: f16 scale (+ f16 min) then group/2 bytes of nibbles. */
static int64_t i4_group_bytes(int group, int asym) { return (asym ? 4 : 2) + group / 2; }

/* ---- f16 ---- */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float moe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0) {
        float f = (float)man * (1.0f / 16777216.0f); /* man * 2^-24, exact */
        return sign ? -f : f;
    }
    if (exp == 31) return bits_f32(sign | 0x7F800000u | (man << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t moe_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7FFFFFFFu;
    if (x >= 0x7F800000u) return sign | 0x7C00u | (x > 0x7F800000u ? 0x200u : 0);
    if (x >= 0x477FF000u) return sign | 0x7C00u;           /* >= 65520 rounds to Inf */
    if (x < 0x38800000u) {                                 /* below 2^-14: subnormal or zero */
        float a = bits_f32(x) * 16777216.0f;               /* exact scaling by 2^24 */
        return sign | (uint16_t)nearbyintf(a);             /* 1024 becomes the smallest normal */
    }
    uint32_t h = (((x >> 23) - 112u) << 10) | ((x & 0x7FFFFFu) >> 13);
    uint32_t rem = x & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return sign | (uint16_t)h;
}

/* Smallest f16 >= f (f finite). May return +Inf when f > 65504. */
static uint16_t f16_round_up(float f) {
    uint16_t h = moe_f32_to_f16(f);
    if (moe_f16_to_f32(h) >= f) return h;
    if (h == 0x8000u) return 0x0001u;        /* -0 below a positive value */
    return (h & 0x8000u) ? (uint16_t)(h - 1) : (uint16_t)(h + 1);
}

/* Largest f16 <= f. */
static uint16_t f16_round_down(float f) { return f16_round_up(-f) ^ 0x8000u; }

static int f16_is_finite(uint16_t h) { return (h & 0x7C00u) != 0x7C00u; }

/* ---- quantize ---- */

static int row_finite(const float *w, int64_t n) {
    for (int64_t i = 0; i < n; i++) if (!isfinite(w[i])) return 0;
    return 1;
}

static int quantize_bf16_row(const float *w, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = f32_bits(w[i]);
        uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;  /* round to nearest even */
        if ((r & 0x7F80u) == 0x7F80u) return MOE_ERR_RANGE;  /* rounded up to Inf */
        uint16_t h = (uint16_t)r;
        memcpy(out + i, &h, 2);
    }
    return MOE_OK;
}

static int quantize_f16_row(const float *w, int64_t n, uint16_t *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = moe_f32_to_f16(w[i]);
        if (!f16_is_finite(h)) return MOE_ERR_RANGE;  /* |w| rounds beyond 65504 */
        memcpy(out + i, &h, 2);
    }
    return MOE_OK;
}

static void quantize_int8_row(const float *w, int64_t n, uint8_t *out) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(w[i]));
    float scale = amax / 127.0f;
    memcpy(out, &scale, 4);
    int8_t *q = (int8_t *)(out + 4);
    for (int64_t i = 0; i < n; i++) {
        float v = scale > 0 ? w[i] / scale : 0.0f;
        long r = lrintf(v);
        q[i] = (int8_t)(r > 127 ? 127 : (r < -127 ? -127 : r));
    }
}


static int quantize_int4_row(const float *w, int64_t n, int group, int asym, uint8_t *out) {
    int64_t gb = i4_group_bytes(group, asym);
    for (int64_t g0 = 0; g0 < n; g0 += group, out += gb) {
        const float *v = w + g0;
        uint8_t *data = out + (asym ? 4 : 2);
        memset(data, 0, (size_t)group / 2);
        if (!asym) {
            float amax = 0;
            for (int j = 0; j < group; j++) amax = fmaxf(amax, fabsf(v[j]));
            /* Round the scale up so that |w| / scale <= 7 holds for the stored scale. */
            uint16_t sh = f16_round_up(amax / 7.0f);
            if (!f16_is_finite(sh)) return MOE_ERR_RANGE;
            memcpy(out, &sh, 2);
            float s = moe_f16_to_f32(sh);
            for (int j = 0; j < group; j++) {
                long q = s > 0 ? lrintf(v[j] / s) : 0;
                q = q > 7 ? 7 : (q < -7 ? -7 : q);
                moe_put_nibble(data, j, (unsigned)(q + 8));
            }
        } else {
            float lo = v[0], hi = v[0];
            for (int j = 1; j < group; j++) { lo = fminf(lo, v[j]); hi = fmaxf(hi, v[j]); }
            /* min rounded down and scale rounded up: [min, min + 15 scale] covers the group. */
            uint16_t mh = f16_round_down(lo);
            if (!f16_is_finite(mh)) return MOE_ERR_RANGE;
            float m = moe_f16_to_f32(mh);
            uint16_t sh = f16_round_up((hi - m) / 15.0f);
            if (!f16_is_finite(sh)) return MOE_ERR_RANGE;
            float s = moe_f16_to_f32(sh);
            memcpy(out, &sh, 2);
            memcpy(out + 2, &mh, 2);
            for (int j = 0; j < group; j++) {
                long q = s > 0 ? lrintf((v[j] - m) / s) : 0;
                q = q > 15 ? 15 : (q < 0 ? 0 : q);
                moe_put_nibble(data, j, (unsigned)q);
            }
        }
    }
    return MOE_OK;
}

/* A row of a grid format (16-level int4, nl4): per group the f16 scale and the nibbles of
 * the code indices. nl4 always searches for the scale (unweighted); 16-level int4 searches
 * only with importance (without, it is the plain Q4_0 rule). */
static int quantize_grid_row(const moe_format_traits *f, const float *w, const float *imp, int64_t n, uint8_t *out) {
    const int group = f->group;
    /* Importance weights the 16-level int4 scales only: for the grid format, whose unweighted
     * search is already its rule, the importance-weighted one gave 24 of the built-in model's
     * 96 expert gate/up products a larger output error on held-out tokens routed to them
     * (docs/quantization.md), so it keeps the unweighted search. */
    if (f->grid) imp = NULL;
    const int8_t *grid = f->grid ? f->grid : moe_q4_grid;
    uint8_t codes[128];
    for (int64_t g0 = 0; g0 < n; g0 += group, out += 2 + group / 2) {
        /* a group whose columns have no importance (no calibration token reached them) takes
         * the unweighted rule */
        double total = 0;
        for (int j = 0; imp && j < group; j++) total += imp[g0 + j];
        const float *gi = total > 0 ? imp + g0 : NULL;
        uint16_t sh;
        int err = moe_quantize_grid_group(w + g0, gi, group, grid, 16, f->grid != NULL || gi != NULL, &sh, codes);
        if (err != MOE_OK) return err;
        memcpy(out, &sh, 2);
        memset(out + 2, 0, (size_t)group / 2);
        for (int j = 0; j < group; j++) moe_put_nibble(out + 2, j, codes[j]);
    }
    return MOE_OK;
}


/* Code of weight j (0..31) of a 3- or 2-bit block. */
static inline int get_lowbit(const uint8_t *blk, int bits, int j) {
    int c = (blk[j & 7] >> (2 * (j >> 3))) & 3;
    if (bits == 3) c |= ((blk[8 + (j >> 3)] >> (j & 7)) & 1) << 2;
    return c;
}

/* A 3- or 2-bit row: per group the scale of the unweighted search on the uniform grid, then the
 * packed codes. Importance is not used: against this search the importance-weighted one lowered
 * the built-in model's expert output error on held-out routed tokens by 1.5% on average, and
 * raised it for a quarter of the experts (docs/quantization.md). */
static int quantize_lowbit_row(const moe_format_traits *f, const float *w, int64_t n, uint8_t *out) {
    const int group = f->group, bits = f->bits;
    const int8_t *grid = bits == 3 ? moe_q3_grid : moe_q2_grid;
    uint8_t codes[128];
    for (int64_t g0 = 0; g0 < n; g0 += group, out += 2 + group * bits / 8) {
        uint16_t sh;
        int err = moe_quantize_grid_group(w + g0, NULL, group, grid, f->levels, 1, &sh, codes);
        if (err != MOE_OK) return err;
        memcpy(out, &sh, 2);
        for (int k = 0; k < group / 32; k++) moe_put_lowbit_block(out + 2 + k * MOE_LOWBIT_BLOCK(bits), bits, codes + 32 * k);
    }
    return MOE_OK;
}

static int quantize_row(const moe_format_traits *f, const float *src, const float *imp, int64_t cols, uint8_t *out) {
    switch (f->kernel) {
    case MOE_KERNEL_F32: memcpy(out, src, (size_t)cols * 4); return MOE_OK;
    case MOE_KERNEL_BF16: return quantize_bf16_row(src, cols, (uint16_t *)out);
    case MOE_KERNEL_F16: return quantize_f16_row(src, cols, (uint16_t *)out);
    case MOE_KERNEL_INT8: quantize_int8_row(src, cols, out); return MOE_OK;
    case MOE_KERNEL_LOWBIT: return quantize_lowbit_row(f, src, cols, out);
    default:
        if (f->grid || (f->symmetric && f->levels == 16)) return quantize_grid_row(f, src, imp, cols, out);
        return quantize_int4_row(src, cols, f->group, !f->symmetric, out);
    }
}

int moe_quantize_weighted(int fmt, const float *w, int64_t rows, int64_t cols, const float *importance,
                          void *dst, size_t dst_bytes, int64_t *bad_row) {
    if (bad_row) *bad_row = -1;
    int64_t total = moe_matrix_bytes(fmt, rows, cols);
    if (total < 0) return (int)total;
    if ((uint64_t)total != (uint64_t)dst_bytes) return MOE_ERR_SIZE;
    const moe_format_traits *f = moe_format_info(fmt);
    int64_t rb = moe_row_bytes(fmt, cols);
    for (int64_t r = 0; r < rows; r++) {
        const float *src = w + r * cols;
        int err = row_finite(src, cols) ? quantize_row(f, src, importance, cols, (uint8_t *)dst + r * rb)
                                        : MOE_ERR_NONFINITE;
        if (err != MOE_OK) {
            if (bad_row) *bad_row = r;
            return err;
        }
    }
    return MOE_OK;
}

int moe_quantize(int fmt, const float *w, int64_t rows, int64_t cols,
                 void *dst, size_t dst_bytes, int64_t *bad_row) {
    return moe_quantize_weighted(fmt, w, rows, cols, NULL, dst, dst_bytes, bad_row);
}

/* ---- reference decoder ---- */

static void dequantize_row(int fmt, const uint8_t *row, int64_t cols, float *dst) {
    const moe_format_traits *f = moe_format_info(fmt);
    if (f->kernel == MOE_KERNEL_F32) { memcpy(dst, row, (size_t)cols * 4); return; }
    if (f->kernel == MOE_KERNEL_BF16) {
        for (int64_t i = 0; i < cols; i++) dst[i] = bits_f32((uint32_t)moe_load_u16(row + 2 * i) << 16);
        return;
    }
    if (f->kernel == MOE_KERNEL_F16) {
        for (int64_t i = 0; i < cols; i++) dst[i] = moe_f16_to_f32(moe_load_u16(row + 2 * i));
        return;
    }
    if (f->kernel == MOE_KERNEL_INT8) {
        float s = moe_load_f32(row);
        const int8_t *q = (const int8_t *)(row + 4);
        for (int64_t i = 0; i < cols; i++) dst[i] = s * (float)q[i];
        return;
    }
    if (f->kernel == MOE_KERNEL_LOWBIT) {
        const int bits = f->bits, group = f->group, mid = 1 << (bits - 1);
        for (int64_t g0 = 0; g0 < cols; g0 += group, row += 2 + group * bits / 8) {
            float s = moe_f16_to_f32(moe_load_u16(row));
            for (int j = 0; j < group; j++)
                dst[g0 + j] = s * (float)(get_lowbit(row + 2 + (j >> 5) * MOE_LOWBIT_BLOCK(bits), bits, j & 31) - mid);
        }
        return;
    }
    int group = f->group, asym = !f->symmetric;
    int64_t gb = i4_group_bytes(group, asym);
    for (int64_t g0 = 0; g0 < cols; g0 += group, row += gb) {
        float s = moe_f16_to_f32(moe_load_u16(row));
        float m = asym ? moe_f16_to_f32(moe_load_u16(row + 2)) : 0.0f;
        const uint8_t *data = row + (asym ? 4 : 2);
        for (int j = 0; j < group; j++) {
            int k = j >> 5, i = j & 31;
            uint8_t b = data[16 * k + (i & 15)];
            int q = i < 16 ? (b & 0xF) : (b >> 4);
            if (f->grid) dst[g0 + j] = s * (float)f->grid[q];
            else dst[g0 + j] = asym ? (float)q * s + m : (float)(q - 8) * s;
        }
    }
}

int moe_dequantize(int fmt, const void *src, int64_t rows, int64_t cols, float *dst) {
    int64_t rb = moe_row_bytes(fmt, cols);
    if (rb < 0) return (int)rb;
    if (rows < 0) return MOE_ERR_SHAPE;
    for (int64_t r = 0; r < rows; r++)
        dequantize_row(fmt, (const uint8_t *)src + r * rb, cols, dst + r * cols);
    return MOE_OK;
}

int moe_matmul_reference(int fmt, const void *w, int64_t rows, int64_t cols,
                         const float *x, int64_t T, float *y) {
    int64_t rb = moe_row_bytes(fmt, cols);
    if (rb < 0) return (int)rb;
    if (rows < 0 || T < 0) return MOE_ERR_SHAPE;
    float buf[256];
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)w + r * rb;
        for (int64_t t = 0; t < T; t++) {
            double acc = 0;
            /* Decode in chunks so no allocation is needed; int4 chunks stay group-aligned. */
            for (int64_t c0 = 0; c0 < cols; c0 += 256) {
                int64_t n = cols - c0 < 256 ? cols - c0 : 256;
                /* 256 is a multiple of every int4 group size, so chunks start on a group. */
                int64_t off = moe_row_bytes(fmt, c0);
                if (moe_format_info(fmt)->kernel == MOE_KERNEL_INT8) {
                    float s = moe_load_f32(row);
                    const int8_t *q = (const int8_t *)(row + 4 + c0);
                    for (int64_t i = 0; i < n; i++) buf[i] = s * (float)q[i];
                } else {
                    dequantize_row(fmt, row + off, n, buf);
                }
                for (int64_t i = 0; i < n; i++) acc += (double)buf[i] * (double)x[t * cols + c0 + i];
            }
            y[t * rows + r] = (float)acc;
        }
    }
    return MOE_OK;
}
