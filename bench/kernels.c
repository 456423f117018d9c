/* Kernel benchmark: every kernel tier this CPU has (forced with masks through
 * tern_kernels_init), linear layers over real model shapes, plus XNNPACK's
 * fully-connected operators on the same shapes as a baseline.
 *
 *   tern-bench-kernels [--json] [--tiers ref,avx2,...] [--min-time S] [--no-xnnpack]
 *                      [--no-rows] [--quick]
 *
 * Shapes are rows x cols (output x input features) of SmolLM2-135M (576x576,
 * 1536x576, 576x1536, 49152x576) and TinyLlama-1.1B (2048x2048, 256x2048,
 * 5632x2048, 2048x5632), Llama-3.2-1B, ViT-Tiny/Small and mamba-130m (see
 * bench_shapes), at m = 1 (decode, GEMV) and m = 64 (prefill). Weight
 * families: F16, Q8 g32 and Q4 g32 with float activations (linear[]), and Q8 /
 * Q4 g32 with int8 activations (linear_qa[], quantize_rows not included).
 * One thread. Latency is the median of the repetitions; GB/s counts the
 * weight bytes once per call; GOP/s is 2 m rows cols / time; "bw" is GB/s
 * over this machine's streaming read bandwidth, measured first by summing a
 * 1 GiB buffer (weights that fit in the caches can exceed 1).
 *
 * Then N:M sparsity (docs/sparsity.md): dense vs 2:4 vs 1:4 with Q8 / Q4
 * g32 values and int8 activations (linear_qa[] vs linear_qa_nm[]) on
 * 2048x5632, 5632x2048 and 576x1536 at m = 1 and m = 128, every tier (ref at
 * m = 1 only), each in the converter's 16-row tiles (docs/format.md 7.4,
 * "tiles") and row by row ("rows"); "vs dense" is the tiled dense kernel's
 * time of the same tier over this one's. --no-sparse leaves it out, --sparse-only runs only it;
 * --sparse-cold cycles through copies of each weight filling 1 GiB, so
 * every call streams its weights from DRAM as a large model's decode does.
 *
 * Then every other kernel family (bench_ops: norms, activations, softmax,
 * RoPE, attention over F32/F16/Q8 caches, Mamba conv/scan, RWKV shift/WKV-4)
 * on the shapes of those models plus Llama-3.2-1B, ViT-Tiny/Small and
 * mamba-130m / rwkv-4-169m, with the same columns; --no-rows leaves it out,
 * --ops-only runs only it.
 * bench/plot_kernels.sh turns the --json output into a PNG of latency
 * against bytes moved (bench/plot_kernels.gp). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xnnpack.h>

#include "converter/tile_layout.h"
#include "formats/encoding.h"
#include "kernels/kernels.h"
#include "tern.h"

typedef struct {
    const char *model;
    size_t rows, cols;
} bench_shape;

static const bench_shape bench_shapes[] = {
    {"smollm2", 576, 576},     {"smollm2", 1536, 576},   {"smollm2", 576, 1536},
    {"smollm2", 49152, 576},   {"tinyllama", 2048, 2048}, {"tinyllama", 256, 2048},
    {"tinyllama", 5632, 2048}, {"tinyllama", 2048, 5632},
    /* Llama-3.2-1B (2048, 8 KV heads of 64, FFN 8192), ViT-Tiny/Small (192 /
     * 384, MLP 4x), mamba-130m (in_proj 768 -> 2 x 1536, out_proj) */
    {"llama3.2-1b", 512, 2048}, {"llama3.2-1b", 8192, 2048}, {"llama3.2-1b", 2048, 8192},
    {"vit-tiny", 192, 192},     {"vit-tiny", 768, 192},      {"vit-tiny", 192, 768},
    {"vit-small", 384, 384},    {"vit-small", 1536, 384},    {"vit-small", 384, 1536},
    {"mamba-130m", 3072, 768},  {"mamba-130m", 768, 1536},
};

typedef struct {
    int json;
    int xnnpack;
    int rows_kernels;
    double min_time;
    uint64_t tiers; /* bit per tern_isa */
    int first_row;  /* json: no comma before the first object */
    int sparse_cold; /* sparse section: rotate weight copies beyond the caches */
} bench_opts;

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define BENCH_MAX_REPS 64

/* Median seconds of fn(ctx): one warm-up call, then calls until min_time has
 * passed and at least 3 were made (one, without warm-up, when a call takes
 * longer than min_time). */
static double bench_time(void (*fn)(void *), void *ctx, double min_time) {
    double t[BENCH_MAX_REPS];
    double start = bench_now();
    fn(ctx);
    double first = bench_now() - start;
    if (first > min_time) return first;
    int n = 0;
    start = bench_now();
    while (n < BENCH_MAX_REPS && (n < 3 || bench_now() - start < min_time)) {
        const double t0 = bench_now();
        fn(ctx);
        t[n++] = bench_now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return t[n / 2];
}

static uint64_t bench_rng(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static float bench_uniform(uint64_t *s) {
    return (float)(bench_rng(s) >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
}

static void *bench_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* ---- streaming read bandwidth ---- */

static double bench_read_bandwidth(double *checksum) {
    const size_t n = (size_t)1 << 27; /* 1 GiB of uint64 */
    uint64_t *buf = bench_alloc(n * sizeof *buf);
    if (!buf) return 0.0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0.0;
    uint64_t total = 0;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = bench_now();
        uint64_t s[8] = {0};
        for (size_t i = 0; i < n; i += 8)
            for (int j = 0; j < 8; j++) s[j] += buf[i + (size_t)j];
        const double dt = bench_now() - t0;
        for (int j = 0; j < 8; j++) total += s[j];
        const double gbs = (double)(n * sizeof *buf) / dt * 1e-9;
        if (gbs > best) best = gbs;
    }
    *checksum = (double)total;
    free(buf);
    return best;
}

/* ---- weights ---- */

typedef struct {
    const char *family;
    tern_encoding enc;
    int qa; /* integer path */
} bench_family;

static const bench_family bench_families[] = {
    {"f16", TERN_ENC_F16, 0},     {"q8g32", TERN_ENC_Q8, 0},   {"q4g32", TERN_ENC_Q4, 0},
    {"q8g32-qa", TERN_ENC_Q8, 1}, {"q4g32-qa", TERN_ENC_Q4, 1},
};

static size_t bench_weight_bytes(tern_encoding enc, size_t rows, size_t cols) {
    switch (enc) {
    case TERN_ENC_F16: return rows * cols * 2;
    case TERN_ENC_Q8: return rows * cols + rows * cols / 32 * 2;
    case TERN_ENC_Q4: return rows * cols / 2 + rows * cols / 32 * 2;
    default: return rows * cols * 4;
    }
}

/* Random weights of enc (group size 32, symmetric); returns 0 on OOM. */
static int bench_make_weight(tern_weight *w, tern_encoding enc, size_t rows, size_t cols,
                             uint64_t *rng) {
    memset(w, 0, sizeof *w);
    w->encoding = enc;
    w->layout = TERN_LAYOUT_ROW_MAJOR;
    w->rows = rows;
    w->cols = cols;
    const size_t n = rows * cols;
    if (enc == TERN_ENC_F16) {
        uint16_t *v = bench_alloc(n * 2);
        if (!v) return 0;
        for (size_t i = 0; i < n; i++) v[i] = (uint16_t)(0x2000 + (bench_rng(rng) & 0x83ff));
        w->values = v;
        return 1;
    }
    const size_t vbytes = enc == TERN_ENC_Q8 ? n : n / 2;
    uint8_t *v = bench_alloc(vbytes);
    uint16_t *s = bench_alloc(n / 32 * 2);
    if (!v || !s) {
        free(v);
        free(s);
        return 0;
    }
    for (size_t i = 0; i < vbytes; i++) v[i] = (uint8_t)bench_rng(rng);
    for (size_t i = 0; i < n / 32; i++) s[i] = (uint16_t)(0x1c00 + (bench_rng(rng) & 0x3ff));
    w->values = v;
    w->scales = s;
    w->group_size = 32;
    return 1;
}

static void bench_free_weight(tern_weight *w) {
    free((void *)w->values);
    free((void *)w->scales);
}

/* ---- one linear call ---- */

typedef struct {
    const tern_kernels *k;
    const bench_family *fam;
    const tern_weight *w;
    size_t m;
    const float *x;
    const tern_qrows *xq;
    float *y;
} bench_linear_ctx;

static void bench_linear_run(void *p) {
    const bench_linear_ctx *c = p;
    if (c->fam->qa)
        c->k->linear_qa[c->fam->enc](c->m, 0, c->w->rows, c->xq, c->w, NULL, c->y, c->w->rows);
    else
        c->k->linear[c->fam->enc](c->m, 0, c->w->rows, c->x, c->w->cols, c->w, NULL, c->y,
                                  c->w->rows);
}

static void bench_print(bench_opts *o, const char *family, const char *tier,
                        const bench_shape *sh, size_t m, double sec, size_t wbytes, double bw,
                        double speedup) {
    const double gbs = (double)wbytes / sec * 1e-9;
    const double gops = 2.0 * (double)m * (double)sh->rows * (double)sh->cols / sec * 1e-9;
    if (o->json) {
        printf("%s\n  {\"family\": \"%s\", \"tier\": \"%s\", \"model\": \"%s\", \"rows\": %zu, "
               "\"cols\": %zu, \"m\": %zu, \"ms\": %.4f, \"gbs\": %.2f, \"gops\": %.2f, "
               "\"bw_fraction\": %.3f, \"speedup_vs_ref\": %.2f}",
               o->first_row ? "" : ",", family, tier, sh->model, sh->rows, sh->cols, m,
               sec * 1e3, gbs, gops, bw > 0 ? gbs / bw : 0.0, speedup);
        o->first_row = 0;
    } else {
        char sp[32] = "";
        if (speedup > 0) snprintf(sp, sizeof sp, "%.1fx", speedup);
        printf("| %-9s | %-10s | %-11s | %5zux%-5zu | %2zu | %9.4f | %7.2f | %7.2f | %5.2f | %7s |\n",
               family, tier, sh->model, sh->rows, sh->cols, m, sec * 1e3, gbs, gops,
               bw > 0 ? gbs / bw : 0.0, sp);
    }
    fflush(stdout);
}

/* ---- N:M sparse ---- */

/* Random n:m weights of enc with group 32 over kept values: each block of m
 * keeps a random ascending n-subset (format 7.3). Returns 0 on OOM. */
static int bench_make_sparse(tern_weight *w, tern_encoding enc, size_t rows, size_t cols,
                             unsigned n, unsigned m, uint64_t *rng) {
    const size_t stored = cols / m * n;
    if (!bench_make_weight(w, enc, rows, stored, rng)) return 0;
    w->cols = cols;
    w->sparse_n = (uint8_t)n;
    w->sparse_m = (uint8_t)m;
    const unsigned b = m == 4 ? 2 : 3;
    const size_t irow = (stored * b + 7) / 8;
    uint8_t *index = bench_alloc(rows * irow);
    if (!index) {
        bench_free_weight(w);
        return 0;
    }
    memset(index, 0, rows * irow);
    for (size_t r = 0; r < rows; r++) {
        size_t k = 0;
        for (size_t c0 = 0; c0 < cols; c0 += m) {
            unsigned keep = 0, kept = 0;
            while (kept < n) {
                const unsigned j = (unsigned)(bench_rng(rng) % m);
                if (!(keep & (1u << j))) keep |= 1u << j, kept++;
            }
            for (unsigned j = 0; j < m; j++) {
                if (!(keep & (1u << j))) continue;
                for (unsigned i = 0; i < b; i++) {
                    const size_t bit = k * b + i;
                    index[r * irow + bit / 8] |= (uint8_t)(((j >> i) & 1u) << (bit % 8));
                }
                k++;
            }
        }
    }
    w->index = index;
    return 1;
}

/* Reorders a row-major symmetric Q8/Q4 weight (dense, 2:4 or 1:4, group 32)
 * into the converter's 16-row tiles, as tern convert writes it. */
static int bench_tile(tern_weight *w) {
    tern_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.encoding = w->encoding;
    d.layout = TERN_LAYOUT_ROW_MAJOR;
    d.ndim = 2;
    d.dims[0] = w->rows;
    d.dims[1] = w->cols;
    d.group_size = w->group_size;
    d.sparse_n = w->sparse_n;
    d.sparse_m = w->sparse_m;
    uint64_t sizes[TERN_PLANE_COUNT];
    if (!tern_tiles_eligible(&d, TERN_TILE_ROWS) || tern_tensor_plane_sizes(&d, sizes) != 0) return 0;
    const void *src[TERN_PLANE_COUNT] = {w->values, w->scales, NULL, w->index};
    void *dst[TERN_PLANE_COUNT] = {NULL, NULL, NULL, NULL};
    for (int p = 0; p < TERN_PLANE_COUNT; p++)
        if (sizes[p] && !(dst[p] = bench_alloc((size_t)sizes[p]))) return 0;
    tern_tensor_desc td;
    tern_tiles_from_rows(&d, TERN_TILE_ROWS, src, dst, &td);
    free((void *)w->values);
    free((void *)w->scales);
    free((void *)w->index);
    w->values = dst[TERN_PLANE_VALUES];
    w->scales = dst[TERN_PLANE_SCALES];
    w->index = dst[TERN_PLANE_INDEX];
    w->layout = td.layout;
    w->tile_rows = td.tile_rows;
    return 1;
}

typedef struct {
    const tern_kernels *k;
    const tern_weight *ws; /* n_ws copies, used in turn (cold: more than the caches hold) */
    size_t n_ws, next;
    size_t m;
    const tern_qrows *xq;
    float *y;
} bench_nm_ctx;

static void bench_nm_run(void *p) {
    bench_nm_ctx *c = p;
    const tern_weight *w = &c->ws[c->next++ % c->n_ws];
    if (w->sparse_m)
        c->k->linear_qa_nm[w->encoding](c->m, 0, w->rows, c->xq, w, NULL, c->y, w->rows);
    else
        c->k->linear_qa[w->encoding](c->m, 0, w->rows, c->xq, w, NULL, c->y, w->rows);
}

static void *bench_dup(const void *p, size_t bytes) {
    void *q = p && bytes ? bench_alloc(bytes) : NULL;
    if (q) memcpy(q, p, bytes);
    return q;
}

#define BENCH_COLD_BYTES ((size_t)1 << 30)
#define BENCH_COLD_MAX 256

static int bench_sparse(bench_opts *o, const tern_isa *tiers, size_t n_tiers, uint64_t *rng) {
    static const bench_shape shapes[] = {
        {"tinyllama", 2048, 5632}, {"tinyllama", 5632, 2048}, {"smollm2", 576, 1536}};
    static const struct {
        unsigned n, m;
        int tiles;
    } patterns[] = {{0, 0, 1}, {0, 0, 0}, {2, 4, 1}, {2, 4, 0}, {1, 4, 1}, {1, 4, 0}};
    static const size_t ms[] = {1, 128};
    if (!o->json) {
        printf("\n| sparse  | layout | values | tier       | rows x cols | m   | ms        | GB/s    | vs dense |\n");
        printf("|---------|--------|--------|------------|-------------|-----|-----------|---------|----------|\n");
    }
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const bench_shape *sh = &shapes[si];
        for (size_t mi = 0; mi < 2; mi++) {
            const size_t m = ms[mi], nb = sh->cols / 32;
            float *x = bench_alloc(m * sh->cols * 4), *y = bench_alloc(m * sh->rows * 4);
            int8_t *q = bench_alloc(m * sh->cols);
            float *d = bench_alloc(m * nb * 4);
            int32_t *s = bench_alloc(m * nb * 4);
            if (!x || !y || !q || !d || !s) return 0;
            for (size_t i = 0; i < m * sh->cols; i++) x[i] = bench_uniform(rng);
            for (int e = 0; e < 2; e++) {
                const tern_encoding enc = e ? TERN_ENC_Q4 : TERN_ENC_Q8;
                for (size_t ti = 0; ti < n_tiers; ti++) {
                    if (tiers[ti] == TERN_ISA_REF && m > 1) continue;
                    uint64_t mask;
                    tern_isa_mask_parse(tern_isa_name(tiers[ti]), &mask);
                    tern_kernels k;
                    tern_kernels_init(&k, mask);
                    k.quantize_rows(m, sh->cols, x, sh->cols, q, d, s);
                    const tern_qrows xq = {m, sh->cols, q, d, s};
                    double dense_sec = 0.0;
                    for (size_t pi = 0; pi < sizeof patterns / sizeof patterns[0]; pi++) {
                        const unsigned pn = patterns[pi].n, pm = patterns[pi].m;
                        tern_weight w;
                        if (!(pm ? bench_make_sparse(&w, enc, sh->rows, sh->cols, pn, pm, rng)
                                 : bench_make_weight(&w, enc, sh->rows, sh->cols, rng)))
                            return 0;
                        if (patterns[pi].tiles && !bench_tile(&w)) return 0;
                        const size_t stored = pm ? sh->cols / pm * pn : sh->cols;
                        const size_t vbytes = enc == TERN_ENC_Q8 ? sh->rows * stored : sh->rows * stored / 2;
                        const size_t ibytes = pm ? sh->rows * ((stored * (pm == 4 ? 2 : 3) + 7) / 8) : 0;
                        const size_t bytes = bench_weight_bytes(enc, sh->rows, stored) + ibytes;
                        /* cold: copies of the weight filling BENCH_COLD_BYTES, used in turn */
                        tern_weight copies[BENCH_COLD_MAX];
                        size_t n_copies = 1;
                        copies[0] = w;
                        if (o->sparse_cold) {
                            size_t want = BENCH_COLD_BYTES / bytes + 1;
                            if (want > BENCH_COLD_MAX) want = BENCH_COLD_MAX;
                            for (; n_copies < want; n_copies++) {
                                tern_weight *cw = &copies[n_copies];
                                *cw = w;
                                cw->values = bench_dup(w.values, vbytes);
                                cw->scales = bench_dup(w.scales, sh->rows * stored / 32 * 2);
                                cw->index = bench_dup(w.index, ibytes);
                                if (!cw->values || !cw->scales || (ibytes && !cw->index)) return 0;
                            }
                        }
                        bench_nm_ctx c = {&k, copies, n_copies, 0, m, &xq, y};
                        const double sec = bench_time(bench_nm_run, &c, o->min_time);
                        for (size_t ci = 1; ci < n_copies; ci++) {
                            free((void *)copies[ci].index);
                            bench_free_weight(&copies[ci]);
                        }
                        if (!pm && patterns[pi].tiles) dense_sec = sec;
                        char pat[16];
                        snprintf(pat, sizeof pat, pm ? "%u:%u" : "dense", pn, pm);
                        const char *vals = e ? "q4g32" : "q8g32";
                        const char *lay = patterns[pi].tiles ? "tiles" : "rows";
                        if (o->json) {
                            printf("%s\n  {\"family\": \"sparse\", \"pattern\": \"%s\", \"layout\": \"%s\", "
                                   "\"values\": \"%s\", \"tier\": \"%s\", \"rows\": %zu, "
                                   "\"cols\": %zu, \"m\": %zu, \"ms\": %.4f, \"gbs\": %.2f, "
                                   "\"speedup_vs_dense\": %.2f}",
                                   o->first_row ? "" : ",", pat, lay, vals, tern_isa_name(tiers[ti]),
                                   sh->rows, sh->cols, m, sec * 1e3, (double)bytes / sec * 1e-9,
                                   dense_sec / sec);
                            o->first_row = 0;
                        } else {
                            printf("| %-7s | %-6s | %-6s | %-10s | %5zux%-5zu | %3zu | %9.4f | %7.2f | %7.2fx |\n",
                                   pat, lay, vals, tern_isa_name(tiers[ti]), sh->rows, sh->cols, m,
                                   sec * 1e3, (double)bytes / sec * 1e-9, dense_sec / sec);
                        }
                        fflush(stdout);
                        free((void *)w.index);
                        bench_free_weight(&w);
                    }
                }
            }
            free(x), free(y), free(q), free(d), free(s);
        }
    }
    return 1;
}

/* ---- XNNPACK ---- */

typedef struct {
    xnn_operator_t op;
} bench_xnn_ctx;

static void bench_xnn_run(void *p) {
    const bench_xnn_ctx *c = p;
    xnn_run_operator(c->op, NULL);
}

static uint16_t bench_f32_to_f16(float f) {
    /* inputs are small normal numbers: truncating rounding is enough here */
    uint32_t b;
    memcpy(&b, &f, 4);
    const int e = (int)((b >> 23) & 0xff) - 127 + 15;
    if (e <= 0) return (uint16_t)((b >> 16) & 0x8000);
    return (uint16_t)(((b >> 16) & 0x8000) | (uint32_t)e << 10 | ((b >> 13) & 0x3ff));
}

static void bench_xnnpack(bench_opts *o, const bench_shape *sh, size_t m, double bw,
                          uint64_t *rng) {
    const size_t n = sh->rows * sh->cols;
    float *wf = bench_alloc(n * 4);
    float *x = bench_alloc(m * sh->cols * 4);
    float *y = bench_alloc(m * sh->rows * 4);
    uint16_t *wh = bench_alloc(n * 2), *xh = bench_alloc(m * sh->cols * 2);
    uint16_t *yh = bench_alloc(m * sh->rows * 2);
    int8_t *wq = bench_alloc(n), *xq = bench_alloc(m * sh->cols), *yq = bench_alloc(m * sh->rows);
    if (!wf || !x || !y || !wh || !xh || !yh || !wq || !xq || !yq) goto done;
    for (size_t i = 0; i < n; i++) {
        wf[i] = bench_uniform(rng) * 0.05f;
        wh[i] = bench_f32_to_f16(wf[i]);
        wq[i] = (int8_t)(bench_rng(rng) % 255 - 127);
    }
    for (size_t i = 0; i < m * sh->cols; i++) {
        x[i] = bench_uniform(rng);
        xh[i] = bench_f32_to_f16(x[i]);
        xq[i] = (int8_t)(bench_rng(rng) % 255 - 127);
    }
    for (int kind = 0; kind < 3; kind++) {
        xnn_operator_t op = NULL;
        enum xnn_status st;
        const char *name;
        size_t wbytes;
        if (kind == 0) {
            name = "xnn-f32";
            wbytes = n * 4;
            st = xnn_create_fully_connected_nc_f32(sh->cols, sh->rows, sh->cols, sh->rows, wf,
                                                   NULL, -INFINITY, INFINITY, 0, &op);
            if (st == xnn_status_success)
                st = xnn_setup_fully_connected_nc_f32(op, m, x, y, NULL);
        } else if (kind == 1) {
            name = "xnn-f16";
            wbytes = n * 2;
            st = xnn_create_fully_connected_nc_f16(sh->cols, sh->rows, sh->cols, sh->rows, wh,
                                                   NULL, -INFINITY, INFINITY, 0, &op);
            if (st == xnn_status_success)
                st = xnn_setup_fully_connected_nc_f16(op, m, xh, yh, NULL);
        } else {
            name = "xnn-qs8";
            wbytes = n;
            st = xnn_create_fully_connected_nc_qs8(sh->cols, sh->rows, sh->cols, sh->rows, 0,
                                                   0.02f, 0.01f, wq, NULL, 0, 1.0f, -127, 127, 0,
                                                   &op);
            if (st == xnn_status_success)
                st = xnn_setup_fully_connected_nc_qs8(op, m, xq, yq, NULL);
        }
        if (st != xnn_status_success) {
            if (!o->json)
                printf("| %-9s | %-10s | %-11s | %5zux%-5zu | %2zu | n/a (xnn status %d) |\n",
                       name, "xnnpack", sh->model, sh->rows, sh->cols, m, (int)st);
        } else {
            bench_xnn_ctx c = {op};
            const double sec = bench_time(bench_xnn_run, &c, o->min_time);
            bench_print(o, name, "xnnpack", sh, m, sec, wbytes, bw, 0.0);
        }
        if (op) xnn_delete_operator(op);
    }
done:
    free(wf), free(x), free(y), free(wh), free(xh), free(yh), free(wq), free(xq), free(yq);
}

/* ---- every other kernel family (bench_ops) ----
 * Norms, activations, softmax, RoPE, attention over F32/F16/Q8 caches, the
 * Mamba conv/scan and the RWKV shift/WKV-4, on the shapes of SmollM2-135M,
 * TinyLlama-1.1B, Llama-3.2-1B, ViT-Tiny/Small (197 tokens) and
 * mamba-130m / rwkv-4-169m, at every tier whose entry differs from the tier
 * below (a tier that inherits the entry would time the same code). Bytes are
 * what the kernel must read and write once; ops count multiply-adds as 2 and
 * an exp, erf or division as 1. */

enum {
    BENCH_OP_RMSNORM, BENCH_OP_LAYERNORM, BENCH_OP_SOFTMAX, BENCH_OP_SILU, BENCH_OP_SWIGLU,
    BENCH_OP_GELU, BENCH_OP_ADD, BENCH_OP_ROPE, BENCH_OP_ATTENTION, BENCH_OP_SSM_CONV,
    BENCH_OP_SSM_SCAN, BENCH_OP_RWKV_SHIFT, BENCH_OP_WKV4
};

typedef struct {
    int op;
    const char *name;
    const char *model;
    size_t a, b, c, d; /* per op: see bench_op_setup */
    int kv;            /* attention: tern_kv_type */
} bench_op_case;

static const bench_op_case bench_op_cases[] = {
    {BENCH_OP_RMSNORM, "rmsnorm", "smollm2", 576, 1, 0, 0, 0},
    {BENCH_OP_RMSNORM, "rmsnorm", "tinyllama", 2048, 1, 0, 0, 0},
    {BENCH_OP_RMSNORM, "rmsnorm", "llama3.2-1b", 2048, 64, 0, 0, 0},
    {BENCH_OP_RMSNORM, "rmsnorm", "mamba-130m", 768, 1, 0, 0, 0},
    {BENCH_OP_LAYERNORM, "layernorm", "vit-tiny", 192, 197, 0, 0, 0},
    {BENCH_OP_LAYERNORM, "layernorm", "vit-small", 384, 197, 0, 0, 0},
    {BENCH_OP_SOFTMAX, "softmax", "smollm2", 49152, 1, 0, 0, 0},
    {BENCH_OP_SOFTMAX, "softmax", "tinyllama", 32000, 1, 0, 0, 0},
    {BENCH_OP_SOFTMAX, "softmax", "llama3.2-1b", 128256, 1, 0, 0, 0},
    {BENCH_OP_SILU, "silu", "mamba-130m", 1536, 1, 0, 0, 0},
    {BENCH_OP_SILU, "silu", "mamba-130m", 1536, 64, 0, 0, 0},
    {BENCH_OP_SWIGLU, "swiglu", "smollm2", 1536, 1, 0, 0, 0},
    {BENCH_OP_SWIGLU, "swiglu", "tinyllama", 5632, 1, 0, 0, 0},
    {BENCH_OP_SWIGLU, "swiglu", "llama3.2-1b", 8192, 64, 0, 0, 0},
    {BENCH_OP_GELU, "gelu", "vit-tiny", 768, 197, 0, 0, 0},
    {BENCH_OP_GELU, "gelu", "vit-small", 1536, 197, 0, 0, 0},
    {BENCH_OP_ADD, "add", "tinyllama", 2048, 1, 0, 0, 0},
    {BENCH_OP_ADD, "add", "vit-small", 384, 197, 0, 0, 0},
    /* rope: heads, head_dim */
    {BENCH_OP_ROPE, "rope_half", "smollm2", 9, 64, 0, 0, 0},
    {BENCH_OP_ROPE, "rope_half", "tinyllama", 32, 64, 0, 0, 0},
    {BENCH_OP_ROPE, "rope_half", "llama3.2-1b", 32, 64, 0, 0, 0},
    /* attention: n_head, n_head_kv, head_dim, n_kv */
    {BENCH_OP_ATTENTION, "attention", "smollm2", 9, 3, 64, 1024, TERN_KV_F32},
    {BENCH_OP_ATTENTION, "attention", "tinyllama", 32, 4, 64, 1024, TERN_KV_F32},
    {BENCH_OP_ATTENTION, "attention-f16", "tinyllama", 32, 4, 64, 1024, TERN_KV_F16},
    {BENCH_OP_ATTENTION, "attention-q8", "tinyllama", 32, 4, 64, 1024, TERN_KV_Q8},
    {BENCH_OP_ATTENTION, "attention", "llama3.2-1b", 32, 8, 64, 4096, TERN_KV_F32},
    {BENCH_OP_ATTENTION, "attention-f16", "llama3.2-1b", 32, 8, 64, 4096, TERN_KV_F16},
    {BENCH_OP_ATTENTION, "attention-q8", "llama3.2-1b", 32, 8, 64, 4096, TERN_KV_Q8},
    {BENCH_OP_ATTENTION, "attention", "vit-tiny", 3, 3, 64, 197, TERN_KV_F32},
    {BENCH_OP_ATTENTION, "attention", "vit-small", 6, 6, 64, 197, TERN_KV_F32},
    /* ssm_conv: d_inner, tokens, d_conv; ssm_scan: d_inner, tokens, d_state */
    {BENCH_OP_SSM_CONV, "ssm_conv", "mamba-130m", 1536, 1, 4, 0, 0},
    {BENCH_OP_SSM_CONV, "ssm_conv", "mamba-130m", 1536, 64, 4, 0, 0},
    {BENCH_OP_SSM_SCAN, "ssm_scan", "mamba-130m", 1536, 1, 16, 0, 0},
    {BENCH_OP_SSM_SCAN, "ssm_scan", "mamba-130m", 1536, 64, 16, 0, 0},
    /* rwkv: d, tokens */
    {BENCH_OP_RWKV_SHIFT, "rwkv_shift", "rwkv4-169m", 768, 1, 0, 0, 0},
    {BENCH_OP_RWKV_SHIFT, "rwkv_shift", "rwkv4-169m", 768, 64, 0, 0, 0},
    {BENCH_OP_WKV4, "wkv4", "rwkv4-169m", 768, 1, 0, 0, 0},
    {BENCH_OP_WKV4, "wkv4", "rwkv4-169m", 768, 64, 0, 0, 0},
};

typedef struct {
    const tern_kernels *k;
    const bench_op_case *cs;
    float *buf[8];
    tern_attention_args att;
    tern_ssm_conv_args conv;
    tern_ssm_scan_args scan;
    tern_wkv4_args wkv;
} bench_op_ctx;

/* The kernel's table entry, to tell whether a tier has its own. */
static const void *bench_op_entry(const tern_kernels *k, int op) {
    switch (op) {
    case BENCH_OP_RMSNORM: return (const void *)k->rmsnorm;
    case BENCH_OP_LAYERNORM: return (const void *)k->layernorm;
    case BENCH_OP_SOFTMAX: return (const void *)k->softmax;
    case BENCH_OP_SILU: return (const void *)k->silu;
    case BENCH_OP_SWIGLU: return (const void *)k->swiglu;
    case BENCH_OP_GELU: return (const void *)k->gelu;
    case BENCH_OP_ADD: return (const void *)k->add;
    case BENCH_OP_ROPE: return (const void *)k->rope_half;
    case BENCH_OP_ATTENTION: return (const void *)k->attention;
    case BENCH_OP_SSM_CONV: return (const void *)k->ssm_conv;
    case BENCH_OP_SSM_SCAN: return (const void *)k->ssm_scan;
    case BENCH_OP_RWKV_SHIFT: return (const void *)k->rwkv_shift;
    default: return (const void *)k->wkv4;
    }
}

static void bench_op_run(void *p) {
    bench_op_ctx *c = p;
    const tern_kernels *k = c->k;
    const bench_op_case *cs = c->cs;
    float **b = c->buf;
    const size_t n = cs->a, rows = cs->b;
    switch (cs->op) {
    case BENCH_OP_RMSNORM:
        for (size_t r = 0; r < rows; r++) k->rmsnorm(n, b[0] + r * n, b[1], 1e-5f, b[2] + r * n);
        break;
    case BENCH_OP_LAYERNORM:
        for (size_t r = 0; r < rows; r++) k->layernorm(n, b[0] + r * n, b[1], b[3], 1e-6f, b[2] + r * n);
        break;
    case BENCH_OP_SOFTMAX:
        /* in place on data that stays in range: the exp of x - max never overflows */
        k->softmax(n, b[0]);
        break;
    case BENCH_OP_SILU: k->silu(n * rows, b[0], b[2]); break;
    case BENCH_OP_SWIGLU: k->swiglu(n * rows, b[0], b[1], b[2]); break;
    case BENCH_OP_GELU: k->gelu(n * rows, b[0], b[2]); break;
    case BENCH_OP_ADD: k->add(n * rows, b[0], b[1], b[2]); break;
    case BENCH_OP_ROPE: k->rope_half(cs->a, cs->b, b[2], b[0], b[1]); break;
    case BENCH_OP_ATTENTION: k->attention(&c->att, 0, c->att.n_head); break;
    case BENCH_OP_SSM_CONV: k->ssm_conv(&c->conv, 0, cs->a); break;
    case BENCH_OP_SSM_SCAN: k->ssm_scan(&c->scan, 0, cs->a); break;
    case BENCH_OP_RWKV_SHIFT: k->rwkv_shift(rows, n, b[0], b[1], b[3], b[2]); break;
    default: k->wkv4(&c->wkv, 0, cs->a); break;
    }
}

/* Buffers and argument structs for one case; bytes and ops it moves and
 * computes. Returns 0 on OOM (buffers freed by bench_op_free). */
static int bench_op_setup(bench_op_ctx *c, const bench_op_case *cs, uint64_t *rng, double *bytes,
                          double *ops) {
    const size_t n = cs->a, rows = cs->b;
    size_t len = n * rows; /* elements per buffer */
    if (cs->op == BENCH_OP_ATTENTION) len = cs->b * cs->c * cs->d; /* the cache */
    if (cs->op == BENCH_OP_ROPE) len = n * rows;
    if (cs->op == BENCH_OP_SSM_SCAN) len = n * (rows > cs->c ? rows : cs->c) * 2;
    if (cs->op == BENCH_OP_SSM_CONV) len = n * (rows > cs->c ? rows : cs->c);
    if (len < 2 * n) len = 2 * n; /* wkv4 keeps w and u in one buffer */
    len += 64;
    for (int i = 0; i < 8; i++) {
        c->buf[i] = bench_alloc(len * 4);
        if (!c->buf[i]) return 0;
        for (size_t j = 0; j < len; j++) c->buf[i][j] = bench_uniform(rng);
    }
    const double f = 4.0;
    switch (cs->op) {
    case BENCH_OP_RMSNORM: *bytes = f * (3.0 * n * rows + n); *ops = 4.0 * n * rows; break;
    case BENCH_OP_LAYERNORM: *bytes = f * (3.0 * n * rows + 2 * n); *ops = 7.0 * n * rows; break;
    case BENCH_OP_SOFTMAX: *bytes = f * 2.0 * n; *ops = 4.0 * n; break;
    case BENCH_OP_SILU: *bytes = f * 2.0 * n * rows; *ops = 4.0 * n * rows; break;
    case BENCH_OP_SWIGLU: *bytes = f * 3.0 * n * rows; *ops = 5.0 * n * rows; break;
    case BENCH_OP_GELU: *bytes = f * 2.0 * n * rows; *ops = 30.0 * n * rows; break;
    case BENCH_OP_ADD: *bytes = f * 3.0 * n * rows; *ops = 1.0 * n * rows; break;
    case BENCH_OP_ROPE: *bytes = f * (2.0 * n * rows + rows); *ops = 3.0 * n * rows; break;
    case BENCH_OP_ATTENTION: {
        const size_t h = cs->a, hkv = cs->b, d = cs->c, nkv = cs->d;
        const double esize = cs->kv == TERN_KV_F16 ? 2 : cs->kv == TERN_KV_Q8 ? 1 : 4;
        /* the F16 / Q8 caches live in buf[4] / buf[5], reinterpreted */
        const void *kc = c->buf[4], *vc = c->buf[5];
        if (cs->kv == TERN_KV_F16) {
            uint16_t *k16 = (uint16_t *)c->buf[4], *v16 = (uint16_t *)c->buf[5];
            for (size_t i = 0; i < hkv * nkv * d; i++)
                k16[i] = (uint16_t)(0x3000 + (bench_rng(rng) & 0x83ff)),
                v16[i] = (uint16_t)(0x3000 + (bench_rng(rng) & 0x83ff));
        } else if (cs->kv == TERN_KV_Q8) {
            int8_t *k8 = (int8_t *)c->buf[4], *v8 = (int8_t *)c->buf[5];
            for (size_t i = 0; i < hkv * nkv * d; i++)
                k8[i] = (int8_t)(bench_rng(rng) % 255 - 127), v8[i] = (int8_t)(bench_rng(rng) % 255 - 127);
            for (size_t i = 0; i < hkv * nkv; i++) c->buf[6][i] = c->buf[7][i] = 1.0f / 127;
        }
        c->att = (tern_attention_args){.head_dim = d, .n_head = h, .n_head_kv = hkv, .n_kv = nkv,
                                       .kv_head_stride = nkv * d, .scale = 0.125f, .q = c->buf[0],
                                       .k = kc, .v = vc, .out = c->buf[2],
                                       .kv_type = (uint32_t)cs->kv, .k_scale = c->buf[6],
                                       .v_scale = c->buf[7], .kv_scale_stride = nkv};
        *bytes = 2.0 * hkv * nkv * d * esize + (cs->kv == TERN_KV_Q8 ? 8.0 * hkv * nkv : 0) +
                 f * 2.0 * h * d;
        *ops = 4.0 * h * nkv * d + 2.0 * h * nkv;
        break;
    }
    case BENCH_OP_SSM_CONV: {
        const size_t K = cs->c;
        c->conv = (tern_ssm_conv_args){rows, K, c->buf[0], n, c->buf[1], c->buf[3], c->buf[4],
                                       c->buf[2], n};
        *bytes = f * (2.0 * n * rows + n * K + n + 2.0 * n * (K - 1));
        *ops = (2.0 * K + 4) * n * rows;
        break;
    }
    case BENCH_OP_SSM_SCAN: {
        const size_t S = cs->c;
        for (size_t i = 0; i < n * S; i++) c->buf[5][i] = -1.0f - (float)(i % S); /* A < 0 */
        for (size_t i = 0; i < n * rows; i++) c->buf[1][i] -= 2.0f; /* dt_raw */
        c->scan = (tern_ssm_scan_args){rows, S, c->buf[0], n, c->buf[1], n, c->buf[3], c->buf[3] + S,
                                       2 * S, c->buf[4], n, c->buf[5], c->buf[6], c->buf[7],
                                       c->buf[2], n};
        *bytes = f * (4.0 * n * rows + 2.0 * S * rows + 3.0 * n * S + n);
        *ops = (7.0 * S + 10) * n * rows;
        break;
    }
    case BENCH_OP_RWKV_SHIFT: *bytes = f * (2.0 * n * rows + 2 * n); *ops = 3.0 * n * rows; break;
    default: {
        for (size_t i = 0; i < n; i++) c->buf[4][i] = -expf(c->buf[4][i]); /* w = -exp(decay) */
        for (size_t i = 0; i < n; i++) c->buf[6][i] = -1e38f; /* pp: a fresh state */
        for (size_t i = 0; i < n; i++) c->buf[5][i] = 0.0f, c->buf[7][i] = 0.0f;
        c->wkv = (tern_wkv4_args){rows, c->buf[0], n, c->buf[1], n, c->buf[3], n, c->buf[4],
                                  c->buf[4] + n, c->buf[5], c->buf[7], c->buf[6], c->buf[2], n};
        *bytes = f * (4.0 * n * rows + 8.0 * n);
        *ops = 20.0 * n * rows;
        break;
    }
    }
    return 1;
}

static void bench_op_free(bench_op_ctx *c) {
    for (int i = 0; i < 8; i++) free(c->buf[i]), c->buf[i] = NULL;
}

static int bench_ops(bench_opts *o, const tern_isa *tiers, size_t n_tiers, double bw,
                     uint64_t *rng) {
    if (!o->json) {
        printf("\n| kernel        | tier       | model       | shape           | us         | GB/s    "
               "| GOP/s   | bw    | vs ref  |\n");
        printf("|---------------|------------|-------------|-----------------|------------|---------"
               "|---------|-------|---------|\n");
    }
    for (size_t ci = 0; ci < sizeof bench_op_cases / sizeof bench_op_cases[0]; ci++) {
        const bench_op_case *cs = &bench_op_cases[ci];
        char shape[48];
        if (cs->op == BENCH_OP_ATTENTION)
            snprintf(shape, sizeof shape, "%zu/%zux%zu kv%zu", cs->a, cs->b, cs->c, cs->d);
        else if (cs->op == BENCH_OP_SSM_CONV || cs->op == BENCH_OP_SSM_SCAN)
            snprintf(shape, sizeof shape, "%zux%zu t%zu", cs->a, cs->c, cs->b);
        else
            snprintf(shape, sizeof shape, "%zux%zu", cs->b, cs->a);
        double ref_sec = 0.0;
        for (size_t ti = 0; ti < n_tiers; ti++) {
            uint64_t mask;
            tern_isa_mask_parse(tern_isa_name(tiers[ti]), &mask);
            tern_kernels k, lower;
            tern_kernels_init(&k, mask);
            tern_kernels_init(&lower, mask & ~TERN_ISA_MASK(tiers[ti]));
            if (ti > 0 && bench_op_entry(&k, cs->op) == bench_op_entry(&lower, cs->op)) continue;
            bench_op_ctx c;
            memset(&c, 0, sizeof c);
            c.k = &k;
            c.cs = cs;
            double bytes = 0, ops = 0;
            if (!bench_op_setup(&c, cs, rng, &bytes, &ops)) {
                bench_op_free(&c);
                return 0;
            }
            const double sec = bench_time(bench_op_run, &c, o->min_time * 0.5);
            bench_op_free(&c);
            if (tiers[ti] == TERN_ISA_REF) ref_sec = sec;
            const double gbs = bytes / sec * 1e-9, gops = ops / sec * 1e-9;
            const double speedup = ref_sec > 0 ? ref_sec / sec : 0.0;
            if (o->json) {
                printf("%s\n  {\"family\": \"%s\", \"tier\": \"%s\", \"model\": \"%s\", "
                       "\"shape\": \"%s\", \"bytes\": %.0f, \"ops\": %.0f, \"us\": %.3f, "
                       "\"ms\": %.6f, \"gbs\": %.2f, \"gops\": %.2f, \"bw_fraction\": %.3f, "
                       "\"speedup_vs_ref\": %.2f}",
                       o->first_row ? "" : ",", cs->name, tern_isa_name(tiers[ti]), cs->model,
                       shape, bytes, ops, sec * 1e6, sec * 1e3, gbs, gops, bw > 0 ? gbs / bw : 0.0,
                       speedup);
                o->first_row = 0;
            } else {
                char sp[32] = "";
                if (speedup > 0) snprintf(sp, sizeof sp, "%.1fx", speedup);
                printf("| %-13s | %-10s | %-11s | %-15s | %10.3f | %7.2f | %7.2f | %5.2f | %7s |\n",
                       cs->name, tern_isa_name(tiers[ti]), cs->model, shape, sec * 1e6, gbs, gops,
                       bw > 0 ? gbs / bw : 0.0, sp);
            }
            fflush(stdout);
        }
    }
    return 1;
}

/* ---- main ---- */

static int bench_parse_tiers(const char *list, uint64_t *tiers) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    *tiers = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        uint64_t mask;
        if (tern_isa_mask_parse(tok, &mask) != TERN_OK) {
            fprintf(stderr, "unknown tier '%s'\n", tok);
            return 0;
        }
        *tiers |= TERN_ISA_MASK(tern_isa_best(mask));
    }
    return 1;
}

int main(int argc, char **argv) {
    bench_opts o = {0, 1, 1, 0.3, TERN_ISA_MASK_ALL, 1, 0};
    int sparse = 1, dense = 1;
    size_t n_shapes = sizeof bench_shapes / sizeof bench_shapes[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) o.json = 1;
        else if (!strcmp(argv[i], "--no-xnnpack")) o.xnnpack = 0;
        else if (!strcmp(argv[i], "--no-rows")) o.rows_kernels = 0;
        else if (!strcmp(argv[i], "--no-sparse")) sparse = 0;
        else if (!strcmp(argv[i], "--sparse-cold")) o.sparse_cold = 1;
        else if (!strcmp(argv[i], "--sparse-only")) dense = 0, o.rows_kernels = 0;
        else if (!strcmp(argv[i], "--quick")) n_shapes = 2, o.min_time = 0.05;
        else if (!strcmp(argv[i], "--ops-only")) dense = 0, sparse = 0;
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) o.min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--tiers") && i + 1 < argc) {
            if (!bench_parse_tiers(argv[++i], &o.tiers)) return 2;
        } else {
            fprintf(stderr, "usage: %s [--json] [--tiers ref,avx2,...] [--min-time S] "
                            "[--no-xnnpack] [--no-rows] [--quick] [--no-sparse] [--sparse-only] [--sparse-cold] [--ops-only]\n", argv[0]);
            return 2;
        }
    }

    /* tiers this CPU has, each forced by its own mask */
    tern_isa tiers[8];
    size_t n_tiers = 0;
    for (int isa = 0; isa < 64 && n_tiers < 8; isa++) {
        uint64_t mask;
        if (!strcmp(tern_isa_name((tern_isa)isa), "unknown")) continue;
        if (tern_isa_mask_parse(tern_isa_name((tern_isa)isa), &mask) != TERN_OK) continue;
        if (tern_isa_best(mask) != (tern_isa)isa || !(o.tiers & TERN_ISA_MASK(isa))) continue;
        tiers[n_tiers++] = (tern_isa)isa;
    }

    double checksum = 0.0;
    const double bw = bench_read_bandwidth(&checksum);
    if (o.json) {
        printf("{\"read_bandwidth_gbs\": %.2f, \"threads\": 1, \"results\": [", bw);
    } else {
        printf("streaming read bandwidth (1 GiB sum, 1 thread): %.2f GB/s (checksum %.0f)\n\n",
               bw, checksum);
        printf("| family    | tier       | model       | rows x cols | m  | ms        | GB/s    "
               "| GOP/s   | bw    | vs ref  |\n");
        printf("|-----------|------------|-------------|-------------|----|-----------|---------"
               "|---------|-------|---------|\n");
    }

    const int xnn_ok = o.xnnpack && xnn_initialize(NULL) == xnn_status_success;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    if (!dense) n_shapes = 0;
    for (size_t si = 0; si < n_shapes; si++) {
        const bench_shape *sh = &bench_shapes[si];
        for (size_t m = 1; m <= 64; m *= 64) {
            float *x = bench_alloc(m * sh->cols * 4), *y = bench_alloc(m * sh->rows * 4);
            const size_t nb = sh->cols / 32;
            int8_t *q = bench_alloc(m * sh->cols);
            float *d = bench_alloc(m * nb * 4);
            int32_t *s = bench_alloc(m * nb * 4);
            if (!x || !y || !q || !d || !s) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            for (size_t i = 0; i < m * sh->cols; i++) x[i] = bench_uniform(&rng);
            for (size_t f = 0; f < sizeof bench_families / sizeof bench_families[0]; f++) {
                const bench_family *fam = &bench_families[f];
                tern_weight w;
                if (!bench_make_weight(&w, fam->enc, sh->rows, sh->cols, &rng)) {
                    fprintf(stderr, "out of memory\n");
                    return 1;
                }
                double ref_sec = 0.0;
                for (size_t ti = 0; ti < n_tiers; ti++) {
                    uint64_t mask;
                    tern_isa_mask_parse(tern_isa_name(tiers[ti]), &mask);
                    tern_kernels k;
                    tern_kernels_init(&k, mask);
                    /* a tier without its own entry for this family repeats a lower one */
                    if (ti > 0) {
                        tern_kernels lower;
                        tern_kernels_init(&lower, mask & ~TERN_ISA_MASK(tiers[ti]));
                        const int same = fam->qa ? k.linear_qa[fam->enc] == lower.linear_qa[fam->enc]
                                                 : k.linear[fam->enc] == lower.linear[fam->enc];
                        if (same) continue;
                    }
                    k.quantize_rows(m, sh->cols, x, sh->cols, q, d, s);
                    const tern_qrows xq = {m, sh->cols, q, d, s};
                    bench_linear_ctx c = {&k, fam, &w, m, x, &xq, y};
                    const double sec = bench_time(bench_linear_run, &c, o.min_time);
                    if (tiers[ti] == TERN_ISA_REF) ref_sec = sec;
                    bench_print(&o, fam->family, tern_isa_name(tiers[ti]), sh, m, sec,
                                bench_weight_bytes(fam->enc, sh->rows, sh->cols), bw,
                                ref_sec > 0 ? ref_sec / sec : 0.0);
                }
                bench_free_weight(&w);
            }
            if (xnn_ok) bench_xnnpack(&o, sh, m, bw, &rng);
            free(x), free(y), free(q), free(d), free(s);
        }
    }
    if (sparse && !bench_sparse(&o, tiers, n_tiers, &rng)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (o.rows_kernels && !bench_ops(&o, tiers, n_tiers, bw, &rng)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    if (o.json) printf("\n]}\n");
    return 0;
}
