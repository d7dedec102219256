/*
 * Error-compensating rounding (GPTQ, Frantar et al. 2022): the columns of W are rounded in
 * order, and each column's rounding error is spread over the columns not yet rounded through
 * the inverse Hessian of the product's inputs, so what is kept small is the output error
 * E||(W - Q) x||^2 over calibration inputs rather than the weight error.
 *
 * hinv is U, the upper Cholesky factor of H^-1 (H^-1 = U^T U, row-major, only k >= j of row j
 * is read). For column j and every row: q = the code nearest to w[j] on the row's grid,
 * e = (w[j] - q) / U[j][j], and w[k] -= e U[j][k] for every k > j. A group's scale is chosen
 * when its first column is reached, by the format's own rule on the group's current weights
 * (for int8 the row scale, from the row as given); the updates inside a group go column by
 * column, the rest of the row is updated once per group (the "lazy batch" of the paper).
 */
#include "internal.h"
#include <math.h>
#include <stdlib.h>

/* The formats this rounding serves: the scale-only grids (q4gN, nl4g32, q3gN, q2gN) and int8. */
static int gptq_supported(const moe_format_traits *f) {
    if (f->kernel == MOE_KERNEL_INT8 || f->kernel == MOE_KERNEL_LOWBIT || f->kernel == MOE_KERNEL_NL4) return 1;
    return f->kernel == MOE_KERNEL_INT4 && f->symmetric && f->levels == 16;
}

int moe_gptq_supported(int fmt) {
    const moe_format_traits *f = moe_format_info(fmt);
    return f && gptq_supported(f);
}

int moe_quantize_gptq(int fmt, float *w, int64_t rows, int64_t cols, const float *hinv,
                      void *dst, size_t dst_bytes, int64_t *bad_row) {
    if (bad_row) *bad_row = -1;
    const moe_format_traits *f = moe_format_info(fmt);
    if (!f || !gptq_supported(f)) return MOE_ERR_FORMAT;
    int64_t total = moe_matrix_bytes(fmt, rows, cols);
    if (total < 0) return (int)total;
    if ((uint64_t)total != (uint64_t)dst_bytes) return MOE_ERR_SIZE;
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i])) {
            if (bad_row) *bad_row = i / cols;
            return MOE_ERR_NONFINITE;
        }
    for (int64_t j = 0; j < cols; j++)
        if (!(hinv[j * cols + j] > 0) || !isfinite(hinv[j * cols + j])) return MOE_ERR_SHAPE;

    const int int8 = f->kernel == MOE_KERNEL_INT8;
    /* int8 has one scale a row; its columns still go in blocks of 128 for the lazy update */
    const int64_t group = int8 ? 128 : f->group;
    const int levels = int8 ? 0 : f->levels;
    const int8_t *grid = f->grid ? f->grid : (f->bits == 3 ? moe_q3_grid : (f->bits == 2 ? moe_q2_grid : moe_q4_grid));
    float g[16];
    for (int k = 0; k < levels; k++) g[k] = grid[k];
    const int64_t rb = moe_row_bytes(fmt, cols);
    const int64_t gb = int8 ? 0 : f->header + f->group * f->bits / 8;

    float *scales = malloc(sizeof(float) * (size_t)rows);
    float *err = malloc(sizeof(float) * (size_t)(rows * group));
    uint8_t *codes = malloc((size_t)(rows * group));
    if (!scales || !err || !codes) {
        free(scales); free(err); free(codes);
        return MOE_ERR_SIZE;
    }
    int status = MOE_OK;
    uint8_t *out = dst;
    if (int8)
        for (int64_t r = 0; r < rows; r++) {
            float amax = 0;
            for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
            scales[r] = amax / 127.0f;
            memcpy(out + r * rb, &scales[r], 4);
        }

    for (int64_t g0 = 0; g0 < cols && status == MOE_OK; g0 += group) {
        const int64_t n = cols - g0 < group ? cols - g0 : group;
        if (!int8)
            for (int64_t r = 0; r < rows; r++) {
                uint16_t sh;
                int e = moe_quantize_grid_group(w + r * cols + g0, NULL, (int)n, grid, levels, 1, &sh, codes + r * group);
                if (e != MOE_OK) {
                    if (bad_row) *bad_row = r;
                    status = e;
                    break;
                }
                scales[r] = moe_f16_to_f32(sh);
                memcpy(out + r * rb + (g0 / group) * gb, &sh, 2);
            }
        if (status != MOE_OK) break;
        /* the group's columns one by one, updating the group's later columns */
        for (int64_t j = g0; j < g0 + n; j++) {
            const float *u = hinv + j * cols;
            const float ujj = u[j];
            for (int64_t r = 0; r < rows; r++) {
                float *row = w + r * cols;
                const float s = scales[r], v = row[j];
                float deq;
                if (int8) {
                    long q = s > 0 ? lrintf(v / s) : 0;
                    q = q > 127 ? 127 : (q < -127 ? -127 : q);
                    codes[r * group + (j - g0)] = (uint8_t)(int8_t)q;
                    deq = s * (float)q;
                } else {
                    int q = moe_nearest_code(g, levels, s != 0 ? v / s : 0.0f);
                    codes[r * group + (j - g0)] = (uint8_t)q;
                    deq = s * g[q];
                }
                const float e = (v - deq) / ujj;
                err[r * group + (j - g0)] = e;
                row[j] = deq;
                for (int64_t k = j + 1; k < g0 + n; k++) row[k] -= e * u[k];
            }
        }
        /* the rest of every row, once for the whole group */
        for (int64_t r = 0; r < rows; r++) {
            float *row = w + r * cols;
            for (int64_t jj = 0; jj < n; jj++) {
                const float e = err[r * group + jj];
                if (e == 0) continue;
                const float *u = hinv + (g0 + jj) * cols;
                for (int64_t k = g0 + n; k < cols; k++) row[k] -= e * u[k];
            }
        }
        /* the group's codes into the stored rows */
        for (int64_t r = 0; r < rows; r++) {
            uint8_t *row = out + r * rb;
            const uint8_t *c = codes + r * group;
            if (int8) {
                memcpy(row + 4 + g0, c, (size_t)n);
            } else if (f->kernel == MOE_KERNEL_LOWBIT) {
                uint8_t *data = row + (g0 / group) * gb + 2;
                for (int64_t k = 0; k < n / 32; k++) moe_put_lowbit_block(data + k * MOE_LOWBIT_BLOCK(f->bits), f->bits, c + 32 * k);
            } else {
                uint8_t *data = row + (g0 / group) * gb + 2;
                memset(data, 0, (size_t)n / 2);
                for (int64_t k = 0; k < n; k++) moe_put_nibble(data, (int)k, c[k]);
            }
        }
    }
    free(scales);
    free(err);
    free(codes);
    return status;
}

void moe_gram_update(const float *x, int64_t count, int64_t width, float *c) {
    for (int64_t t = 0; t < count; t++) {
        const float *row = x + t * width;
        for (int64_t i = 0; i < width; i++) {
            const float xi = row[i];
            float *ci = c + i * width;
            for (int64_t j = i; j < width; j++) ci[j] += xi * row[j];
        }
    }
}

void moe_row_quadratic(const float *x, int64_t rows, int64_t cols, const float *h, double *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double total = 0;
        for (int64_t i = 0; i < cols; i++) {
            const float *hi = h + i * cols;
            float part[8] = {0};   /* eight sums, so the compiler can vectorise the dot product */
            int64_t j = 0;
            for (; j + 8 <= cols; j += 8)
                for (int k = 0; k < 8; k++) part[k] += hi[j + k] * xr[j + k];
            float s = 0;
            for (; j < cols; j++) s += hi[j] * xr[j];
            for (int k = 0; k < 8; k++) s += part[k];
            total += (double)xr[i] * (double)s;
        }
        out[r] = total;
    }
}
