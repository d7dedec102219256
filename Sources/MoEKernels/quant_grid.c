/*
 * Groups quantized on a grid of 16, 8 or 4 code values (ascending, the first the
 * one of largest magnitude): the 16-level int4 formats (grid -8..7), the
 * non-uniform ones (moe_nl4_grid), and the 3- and 2-bit ones (-4..3, -2..1). A group's weights v decode as d * g[code].
 *
 * The plain rule maps the weight of largest magnitude onto g[0] (ggml's Q4_0
 * rule for the uniform grid). The search tries scales around it: for each
 * candidate inverse scale it takes the nearest codes, refits the scale that
 * minimises sum_j imp_j (v_j - d g[q_j])^2 for those codes (least squares),
 * rounds it to f16, takes the nearest codes again and measures that error (with
 * importance, the scales refitted without it are candidates too); the plain
 * rule is one of the candidates, so the search is never worse than it in the
 * weighted error with the stored scale.
 */
#include "internal.h"
#include <math.h>

/* Candidates: the extreme maps to g[0] * (1 + SEARCH_STEP * t) for t = -SEARCH_TRIES..SEARCH_TRIES. */
#define SEARCH_TRIES 8
#define SEARCH_STEP 0.02f

const int8_t moe_q4_grid[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};
const int8_t moe_q3_grid[8] = {-4, -3, -2, -1, 0, 1, 2, 3};
const int8_t moe_q2_grid[4] = {-2, -1, 0, 1};


/* Weighted squared error of the group at scale d with the nearest codes (written to codes). */
static double error_at(const float *v, const float *imp, int n, const float *g, int L, float d, uint8_t *codes) {
    const float id = d != 0 ? 1.0f / d : 0.0f;
    double err = 0;
    for (int j = 0; j < n; j++) {
        int q = moe_nearest_code(g, L, v[j] * id);
        codes[j] = (uint8_t)q;
        double e = (double)v[j] - (double)d * g[q];
        err += (imp ? imp[j] : 1.0) * e * e;
    }
    return err;
}

/* f16 bits of d, or 0x7C00 (Inf) when it does not fit. */
static uint16_t to_f16_checked(float d) {
    uint16_t h = moe_f32_to_f16(d);
    return (h & 0x7C00u) == 0x7C00u ? 0x7C00u : h;
}

int moe_quantize_grid_group(const float *v, const float *imp, int n, const int8_t *grid, int levels, int search,
                            uint16_t *scale, uint8_t *codes) {
    float g[16];
    const int L = levels;
    for (int k = 0; k < L; k++) g[k] = grid[k];
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(v[j]) > amax) { amax = fabsf(v[j]); max = v[j]; }
    uint16_t best = to_f16_checked(max / g[0]);
    if (best == 0x7C00u) return MOE_ERR_RANGE;
    double best_err = error_at(v, imp, n, g, L, moe_f16_to_f32(best), codes);
    if (search && amax > 0) {
        uint8_t q[128];   /* n <= 128 */
        /* with importance, the scales refitted without it are candidates too */
        for (int k = 0; k < (imp ? 2 : 1) * (2 * SEARCH_TRIES + 1); k++) {
            const int t = k % (2 * SEARCH_TRIES + 1) - SEARCH_TRIES;
            const float *fit = k < 2 * SEARCH_TRIES + 1 ? imp : NULL;
            const float d0 = max / (g[0] * (1.0f + SEARCH_STEP * (float)t));
            error_at(v, imp, n, g, L, d0, q);
            double sqx = 0, sqq = 0;
            for (int j = 0; j < n; j++) {
                const double w = fit ? fit[j] : 1.0;
                sqx += w * g[q[j]] * v[j];
                sqq += w * g[q[j]] * g[q[j]];
            }
            if (!(sqq > 0)) continue;
            uint16_t h = to_f16_checked((float)(sqx / sqq));
            if (h == 0x7C00u) continue;
            double err = error_at(v, imp, n, g, L, moe_f16_to_f32(h), q);
            if (err < best_err) {
                best_err = err;
                best = h;
            }
        }
        error_at(v, imp, n, g, L, moe_f16_to_f32(best), codes);
    }
    *scale = best;
    return MOE_OK;
}
