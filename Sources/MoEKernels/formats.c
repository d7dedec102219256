/* The table of weight formats, and the sizes every caller derives from it. */
#include "internal.h"

/* The 16 values of the non-uniform 4-bit grid (llama.cpp's IQ4_NL grid): denser
 * near zero, where most weights of a group lie. */
const int8_t moe_nl4_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Indexed by format id (MOE_FMT_*). Adding a format: a row here, its id in
 * MoEKernels.h, its name in WeightFormat (MoEFormat), and kernels for its
 * kernel family if it is a new one. */
static const moe_format_traits table[MOE_FMT_COUNT] = {
    /*  name         bits group header sym levels grid         kernel */
    {"f32",          32,   0,    0,    1,    0,  NULL,        MOE_KERNEL_F32},
    {"bf16",         16,   0,    0,    1,    0,  NULL,        MOE_KERNEL_BF16},
    {"int8",          8,   0,    4,    1,  255,  NULL,        MOE_KERNEL_INT8},
    {"int4g32",       4,  32,    2,    1,   15,  NULL,        MOE_KERNEL_INT4},
    {"int4g64",       4,  64,    2,    1,   15,  NULL,        MOE_KERNEL_INT4},
    {"int4g128",      4, 128,    2,    1,   15,  NULL,        MOE_KERNEL_INT4},
    {"int4g32a",      4,  32,    4,    0,   16,  NULL,        MOE_KERNEL_INT4},
    {"int4g64a",      4,  64,    4,    0,   16,  NULL,        MOE_KERNEL_INT4},
    {"int4g128a",     4, 128,    4,    0,   16,  NULL,        MOE_KERNEL_INT4},
    {"f16",          16,   0,    0,    1,    0,  NULL,        MOE_KERNEL_F16},
    {"q4g32",         4,  32,    2,    1,   16,  NULL,        MOE_KERNEL_INT4},
    {"q4g64",         4,  64,    2,    1,   16,  NULL,        MOE_KERNEL_INT4},
    {"q4g128",        4, 128,    2,    1,   16,  NULL,        MOE_KERNEL_INT4},
    {"nl4g32",        4,  32,    2,    1,   16,  moe_nl4_grid, MOE_KERNEL_NL4},
    {"q3g32",         3,  32,    2,    1,    8,  NULL,        MOE_KERNEL_LOWBIT},
    {"q3g64",         3,  64,    2,    1,    8,  NULL,        MOE_KERNEL_LOWBIT},
    {"q2g32",         2,  32,    2,    1,    4,  NULL,        MOE_KERNEL_LOWBIT},
    {"q2g64",         2,  64,    2,    1,    4,  NULL,        MOE_KERNEL_LOWBIT},
};

const moe_format_traits *moe_format_info(int fmt) {
    return (fmt >= 0 && fmt < MOE_FMT_COUNT) ? &table[fmt] : NULL;
}

const char *moe_format_name(int fmt) {
    const moe_format_traits *f = moe_format_info(fmt);
    return f ? f->name : "unknown";
}

int moe_format_group(int fmt) {
    const moe_format_traits *f = moe_format_info(fmt);
    return f ? f->group : 0;
}

int moe_format_is_asymmetric(int fmt) {
    const moe_format_traits *f = moe_format_info(fmt);
    return f ? !f->symmetric : 0;
}

int64_t moe_row_bytes(int fmt, int64_t cols) {
    const moe_format_traits *f = moe_format_info(fmt);
    if (!f) return MOE_ERR_FORMAT;
    if (cols < 0 || cols > (INT64_MAX / 8)) return MOE_ERR_SHAPE;
    if (f->group == 0) return f->header + cols * f->bits / 8;
    if (cols % f->group != 0) return MOE_ERR_SHAPE;
    return (cols / f->group) * (f->header + f->group * f->bits / 8);
}

int64_t moe_matrix_bytes(int fmt, int64_t rows, int64_t cols) {
    int64_t rb = moe_row_bytes(fmt, cols);
    if (rb < 0) return rb;
    if (rows < 0) return MOE_ERR_SHAPE;
    int64_t total;
    if (__builtin_mul_overflow(rb, rows, &total)) return MOE_ERR_SIZE;
    return total;
}
