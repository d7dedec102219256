/* Kernel path selection, activation quantization and the matvec/matmul drivers. */
#include "internal.h"
#include <math.h>
#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* ---- paths ---- */

int moe_path_available(int path) {
    switch (path) {
    case MOE_PATH_SCALAR: return 1;
#if defined(__x86_64__)
    case MOE_PATH_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    case MOE_PATH_AVX512:
        __builtin_cpu_init();
        return moe_path_available(MOE_PATH_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__aarch64__)
    case MOE_PATH_NEON: return 1;
#endif
    default: return 0;
    }
}

const char *moe_path_name(int path) {
    switch (path) {
    case MOE_PATH_SCALAR: return "scalar";
    case MOE_PATH_AVX2: return "avx2";
    case MOE_PATH_NEON: return "neon";
    case MOE_PATH_AVX512: return "avx512";
    default: return "unknown";
    }
}

static _Atomic int default_path = -1;
static pthread_once_t path_once = PTHREAD_ONCE_INIT;
static void choose_path(void);

static const moe_kernels *kernels_for(int path) {
    switch (path) {
#if defined(__x86_64__)
    case MOE_PATH_AVX2: return &moe_kernels_avx2;
    case MOE_PATH_AVX512:
        pthread_once(&path_once, choose_path);   /* fills in moe_kernels_avx512 */
        return &moe_kernels_avx512;
#endif
#if defined(__aarch64__)
    case MOE_PATH_NEON: return &moe_kernels_neon;
#endif
    default: return &moe_kernels_scalar;
    }
}

/* The best path this CPU has, unless MOEPACK_KERNELS names another available one
 * (scalar, avx2, avx512, neon): on an AVX-512 machine MOEPACK_KERNELS=avx2 runs and
 * tests the AVX2 path. */
static void choose_path(void) {
#if defined(__x86_64__)
    moe_kernels_avx512_init();
#endif
    int path = MOE_PATH_SCALAR;
    if (moe_path_available(MOE_PATH_AVX512)) path = MOE_PATH_AVX512;
    else if (moe_path_available(MOE_PATH_AVX2)) path = MOE_PATH_AVX2;
    else if (moe_path_available(MOE_PATH_NEON)) path = MOE_PATH_NEON;
    const char *env = getenv("MOEPACK_KERNELS");
    const int named[] = {MOE_PATH_SCALAR, MOE_PATH_AVX2, MOE_PATH_AVX512, MOE_PATH_NEON};
    for (int i = 0; env && i < 4; i++)
        if (strcmp(env, moe_path_name(named[i])) == 0 && moe_path_available(named[i])) path = named[i];
    atomic_store(&default_path, path);
}

int moe_default_path(void) {
    pthread_once(&path_once, choose_path);
    return atomic_load(&default_path);
}

int moe_set_default_path(int path) {
    pthread_once(&path_once, choose_path);
    if (!moe_path_available(path)) return MOE_ERR_PATH;
    atomic_store(&default_path, path);
    return MOE_OK;
}

/* ---- activation quantization ---- */

/* Largest |x| of a block, and whether every value is finite. */
static int block_amax(const float *x, int64_t len, float *amax) {
    int finite = 1;
    float m = 0;
    for (int64_t i = 0; i < len; i++) {
        finite &= isfinite(x[i]) ? 1 : 0;
        m = fmaxf(m, fabsf(x[i]));
    }
    *amax = m;
    return finite;
}

/*
 * Block b of x (32 values) becomes q = round(x / d) with d = max|x| / 127, and
 * s = d * sum(q). A block holding NaN/Inf gets d = s = NaN so the output is NaN
 * rather than silently finite. The last block is zero-padded.
 */
static void quantize_x(const float *x, int64_t n, int8_t *q, float *d, float *s) {
    for (int64_t c0 = 0, b = 0; c0 < n; c0 += MOE_QBLOCK, b++) {
        int64_t len = n - c0 < MOE_QBLOCK ? n - c0 : MOE_QBLOCK;
        float amax;
        int finite = block_amax(x + c0, len, &amax);
        int8_t *qb = q + c0;
        memset(qb, 0, MOE_QBLOCK);
        if (!finite) { d[b] = NAN; s[b] = NAN; continue; }
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t isum = 0;
        for (int64_t i = 0; i < len; i++) {
            long v = lrintf(x[c0 + i] * inv);
            v = v > 127 ? 127 : (v < -127 ? -127 : v);
            qb[i] = (int8_t)v;
            isum += (int32_t)v;
        }
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)isum;
    }
}

/*
 * The int16 form for int8 weights: blocks of MOE_QBLOCK16 (1024), q16 = round(x / d16)
 * with d16 = max|x| / 32767. NaN/Inf gives d16 = NaN as above. The last block is
 * zero-padded.
 */
static void quantize_x16(const float *x, int64_t n, int16_t *q, float *d) {
    for (int64_t c0 = 0, b = 0; c0 < n; c0 += MOE_QBLOCK16, b++) {
        int64_t len = n - c0 < MOE_QBLOCK16 ? n - c0 : MOE_QBLOCK16;
        float amax;
        int finite = block_amax(x + c0, len, &amax);
        int16_t *qb = q + c0;
        memset(qb, 0, MOE_QBLOCK16 * sizeof(int16_t));
        if (!finite) { d[b] = NAN; continue; }
        float inv = amax > 0 ? 32767.0f / amax : 0.0f;
        for (int64_t i = 0; i < len; i++) {
            float v = nearbyintf(x[c0 + i] * inv);
            qb[i] = (int16_t)(v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v));
        }
        d[b] = amax / 32767.0f;
    }
}

/* Per-thread scratch for quantized activations, grown on demand and kept. */
static _Thread_local void *scratch;
static _Thread_local size_t scratch_cap;

static void *scratch_get(size_t bytes) {
    if (bytes <= scratch_cap) return scratch;
    free(scratch);
    scratch = NULL;
    scratch_cap = 0;
    size_t cap = bytes + bytes / 2;
    void *p = NULL;
    if (posix_memalign(&p, 64, cap) != 0) return NULL;
    scratch = p;
    scratch_cap = cap;
    return p;
}

/* ---- drivers ---- */

typedef struct {
    const moe_kernels *k;
    int fmt, kernel, bits, group, asym, tiled;   /* kernel: the format's MOE_KERNEL_* */
    const uint8_t *w;
    int64_t rb, rows, cols, T;
    const float *x;
    const moe_xq *xq;   /* T quantized activation rows (integer formats) */
    float *y;
    /* Activation rows are quantized on first use, by whichever threads reach the product
     * first (see quantize_rows); `source` is the product that owns the quantized rows (itself,
     * or an earlier product of the same input); `kind` is its activation_kind. */
    int kind, source;
    _Atomic int64_t claimed, quantized;
} job;

static void job_rows(void *ctx, int part, int nparts) {
    const job *j = ctx;
    int64_t r0 = j->rows * part / nparts, r1 = j->rows * (part + 1) / nparts;
    if (j->tiled && j->kernel == MOE_KERNEL_INT8) {
        j->k->tile_i8(j->w + r0 * j->rb, j->rb, r1 - r0, j->xq, j->T, j->cols, j->y + r0, j->rows);
        return;
    }
    if (j->tiled) {
        j->k->tile_q(j->fmt, j->w + r0 * j->rb, j->rb, r1 - r0, j->xq, j->T, j->cols, j->y + r0, j->rows);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = j->w + r * j->rb;
        for (int64_t t = 0; t < j->T; t++) {
            const float *x = j->x + t * j->cols;
            float v;
            switch (j->kernel) {
            case MOE_KERNEL_F32: v = j->k->dot_f32((const float *)row, x, j->cols); break;
            case MOE_KERNEL_BF16: v = j->k->dot_bf16((const uint16_t *)row, x, j->cols); break;
            case MOE_KERNEL_F16: v = j->k->dot_f16((const uint16_t *)row, x, j->cols); break;
            case MOE_KERNEL_INT8: v = j->k->dot_i8(row, &j->xq[t], j->cols); break;
            case MOE_KERNEL_NL4: v = j->k->dot_nl4(row, &j->xq[t], j->cols); break;
            case MOE_KERNEL_LOWBIT: v = j->k->dot_lowbit(row, &j->xq[t], j->cols, j->bits, j->group); break;
            default: v = j->k->dot_i4(row, &j->xq[t], j->cols, j->group, j->asym); break;
            }
            j->y[t * j->rows + r] = v;
        }
    }
}

/* Multiply-adds of a product (at least one per row and token), for splitting work. */
static int64_t product_work(int64_t rows, int64_t cols, int64_t T) { return rows * (cols > 0 ? cols : 1) * T; }

/* Hands out 64-byte aligned pieces of one scratch buffer. */
typedef struct { uint8_t *base; size_t used; } bump;
static void *bump_take(bump *b, size_t bytes) {
    void *p = b->base ? b->base + b->used : NULL;
    b->used += (bytes + 63) & ~(size_t)63;
    return p;
}

/*
 * Lays out the T quantized activation rows of a job in the scratch (the codes are written
 * later, by quantize_row). Called twice: with b->base NULL to size the scratch, then to
 * place the rows.
 */
static moe_xq *prepare_x(bump *b, const job *j) {
    const int64_t T = j->T, cols = j->cols;
    moe_xq *xs = bump_take(b, (size_t)T * sizeof(moe_xq));
    for (int64_t t = 0; t < T; t++) {
        moe_xq xq = {0};
        if (j->kernel == MOE_KERNEL_INT8) {
            int64_t nb = (cols + MOE_QBLOCK16 - 1) / MOE_QBLOCK16;
            xq.q16 = bump_take(b, (size_t)nb * MOE_QBLOCK16 * sizeof(int16_t));
            xq.d16 = bump_take(b, (size_t)nb * sizeof(float));
        } else {
            int64_t nb = (cols + MOE_QBLOCK - 1) / MOE_QBLOCK;
            xq.q = bump_take(b, (size_t)nb * MOE_QBLOCK);
            xq.d = bump_take(b, (size_t)nb * sizeof(float));
            xq.s = bump_take(b, (size_t)nb * sizeof(float));
            if (j->kind == 2) {
                int64_t n64 = cols / 64, n256 = (n64 + 3) / 4;
                xq.qp = bump_take(b, (size_t)n64 * 64);
                xq.dv = bump_take(b, (size_t)n256 * 8 * sizeof(float));
                xq.m8 = bump_take(b, (size_t)n256 * 8 * sizeof(float));
            }
        }
        if (b->base) xs[t] = xq;
    }
    return xs;
}

/* Quantizes activation row t of a job into the place prepare_x gave it. */
static void quantize_row(const job *j, int64_t t) {
    const int64_t cols = j->cols;
    const float *x = j->x + t * cols;
    const moe_xq *xq = &j->xq[t];
    if (j->kernel == MOE_KERNEL_INT8) {
        if (j->k->quant_i16 && cols % 16 == 0) j->k->quant_i16(x, cols, (int16_t *)xq->q16, (float *)xq->d16);
        else quantize_x16(x, cols, (int16_t *)xq->q16, (float *)xq->d16);
        return;
    }
    if (j->k->quant_i8 && cols % MOE_QBLOCK == 0) j->k->quant_i8(x, cols, (int8_t *)xq->q, (float *)xq->d, (float *)xq->s);
    else quantize_x(x, cols, (int8_t *)xq->q, (float *)xq->d, (float *)xq->s);
    if (j->kind == 2) j->k->pair_i4(xq, cols, (int8_t *)xq->qp, (float *)xq->dv, (float *)xq->m8);
}

/*
 * Makes sure a job's activation rows are quantized: every thread that needs them claims
 * rows until none are left, then waits for the rows others claimed. So the rows of a
 * product are quantized once, in parallel, by the threads that reach it first, while the
 * other threads go on with other products; no thread sits idle for a serial quantization
 * pass before the products start.
 */
static void quantize_rows(job *s) {
    if (atomic_load_explicit(&s->quantized, memory_order_acquire) >= s->T) return;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&s->claimed, 1, memory_order_relaxed);
        if (t >= s->T) break;
        quantize_row(s, t);
        atomic_fetch_add_explicit(&s->quantized, 1, memory_order_release);
    }
    while (atomic_load_explicit(&s->quantized, memory_order_acquire) < s->T) MOE_CPU_RELAX();
}

/* One product's job plus the chunk table of a moe_matmul_many call. */
typedef struct {
    job *jobs;
    int *item;          /* chunk -> product */
    int *part, *parts;  /* chunk -> row part of that product */
} many_job;

static void many_rows(void *ctx, int chunk, int nchunks) {
    (void)nchunks;
    const many_job *m = ctx;
    job *j = &m->jobs[m->item[chunk]];
    if (j->kind) quantize_rows(&m->jobs[j->source]);
    job_rows(j, m->part[chunk], m->parts[chunk]);
}

static int check_product(const moe_product *p, int path, int64_t *rb) {
    *rb = moe_row_bytes(p->fmt, p->cols);
    if (*rb < 0) return (int)*rb;
    if (p->rows < 0 || p->T < 0) return MOE_ERR_SHAPE;
    if (!moe_path_available(path)) return MOE_ERR_PATH;
    if (p->T > (INT64_MAX / 64) / (p->cols + 64)) return MOE_ERR_SIZE;
    return MOE_OK;
}

/* How a product needs its activations quantized: 0 not at all (f32, bf16, f16), 1 int16 blocks
 * (int8 weights), 2 int8 blocks paired for the grouped formats' tiles, 3 int8 blocks (rows of
 * those formats on a path without tiles, or of a width that is not a multiple of 64). */
static int activation_kind(const moe_kernels *k, const moe_product *p) {
    const moe_format_traits *f = moe_format_info(p->fmt);
    switch (f->kernel) {
    case MOE_KERNEL_F32: case MOE_KERNEL_BF16: case MOE_KERNEL_F16: return 0;
    case MOE_KERNEL_INT8: return 1;
    default: return k->tile_q != NULL && moe_tile_variant(p->fmt) >= 0 && p->cols % 64 == 0 ? 2 : 3;
    }
}

/*
 * Runs n products as one pool job: every product's activations are quantized
 * first, then the rows of all products are cut into chunks (in proportion to
 * their work) that the threads take from one counter. Small products that
 * would each be a single-threaded call share the threads this way, and the
 * pool is woken once instead of n times. Products that read the same input
 * with the same activation kind quantize it once.
 */
static int matmul_many_on(int path, int threaded, const moe_product *items, int n) {
    if (n < 0) return MOE_ERR_SIZE;
    const moe_kernels *k = kernels_for(path);
    int64_t total_work = 0;
    bump b = {NULL, 0};
    job *jobs = bump_take(&b, (size_t)n * sizeof(job));
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const moe_product *p = &items[i];
            int64_t rb;
            int err = check_product(p, path, &rb);
            if (err) return err;
            int kind = activation_kind(k, p);
            const moe_format_traits *f = moe_format_info(p->fmt);
            job j = {k, p->fmt, f->kernel, f->bits, f->group, !f->symmetric, 0,
                     p->w, rb, p->rows, p->cols, p->T, p->x, NULL, p->y, kind, i, 0, 0};
            if (f->kernel == MOE_KERNEL_INT8) j.tiled = k->tile_i8 != NULL && p->cols % 16 == 0;
            else j.tiled = kind == 2;
            /* products of the same input (q, k and v; gate and up) share its quantized rows */
            int shared = -1;
            for (int e = 0; kind && e < i && shared < 0; e++)
                if (items[e].x == p->x && items[e].T == p->T && items[e].cols == p->cols && activation_kind(k, &items[e]) == kind)
                    shared = e;
            if (shared >= 0) {
                j.xq = pass == 1 ? jobs[shared].xq : NULL;
                j.source = shared;
            } else if (kind) j.xq = prepare_x(&b, &j);
            if (pass == 1) {
                jobs[i] = j;
                atomic_init(&jobs[i].claimed, 0);
                atomic_init(&jobs[i].quantized, 0);
            }
            else total_work += product_work(p->rows, p->cols, p->T);
        }
        if (pass == 0) {
            size_t need = b.used + 3 * sizeof(int) * (size_t)(n + 8 * MOE_MAX_POOL) + 256;
            b.base = scratch_get(need);
            if (!b.base) return MOE_ERR_SIZE;
            b.used = 0;
            jobs = bump_take(&b, (size_t)n * sizeof(job));
        }
    }
    int want = threaded && total_work >= (1 << 15) ? 8 * moe_get_threads() : 1;
    int cap = n + want;
    int *item = bump_take(&b, (size_t)cap * sizeof(int));
    int *part = bump_take(&b, (size_t)cap * sizeof(int));
    int *parts = bump_take(&b, (size_t)cap * sizeof(int));
    int nchunks = 0;
    for (int i = 0; i < n; i++) {
        if (jobs[i].rows == 0 || jobs[i].T == 0) continue;
        /* ceil(work * want / total) per product: the counts sum to at most want + n = cap */
        int64_t work = product_work(jobs[i].rows, jobs[i].cols, jobs[i].T);
        int64_t c = (work * want + total_work - 1) / total_work;
        int64_t most = jobs[i].rows / 8 > 0 ? jobs[i].rows / 8 : 1;
        if (c > most) c = most;
        if (c < 1) c = 1;
        for (int q = 0; q < c; q++, nchunks++) {
            item[nchunks] = i;
            part[nchunks] = q;
            parts[nchunks] = (int)c;
        }
    }
    if (nchunks == 0) return MOE_OK;
    many_job m = {jobs, item, part, parts};
    if (threaded) moe_pool_run(many_rows, &m, nchunks);
    else for (int c = 0; c < nchunks; c++) many_rows(&m, c, nchunks);
    return MOE_OK;
}

int moe_matmul_many(const moe_product *items, int n) {
    return matmul_many_on(moe_default_path(), 1, items, n);
}

int moe_matmul_on(int path, int threaded, int fmt, const void *w, int64_t rows,
                  int64_t cols, const float *x, int64_t T, float *y) {
    moe_product p = {fmt, w, rows, cols, x, T, y};
    return matmul_many_on(path, threaded, &p, 1);
}

int moe_matmul(int fmt, const void *w, int64_t rows, int64_t cols,
               const float *x, int64_t T, float *y) {
    return moe_matmul_on(moe_default_path(), 1, fmt, w, rows, cols, x, T, y);
}

int moe_matvec(int fmt, const void *w, int64_t rows, int64_t cols, const float *x, float *y) {
    return moe_matmul_on(moe_default_path(), 1, fmt, w, rows, cols, x, 1, y);
}

void moe_attend_group(const float *q, const float *k, const float *v, int64_t visible, int64_t stride,
                      int head_dim, int group, float scale, float *scores, float *out) {
    if (visible <= 0 || head_dim <= 0 || group <= 0) return;
    kernels_for(moe_default_path())->attend_group(q, k, v, visible, stride, head_dim, group, scale, scores, out);
}

void moe_attend_group_f16(const float *q, const uint16_t *k, const uint16_t *v, int64_t visible, int64_t stride,
                          int head_dim, int group, float scale, float *scores, float *out) {
    if (visible <= 0 || head_dim <= 0 || group <= 0) return;
    kernels_for(moe_default_path())->attend_group_f16(q, k, v, visible, stride, head_dim, group, scale, scores, out);
}

void moe_f32_to_f16_n(const float *src, uint16_t *dst, int64_t n) {
    if (n > 0) kernels_for(moe_default_path())->to_f16(src, dst, n);
}

double moe_log_sum_exp_f32(const float *x, int64_t n) {
    return n > 0 ? kernels_for(moe_default_path())->log_sum_exp(x, n) : -INFINITY;
}

void moe_swiglu(float *gate, const float *up, int64_t n) {
    if (n > 0) kernels_for(moe_default_path())->swiglu(gate, up, n);
}

int moe_widen(int fmt, const void *src, int64_t n, float *dst) {
    if (n < 0) return MOE_ERR_SHAPE;
    const moe_kernels *k = kernels_for(moe_default_path());
    switch (fmt) {
    case MOE_FMT_F32: memcpy(dst, src, (size_t)n * 4); return MOE_OK;
    case MOE_FMT_BF16: k->widen_bf16(src, dst, n); return MOE_OK;
    case MOE_FMT_F16: k->widen_f16(src, dst, n); return MOE_OK;
    default: return MOE_ERR_FORMAT;
    }
}

/* The buffer moe_thread_floats hands out: separate from `scratch`, which a product's
 * activations use while its pool tasks run. */
static _Thread_local float *thread_floats;
static _Thread_local int64_t thread_floats_cap;

float *moe_thread_floats(int64_t n) {
    if (n <= thread_floats_cap) return thread_floats;
    if (n < 0 || (uint64_t)n > SIZE_MAX / 8) return NULL;
    free(thread_floats);
    thread_floats = NULL;
    thread_floats_cap = 0;
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)n * sizeof(float)) != 0) return NULL;
    thread_floats = p;
    thread_floats_cap = n;
    return thread_floats;
}

void moe_parallel_for(int nchunks, void (*fn)(void *ctx, int chunk, int nchunks), void *ctx) {
    if (nchunks > 0) moe_pool_run(fn, ctx, nchunks);
}

/* ---- read bandwidth probe ---- */

typedef struct {
    const moe_kernels *k;
    const float *a;
    int64_t n;
    int streams;
    float partial[64];
} sum_job;

static void sum_part(void *ctx, int part, int nparts) {
    sum_job *j = ctx;
    int64_t i0 = j->n * part / nparts, i1 = j->n * (part + 1) / nparts;
    j->partial[part] = j->k->sum_f32(j->a + i0, i1 - i0, j->streams);
}

double moe_read_sum(const float *a, int64_t n, int streams) {
    if (n <= 0) return 0;
    streams = streams < 1 ? 1 : (streams > MOE_READ_STREAMS_MAX ? MOE_READ_STREAMS_MAX : streams);
    sum_job j = {kernels_for(moe_default_path()), a, n, streams, {0}};
    moe_pool_run(sum_part, &j, 64);
    double total = 0;
    for (int i = 0; i < 64; i++) total += j.partial[i];
    return total;
}
