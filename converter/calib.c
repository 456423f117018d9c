/* Calibration (converter/calib.h): the float model runs on the calibration
 * data through the runtime; an observer on the session (runtime/internal.h,
 * tern_session.on_linear) sees every linear layer's input rows, accumulates
 * the statistics of the stages being calibrated and hands earlier stages'
 * replacement weights to the kernels. */
#include "converter/calib.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "converter/awq.h"
#include "converter/gptq.h"
#include "converter/smoothquant.h"
#include "converter/sparse.h"
#include "formats/keys.h"
#include "formats/npy.h"
#include "runtime/image.h"
#include "runtime/internal.h"

#define CALIB_ROWS 64               /* input rows folded into the Hessian at a time */
#define CALIB_DEFAULT_BUDGET (512u << 20)
#define CALIB_IMAGES_PER_CALL 4
#define CALIB_TEXT_BYTES_PER_TOKEN 32 /* read at most this many bytes of text per token asked */

/* ---- Calibration data ------------------------------------------------------ */

typedef struct {
    int32_t *tokens; /* text: all windows back to back */
    size_t *win_start, n_win; /* window w: tokens [win_start[w], win_start[w + 1]) */
    float *pixels;   /* vision: [n_images][c][h][w] */
    size_t n_images, image_floats;
} calib_data;

static void calib_data_free(calib_data *d) {
    free(d->tokens);
    free(d->win_start);
    free(d->pixels);
}

static int has_suffix(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)s[n - k + i]) != tolower((unsigned char)suffix[i])) return 0;
    return 1;
}

/* Reads at most max bytes of a file (NUL-terminated). */
static tern_status read_prefix(const char *path, size_t max, char **out, size_t *len,
                               tern_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return tern_fail(err, TERN_ERR_IO, "calibration data %s: %s", path, strerror(errno));
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, max, f);
    const int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return tern_fail(err, TERN_ERR_IO, "calibration data %s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return TERN_OK;
}

static tern_status load_tokens(tern_model *m, const char *path, uint32_t max_tokens, int32_t **out,
                               size_t *n_out, tern_error *err) {
    char *text = NULL;
    size_t len = 0;
    const size_t max_bytes = (size_t)max_tokens * CALIB_TEXT_BYTES_PER_TOKEN;
    tern_status st = read_prefix(path, max_bytes, &text, &len, err);
    if (st != TERN_OK) return st;
    int32_t *ids = NULL;
    size_t n = 0;
    if (has_suffix(path, ".ids")) {
        ids = malloc((len / 2 + 1) * sizeof *ids);
        if (!ids) st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for token ids");
        for (char *p = text; st == TERN_OK && n < max_tokens;) {
            while (isspace((unsigned char)*p)) p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || (uint64_t)v >= m->n_vocab || (*end && !isspace((unsigned char)*end)))
                st = tern_fail(err, TERN_ERR_FORMAT,
                               "%s: token id %zu is not a number in [0, %u) (a .ids file holds "
                               "decimal token ids separated by white space)",
                               path, n, m->n_vocab);
            else
                ids[n++] = (int32_t)v;
            p = end;
        }
    } else if (!tern_model_has_tokenizer(m)) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                       "the model has no tokenizer to read the calibration text %s (give token "
                       "ids in a .ids file)",
                       path);
    } else {
        /* Cut a text read partly at a character boundary. */
        while (len > 0 && ((unsigned char)text[len - 1] & 0xc0) == 0x80) len--;
        if (len > 0 && (unsigned char)text[len - 1] >= 0xc0) len--;
        size_t cap = len / 2 + 16;
        for (int attempt = 0; attempt < 2 && st == TERN_OK; attempt++) {
            free(ids);
            ids = malloc(cap * sizeof *ids);
            if (!ids) {
                st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory tokenizing %s", path);
                break;
            }
            st = tern_model_tokenize(m, text, len, 1, 0, ids, cap, &n, err);
            if (st == TERN_ERR_OUT_OF_RANGE && attempt == 0) {
                cap = n;
                st = TERN_OK;
                continue;
            }
            break;
        }
        if (n > max_tokens) n = max_tokens;
    }
    free(text);
    if (st == TERN_OK && n < 2)
        st = tern_fail(err, TERN_ERR_INVALID_ARG, "calibration data %s gives %zu tokens: too few",
                       path, n);
    if (st != TERN_OK) {
        free(ids);
        return st;
    }
    *out = ids;
    *n_out = n;
    return TERN_OK;
}

/* Splits the token stream into windows of at most `window` tokens, each
 * starting with BOS when the model's texts do. */
static tern_status make_windows(const int32_t *ids, size_t n, size_t window, int32_t bos,
                                calib_data *d, tern_error *err) {
    const size_t max_win = n / (window > 1 ? window - 1 : 1) + 2;
    d->tokens = malloc((n + max_win) * sizeof *d->tokens);
    d->win_start = malloc((max_win + 1) * sizeof *d->win_start);
    if (!d->tokens || !d->win_start) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for windows");
    size_t at = 0, used = 0;
    while (used < n) {
        d->win_start[d->n_win] = at;
        size_t room = window;
        if (bos >= 0 && ids[used] != bos) {
            d->tokens[at++] = bos;
            room--;
        }
        const size_t take = n - used < room ? n - used : room;
        memcpy(d->tokens + at, ids + used, take * sizeof *ids);
        at += take;
        used += take;
        if (at - d->win_start[d->n_win] >= 2) d->n_win++;
        else at = d->win_start[d->n_win];
    }
    d->win_start[d->n_win] = at;
    return TERN_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Calibration views of an image (ViT PTQ practice: a handful of calibration
 * images covers too little of the input distribution, and GPTQ/AWQ then fit
 * those images rather than the model). View 0 is the image as `tern
 * classify` sees it, view 1 its mirror; views >= 2 are random resized crops
 * (area 30-100 %, aspect 3/4-4/3), mirrored when odd, then preprocessed as
 * usual. Deterministic: the generator is seeded by image and view. */
static uint64_t calib_mix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double calib_uniform(uint64_t *state, double lo, double hi) {
    return lo + (hi - lo) * (double)(calib_mix(state) >> 11) * 0x1.0p-53;
}

static void calib_mirror(float *px, const tern_image_config *ic) {
    for (size_t row = 0; row < (size_t)ic->channels * ic->height; row++) {
        float *p = px + row * ic->width;
        for (size_t a = 0, b = ic->width - 1; a < b; a++, b--) {
            const float t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

static tern_status calib_view(const tern_image *img, const tern_image_config *ic, size_t image,
                              uint32_t view, float *out, tern_error *err) {
    if (view < 2) {
        tern_status st = tern_image_preprocess(img, ic, out, err);
        if (st == TERN_OK && view == 1) calib_mirror(out, ic);
        return st;
    }
    uint64_t state = (uint64_t)image * 0x100000001b3ull + view;
    const double area = calib_uniform(&state, 0.30, 1.0);
    const double aspect = exp(calib_uniform(&state, log(3.0 / 4.0), log(4.0 / 3.0)));
    double cw = sqrt(area * aspect) * img->width, ch = sqrt(area / aspect) * img->height;
    if (cw > img->width) cw = img->width;
    if (ch > img->height) ch = img->height;
    tern_image crop = {(uint32_t)cw, (uint32_t)ch, NULL};
    if (crop.width < 1) crop.width = 1;
    if (crop.height < 1) crop.height = 1;
    const uint32_t x0 = (uint32_t)calib_uniform(&state, 0, img->width - crop.width + 1);
    const uint32_t y0 = (uint32_t)calib_uniform(&state, 0, img->height - crop.height + 1);
    if (!(crop.rgb = malloc((size_t)crop.width * crop.height * 3)))
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for a calibration crop");
    for (uint32_t y = 0; y < crop.height; y++)
        memcpy(crop.rgb + (size_t)y * crop.width * 3,
               img->rgb + ((size_t)(y0 + y) * img->width + x0) * 3, (size_t)crop.width * 3);
    tern_status st = tern_image_preprocess(&crop, ic, out, err);
    free(crop.rgb);
    if (st == TERN_OK && view % 2) calib_mirror(out, ic);
    return st;
}

static tern_status load_images(tern_model *m, const char *path, uint32_t max_tokens,
                               uint32_t views, calib_data *d, tern_error *err) {
    tern_image_config ic;
    tern_status st = tern_model_image_config(m, &ic);
    if (st != TERN_OK) return tern_fail(err, st, "the model takes no images");
    d->image_floats = (size_t)ic.channels * ic.height * ic.width;
    const size_t per_image = m->n_ctx ? m->n_ctx : 1;
    size_t want = (max_tokens + per_image - 1) / per_image;
    if (want < 1) want = 1;
    if (has_suffix(path, ".npy")) {
        uint32_t ndim;
        uint64_t shape[4];
        float *px;
        if ((st = tern_npy_read_f32(path, &px, &ndim, shape, err)) != TERN_OK) return st;
        if (ndim != 4 || shape[1] != ic.channels || shape[2] != ic.height || shape[3] != ic.width ||
            shape[0] == 0) {
            free(px);
            return tern_fail(err, TERN_ERR_FORMAT,
                             "%s: pixels must be float32 [n][%u][%u][%u] (preprocessed images)", path,
                             ic.channels, ic.height, ic.width);
        }
        /* Preprocessed pixels can only be mirrored: views 0 and 1. */
        const size_t n = shape[0] < want ? (size_t)shape[0] : want, k = views >= 2 ? 2 : 1;
        if (k == 2) {
            float *both = malloc(2 * n * d->image_floats * sizeof *both);
            if (!both) {
                free(px);
                return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %zu calibration images", 2 * n);
            }
            memcpy(both, px, n * d->image_floats * sizeof *both);
            memcpy(both + n * d->image_floats, px, n * d->image_floats * sizeof *both);
            for (size_t i = n; i < 2 * n; i++) calib_mirror(both + i * d->image_floats, &ic);
            free(px);
            px = both;
        }
        d->pixels = px;
        d->n_images = k * n;
        return TERN_OK;
    }
    DIR *dir = opendir(path);
    if (!dir)
        return tern_fail(err, TERN_ERR_IO,
                         "calibration data %s: %s (a vision model calibrates on a folder of "
                         "JPEG/PNG images or a .npy of pixels)",
                         path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (!(has_suffix(e->d_name, ".jpg") || has_suffix(e->d_name, ".jpeg") ||
              has_suffix(e->d_name, ".png")))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    closedir(dir);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    const size_t n_names = n;
    if (n > want) n = want;
    if (n == 0) st = tern_fail(err, TERN_ERR_INVALID_ARG, "%s holds no .jpg/.jpeg/.png image", path);
    else if (!(d->pixels = malloc(n * views * d->image_floats * sizeof(float))))
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %zu calibration views", n * views);
    for (size_t i = 0; i < n && st == TERN_OK; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        tern_image img;
        if ((st = tern_image_load(full, &img, err)) != TERN_OK) break;
        for (uint32_t v = 0; v < views && st == TERN_OK; v++)
            st = calib_view(&img, &ic, i, v, d->pixels + (i * views + v) * d->image_floats, err);
        if (st != TERN_OK) tern_fail_context(err, st, "calibration image %s", full);
        tern_image_free(&img);
    }
    for (size_t i = 0; i < n_names; i++) free(names[i]);
    free(names);
    d->n_images = n * views;
    return st;
}

/* ---- The observer ------------------------------------------------------------ */

typedef struct {
    const void *values;
    uint32_t linear;
} calib_entry;

typedef struct {
    tern_model *model;
    tern_session *session;
    tern_calib_linear *linears;
    size_t n_linears, cap_linears;
    uint32_t *group_of;   /* [linear] */
    uint8_t *leader;      /* [linear]: the first of its group, the one that accumulates */
    tern_calib_stats *groups;
    uint8_t *active;      /* [group] */
    size_t n_groups;
    calib_entry *index;   /* tracked linears by values pointer, sorted */
    size_t n_index;
    int discovering;
    int need_hessian;
    int failed;           /* out of memory inside the observer */
    /* discovery: the previous call, to find layers that share an input */
    const float *last_x;
    size_t last_m, last_cols;
    int last_tracked;
    /* 2-D F32 tensors of the file by values pointer, for discovery */
    calib_entry *tensors;
    size_t n_tensors;
    double *xt;           /* [cols][CALIB_ROWS] scratch */
    size_t xt_cols;
    /* the Hessian task */
    tern_calib_stats *h_stats;
    size_t h_m;
    /* The residual stream kept between passes: a pass resumes at the block
     * whose input it holds instead of running the model from the start. */
    tern_block_window window;
    float *stream;        /* [rows][d_model], or NULL: every pass runs the whole model */
    int64_t stream_block; /* the block whose input stream holds, -1: none */
    size_t rows_per_unit; /* stream rows per calibration token or image (from discovery) */
} calib_state;

static int cmp_entry(const void *a, const void *b) {
    const calib_entry *x = a, *y = b;
    return x->values < y->values ? -1 : x->values > y->values;
}

static const calib_entry *find_entry(const calib_entry *v, size_t n, const void *values) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (v[mid].values == values) return &v[mid];
        if ((const char *)v[mid].values < (const char *)values) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Stage of a tensor: b + 1 for "blk.b.", 0 otherwise. */
static uint32_t stage_of(const char *name) {
    unsigned b;
    int k = 0;
    if (sscanf(name, "blk.%u.%n", &b, &k) == 1 && k > 0) return b + 1;
    return 0;
}

static void discover(calib_state *c, const tern_weight *w, const float *x, size_t m) {
    const calib_entry *e = find_entry(c->tensors, c->n_tensors, w->values);
    int tracked = 0;
    if (e) {
        tern_tensor_view v;
        tern_file_tensor_view(&c->model->file, e->linear, &v);
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)v.name_length, v.name);
        tracked = strcmp(name, TERN_T_TOKEN_EMBD) != 0 && strcmp(name, TERN_T_OUTPUT) != 0;
        for (size_t i = 0; tracked && i < c->n_linears; i++)
            if (c->linears[i].weight == w->values) tracked = 0; /* seen already */
        if (tracked) {
            if (c->n_linears == c->cap_linears) {
                const size_t cap = c->cap_linears ? 2 * c->cap_linears : 64;
                tern_calib_linear *l = realloc(c->linears, cap * sizeof *l);
                uint32_t *g = realloc(c->group_of, cap * sizeof *g);
                if (l) c->linears = l;
                if (g) c->group_of = g;
                if (!l || !g) {
                    c->failed = 1;
                    return;
                }
                c->cap_linears = cap;
            }
            tern_calib_linear *L = &c->linears[c->n_linears];
            memset(L, 0, sizeof *L);
            snprintf(L->name, sizeof L->name, "%s", name);
            L->stage = stage_of(name);
            L->rows = w->rows;
            L->cols = w->cols;
            L->weight = w->values;
            const int shares = c->last_tracked && c->last_x == x && c->last_m == m &&
                               c->last_cols == w->cols && c->n_linears > 0 &&
                               c->linears[c->n_linears - 1].stage == L->stage;
            c->group_of[c->n_linears] = shares ? c->group_of[c->n_linears - 1] : (uint32_t)c->n_groups++;
            c->n_linears++;
        }
    }
    c->last_x = x;
    c->last_m = m;
    c->last_cols = w->cols;
    c->last_tracked = tracked;
}

/* H[i][j] += sum_t xt[i][t] xt[j][t] for j >= i, rows i of one tile. */
static void hessian_rows(void *ctx, size_t i0, size_t count) {
    const calib_state *c = ctx;
    tern_calib_stats *st = c->h_stats;
    const size_t cols = st->cols, m = c->h_m;
    for (size_t i = i0; i < i0 + count; i++) {
        const double *a = c->xt + i * CALIB_ROWS;
        double *h = st->hessian + i * cols;
        for (size_t j = i; j < cols; j++) {
            const double *b = c->xt + j * CALIB_ROWS;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            size_t t = 0;
            for (; t + 4 <= m; t += 4) {
                s0 += a[t] * b[t];
                s1 += a[t + 1] * b[t + 1];
                s2 += a[t + 2] * b[t + 2];
                s3 += a[t + 3] * b[t + 3];
            }
            for (; t < m; t++) s0 += a[t] * b[t];
            h[j] += (s0 + s1) + (s2 + s3);
        }
    }
}

static void accumulate(calib_state *c, tern_calib_stats *st, const float *x, size_t m, size_t ldx) {
    const size_t cols = st->cols;
    for (size_t r0 = 0; r0 < m; r0 += CALIB_ROWS) {
        const size_t mc = m - r0 < CALIB_ROWS ? m - r0 : CALIB_ROWS;
        for (size_t t = 0; t < mc; t++) {
            const float *row = x + (r0 + t) * ldx;
            for (size_t j = 0; j < cols; j++) {
                const double v = row[j];
                st->sum_sq[j] += v * v;
                st->sum_abs[j] += fabs(v);
                if (fabsf(row[j]) > st->max_abs[j]) st->max_abs[j] = fabsf(row[j]);
                c->xt[j * CALIB_ROWS + t] = v;
            }
        }
        st->n += mc;
        if (!st->hessian) continue;
        c->h_stats = st;
        c->h_m = mc;
        if (c->session->pool && c->session->n_threads > 1 && cols >= 128)
            pthreadpool_parallelize_1d_tile_1d(c->session->pool, hessian_rows, c, cols, 16,
                                               PTHREADPOOL_FLAG_YIELD_WORKERS);
        else
            hessian_rows(c, 0, cols);
    }
}

static const tern_weight *observe(void *user, const tern_weight *w, const float *x, size_t m,
                                  size_t ldx) {
    calib_state *c = user;
    if (c->discovering) {
        discover(c, w, x, m);
        return NULL;
    }
    const calib_entry *e = find_entry(c->index, c->n_index, w->values);
    if (!e) return NULL;
    tern_calib_linear *L = &c->linears[e->linear];
    if (L->has_replacement) return &L->replacement;
    const uint32_t g = c->group_of[e->linear];
    if (c->active[g] && c->leader[e->linear] && !c->failed) accumulate(c, &c->groups[g], x, m, ldx);
    return NULL;
}

/* ---- Passes -------------------------------------------------------------------- */

static size_t stats_bytes(size_t cols, int hessian) {
    return cols * (2 * sizeof(double) + sizeof(float)) + (hessian ? cols * cols * sizeof(double) : 0);
}

static void stats_free(tern_calib_stats *st) {
    free(st->hessian);
    free(st->sum_sq);
    free(st->sum_abs);
    free(st->max_abs);
    memset(st, 0, sizeof *st);
}

static tern_status stats_alloc(tern_calib_stats *st, size_t cols, int hessian, tern_error *err) {
    memset(st, 0, sizeof *st);
    st->cols = cols;
    st->sum_sq = calloc(cols, sizeof *st->sum_sq);
    st->sum_abs = calloc(cols, sizeof *st->sum_abs);
    st->max_abs = calloc(cols, sizeof *st->max_abs);
    if (hessian && cols <= SIZE_MAX / sizeof(double) / cols)
        st->hessian = calloc(cols * cols, sizeof *st->hessian);
    if (!st->sum_sq || !st->sum_abs || !st->max_abs || (hessian && !st->hessian)) {
        stats_free(st);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for calibration statistics (%zu inputs)",
                         cols);
    }
    return TERN_OK;
}

/* One pass of the data through the session. */
static tern_status run_data(calib_state *c, const calib_data *d, uint32_t n_classes,
                            const tern_calib_options *o, uint64_t *done, uint64_t total,
                            const char *what, tern_error *err) {
    tern_status st = TERN_OK;
    if (d->pixels) {
        float *logits = malloc((size_t)CALIB_IMAGES_PER_CALL * n_classes * sizeof *logits);
        if (!logits) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for logits");
        for (size_t i = 0; i < d->n_images && st == TERN_OK; i += CALIB_IMAGES_PER_CALL) {
            const size_t n = d->n_images - i < CALIB_IMAGES_PER_CALL ? d->n_images - i : CALIB_IMAGES_PER_CALL;
            st = tern_session_classify(c->session, d->pixels + i * d->image_floats, n, logits, err);
            if (o->progress && total) o->progress(o->progress_user, ++*done, total, what);
        }
        free(logits);
        return st;
    }
    for (size_t w = 0; w < d->n_win && st == TERN_OK; w++) {
        if ((st = tern_session_truncate(c->session, 0, err)) != TERN_OK) break;
        st = tern_session_feed(c->session, d->tokens + d->win_start[w],
                               d->win_start[w + 1] - d->win_start[w], NULL, TERN_LOGITS_NONE, err);
        if (o->progress && total) o->progress(o->progress_user, ++*done, total, what);
    }
    return st;
}

tern_calib_linear *tern_calib_find(tern_calib_stage *stage, const char *name) {
    for (size_t i = 0; i < stage->n_linears; i++)
        if (strcmp(stage->linears[i].name, name) == 0) return &stage->linears[i];
    return NULL;
}

static void calib_state_free(calib_state *c) {
    for (size_t g = 0; g < c->n_groups && c->groups; g++) stats_free(&c->groups[g]);
    free(c->groups);
    free(c->active);
    free(c->leader);
    free(c->group_of);
    free(c->linears);
    free(c->index);
    free(c->tensors);
    free(c->xt);
    free(c->stream);
    if (c->session) tern_session_destroy(c->session);
    if (c->model) tern_model_close(c->model);
}

/* Finds the tracked linears with a short run, and indexes them. */
static tern_status calib_discover(calib_state *c, const calib_data *d, uint32_t n_classes,
                                  tern_error *err) {
    const tern_file *f = &c->model->file;
    c->tensors = malloc((f->n_tensors + 1) * sizeof *c->tensors);
    if (!c->tensors) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(f, i, &v);
        if (v.desc.ndim == 2 && v.desc.encoding == TERN_ENC_F32 && v.planes[TERN_PLANE_VALUES])
            c->tensors[c->n_tensors++] = (calib_entry){v.planes[TERN_PLANE_VALUES], i};
    }
    qsort(c->tensors, c->n_tensors, sizeof *c->tensors, cmp_entry);
    calib_data small = *d;
    size_t win[2] = {0, 0};
    if (d->pixels) {
        small.n_images = 1;
    } else {
        win[1] = d->win_start[1] - d->win_start[0] < 8 ? d->win_start[1] - d->win_start[0] : 8;
        small.win_start = win;
        small.n_win = 1;
    }
    c->discovering = 1;
    tern_calib_options quiet;
    memset(&quiet, 0, sizeof quiet);
    uint64_t done = 0;
    /* A window over every block counts the stream's rows per unit. */
    memset(&c->window, 0, sizeof c->window);
    c->window.end = UINT32_MAX;
    c->session->window = &c->window;
    tern_status st = run_data(c, &small, n_classes, &quiet, &done, 0, NULL, err);
    c->session->window = NULL;
    c->rows_per_unit = c->window.cursor / (d->pixels ? 1 : win[1]);
    c->discovering = 0;
    if (st != TERN_OK) return st;
    if (c->failed) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory finding the linear layers");
    if (c->n_linears == 0)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "the model has no float linear layer to calibrate");
    for (size_t i = 1; i < c->n_linears; i++)
        if (c->linears[i].stage < c->linears[i - 1].stage)
            return tern_fail(err, TERN_ERR_INTERNAL,
                             "%s runs after %s: calibration expects blocks in order",
                             c->linears[i].name, c->linears[i - 1].name);
    c->index = malloc(c->n_linears * sizeof *c->index);
    c->leader = calloc(c->n_linears, 1);
    c->groups = calloc(c->n_groups, sizeof *c->groups);
    c->active = calloc(c->n_groups, 1);
    size_t max_cols = 0;
    for (size_t i = 0; i < c->n_linears; i++) max_cols = c->linears[i].cols > max_cols ? c->linears[i].cols : max_cols;
    c->xt = malloc(max_cols * CALIB_ROWS * sizeof *c->xt);
    c->xt_cols = max_cols;
    if (!c->index || !c->leader || !c->groups || !c->active || !c->xt)
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < c->n_linears; i++) {
        c->index[i] = (calib_entry){c->linears[i].weight, (uint32_t)i};
        c->leader[i] = i == 0 || c->group_of[i] != c->group_of[i - 1];
    }
    qsort(c->index, c->n_linears, sizeof *c->index, cmp_entry);
    c->n_index = c->n_linears;
    return TERN_OK;
}

tern_status tern_calib_run(const char *model_path, const tern_calib_options *o,
                           tern_calib_stage_fn fn, void *user, tern_error *err) {
    calib_state c;
    memset(&c, 0, sizeof c);
    c.need_hessian = o->need_hessian;
    tern_model_options mo;
    tern_model_options_default(&mo);
    mo.float_activations = 1;
    tern_status st = tern_model_open(model_path, &mo, &c.model, err);
    if (st != TERN_OK) return st;
    if (c.model->arch != TERN_ARCH_LLAMA && c.model->arch != TERN_ARCH_VIT) {
        st = tern_fail(err, TERN_ERR_UNSUPPORTED,
                       "calibration methods support Llama-family and ViT models; this one is %s "
                       "(use --method rtn)",
                       c.model->arch_name);
        calib_state_free(&c);
        return st;
    }
    const uint32_t max_tokens = o->max_tokens ? o->max_tokens : TERN_CALIB_DEFAULT_TOKENS;
    calib_data d;
    memset(&d, 0, sizeof d);
    size_t window = TERN_CALIB_WINDOW < c.model->n_ctx ? TERN_CALIB_WINDOW : c.model->n_ctx;
    if (c.model->arch == TERN_ARCH_VIT) {
        st = load_images(c.model, o->data_path, max_tokens,
                         o->image_views ? o->image_views : TERN_CALIB_IMAGE_VIEWS, &d, err);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        st = load_tokens(c.model, o->data_path, max_tokens, &ids, &n, err);
        tern_model_info info;
        tern_model_get_info(c.model, &info);
        if (st == TERN_OK)
            st = make_windows(ids, n, window, info.adds_bos ? info.bos_token : -1, &d, err);
        free(ids);
    }
    if (st == TERN_OK) {
        tern_session_options so;
        tern_session_options_default(&so);
        so.n_threads = o->n_threads;
        if (c.model->arch == TERN_ARCH_LLAMA) so.n_ctx = (uint32_t)window;
        if ((st = tern_session_create(c.model, &so, &c.session, err)) == TERN_OK) {
            c.session->on_linear = observe;
            c.session->on_linear_user = &c;
        }
    }
    const uint32_t n_classes = c.model->n_vocab;
    if (st == TERN_OK) st = calib_discover(&c, &d, n_classes, err);
    size_t first = 0; /* the first linear of a calibrated stage */
    while (st == TERN_OK && first < c.n_linears && c.linears[first].stage < o->first_stage) first++;

    /* Stages in passes. */
    const uint32_t n_stages = st == TERN_OK ? c.linears[c.n_linears - 1].stage + 1 : 0;
    const size_t budget = o->memory_budget ? o->memory_budget : CALIB_DEFAULT_BUDGET;
    const uint64_t units = d.pixels ? (d.n_images + CALIB_IMAGES_PER_CALL - 1) / CALIB_IMAGES_PER_CALL : d.n_win;
    /* Count the passes first, for the progress total. */
    uint64_t n_passes = 0;
    for (size_t i = first; st == TERN_OK && i < c.n_linears;) {
        size_t j = i, bytes = 0;
        while (j < c.n_linears) {
            const uint32_t s = c.linears[j].stage;
            size_t k = j, sb = 0;
            for (; k < c.n_linears && c.linears[k].stage == s; k++)
                if (c.leader[k]) sb += stats_bytes(c.linears[k].cols, o->need_hessian);
            if (j > i && (o->sequential || bytes + sb > budget)) break;
            bytes += sb;
            j = k;
        }
        n_passes++;
        i = j;
    }
    /* The stream between passes, when it fits the budget. */
    c.stream_block = -1;
    if (st == TERN_OK && !o->full_passes) {
        const size_t units_rows = d.pixels ? d.n_images : d.win_start[d.n_win];
        const size_t floats = units_rows * c.rows_per_unit * c.model->d_model;
        if (c.rows_per_unit && floats <= budget / sizeof(float)) c.stream = malloc(floats * sizeof(float));
    }
    uint64_t done = 0;
    const uint64_t total = n_passes * units;
    for (size_t i = first; st == TERN_OK && i < c.n_linears;) {
        /* Linears [i, j) of whole stages are this pass's. */
        size_t j = i, bytes = 0;
        while (j < c.n_linears) {
            const uint32_t s = c.linears[j].stage;
            size_t k = j, sb = 0;
            for (; k < c.n_linears && c.linears[k].stage == s; k++)
                if (c.leader[k]) sb += stats_bytes(c.linears[k].cols, o->need_hessian);
            if (j > i && (o->sequential || bytes + sb > budget)) break;
            bytes += sb;
            j = k;
        }
        for (size_t k = i; k < j && st == TERN_OK; k++) {
            if (!c.leader[k]) continue;
            const uint32_t g = c.group_of[k];
            st = stats_alloc(&c.groups[g], c.linears[k].cols, o->need_hessian, err);
            c.active[g] = st == TERN_OK;
        }
        char what[64];
        if (c.linears[j - 1].stage == c.linears[i].stage)
            snprintf(what, sizeof what, "calibrating stage %u of %u", c.linears[i].stage, n_stages - 1);
        else
            snprintf(what, sizeof what, "calibrating stages %u-%u of %u", c.linears[i].stage,
                     c.linears[j - 1].stage, n_stages - 1);
        /* Stage s is block s - 1 (stage 0: before the blocks). A sequential
         * pass runs from the stream entering the previous pass's block
         * (replaced by now) and keeps the stream entering its own, which
         * its callback replaces next; otherwise the stream at the end. */
        tern_block_window *w = &c.window;
        const uint32_t s0 = c.linears[i].stage, s1 = c.linears[j - 1].stage;
        if (c.stream) {
            memset(w, 0, sizeof *w);
            w->resume = s0 >= 1 && c.stream_block >= 0 ? c.stream : NULL;
            w->begin = w->resume ? (uint32_t)c.stream_block : 0;
            w->end = s1;
            w->save = !o->sequential || s0 >= 1 ? c.stream : NULL;
            w->save_at = o->sequential ? s0 - 1 : s1;
            if (w->save && w->save_at < w->begin) w->save = NULL;
            c.session->window = w;
        }
        if (st == TERN_OK) st = run_data(&c, &d, n_classes, o, &done, total, what, err);
        c.session->window = NULL;
        if (st == TERN_OK && c.failed) st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory calibrating");
        for (size_t k = i; k < j; k++) {
            tern_calib_stats *gs = &c.groups[c.group_of[k]];
            if (c.leader[k] && gs->hessian) /* mirror the upper half */
                for (size_t a = 0; a < gs->cols; a++)
                    for (size_t b = a + 1; b < gs->cols; b++) gs->hessian[b * gs->cols + a] = gs->hessian[a * gs->cols + b];
            c.linears[k].stats = gs;
        }
        /* The callbacks, stage by stage. */
        for (size_t k = i; k < j && st == TERN_OK;) {
            size_t e = k;
            while (e < j && c.linears[e].stage == c.linears[k].stage) e++;
            tern_calib_stage stage = {c.linears[k].stage, n_stages, &c.model->file, c.model->arch,
                                      c.session->pool, c.linears + k, e - k};
            st = fn(user, &stage, err);
            k = e;
        }
        if (c.stream) {
            c.stream_block = w->save ? (int64_t)w->save_at : -1;
            /* A stream saved after the pass's blocks predates their replacements. */
            for (size_t k = i; k < j && !o->sequential; k++)
                if (c.linears[k].has_replacement) c.stream_block = -1;
        }
        for (size_t k = i; k < j; k++) {
            c.linears[k].stats = NULL;
            if (c.leader[k]) {
                stats_free(&c.groups[c.group_of[k]]);
                c.active[c.group_of[k]] = 0;
            }
        }
        i = j;
    }
    calib_data_free(&d);
    calib_state_free(&c);
    return st;
}

/* ---- Results ------------------------------------------------------------------- */

tern_calib_tensor *tern_calib_result_find(const tern_calib_result *r, const char *name) {
    for (size_t i = 0; r && i < r->n; i++)
        if (strcmp(r->tensors[i].name, name) == 0) return &r->tensors[i];
    return NULL;
}

tern_calib_tensor *tern_calib_result_get(tern_calib_result *r, const char *name, uint64_t rows,
                                         uint64_t cols) {
    tern_calib_tensor *t = tern_calib_result_find(r, name);
    if (t) return t;
    if (r->n == r->cap) {
        const size_t cap = r->cap ? 2 * r->cap : 64;
        tern_calib_tensor *grown = realloc(r->tensors, cap * sizeof *grown);
        if (!grown) return NULL;
        r->tensors = grown;
        r->cap = cap;
    }
    t = &r->tensors[r->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    return t;
}

void tern_calib_result_free(tern_calib_result *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        tern_calib_tensor *t = &r->tensors[i];
        free(t->col_scale);
        free(t->row_div);
        free(t->clip);
        free(t->dequant);
        for (int p = 0; p < TERN_PLANE_COUNT; p++) free(t->planes[p]);
    }
    free(r->tensors);
    free(r);
}

static tern_status ones(float **v, uint64_t n, tern_error *err) {
    if (*v) return TERN_OK;
    *v = malloc((size_t)(n ? n : 1) * sizeof **v);
    if (!*v) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for scales");
    for (uint64_t i = 0; i < n; i++) (*v)[i] = 1.0f;
    return TERN_OK;
}

tern_status tern_calib_scale_cols(tern_calib_tensor *t, const float *s, tern_error *err) {
    tern_status st = ones(&t->col_scale, t->cols, err);
    for (uint64_t i = 0; st == TERN_OK && i < t->cols; i++) t->col_scale[i] *= s[i];
    return st;
}

tern_status tern_calib_div_rows(tern_calib_tensor *t, const float *s, tern_error *err) {
    tern_status st = ones(&t->row_div, t->rows, err);
    for (uint64_t i = 0; st == TERN_OK && i < t->rows; i++) t->row_div[i] *= s[i];
    return st;
}

void tern_calib_tensor_apply_row(const tern_calib_tensor *t, size_t r, const float *w, float *out) {
    const size_t cols = (size_t)t->cols;
    const float div = t->row_div ? t->row_div[r] : 1.0f;
    for (size_t c = 0; c < cols; c++)
        out[c] = (t->col_scale ? w[c] * t->col_scale[c] : w[c]) / div;
    if (t->clip) {
        const size_t g = t->clip_group, ng = cols / g;
        for (size_t k = 0; k < ng; k++) {
            const float m = t->clip[r * ng + k];
            for (size_t c = k * g; c < (k + 1) * g; c++) out[c] = out[c] > m ? m : out[c] < -m ? -m : out[c];
        }
    }
}

/* ---- The conversion driver ------------------------------------------------------ */

int tern_calib_target(const tern_convert_ctx *ctx, const char *name, size_t cols,
                      tern_quant_params *qp) {
    uint32_t group = 0;
    const tern_encoding enc =
        tern_convert_tensor_encoding(ctx, name, 2, cols, tern_convert_encoding(ctx, 2), &group);
    if (!((enc == TERN_ENC_Q8 || enc == TERN_ENC_Q4) && group)) return 0;
    qp->encoding = enc;
    qp->group_size = group;
    qp->asymmetric = ctx->asymmetric;
    qp->clip_search = ctx->clip_search;
    return 1;
}

typedef struct {
    tern_progress_fn fn;
    void *user;
    const char *prefix;
    char what[160];
} progress_prefix;

static void prefixed_progress(void *user, uint64_t done, uint64_t total, const char *what) {
    progress_prefix *p = user;
    snprintf(p->what, sizeof p->what, "%s%s", p->prefix, what ? what : "");
    p->fn(p->user, done, total, p->what);
}

/* ---- Pruning (Wanda, SparseGPT; docs/sparsity.md) ------------------------------ */

/* Whether the conversion packs linear L N:M sparse (the test of
 * tern_convert_add_f32_tensor, for a matrix inside the model). */
static int prune_selects(const tern_convert_ctx *ctx, const tern_calib_linear *L) {
    return ctx->prune && ctx->sparse_m && L->cols % ctx->sparse_m == 0 &&
           tern_sparse_selects(ctx->sparse_layers, L->name);
}

/* The dense F32 matrix of packed sparse planes: each row's kept values
 * decoded as a dense row of `stored` columns (format 7.3), scattered by INDEX. */
static tern_status sparse_decode(const tern_tensor_desc *d, void *const planes[TERN_PLANE_COUNT],
                                 float *out, tern_error *err) {
    const size_t rows = (size_t)d->dims[0], cols = (size_t)d->dims[1];
    const unsigned n = d->sparse_n, m = d->sparse_m;
    const size_t stored = cols / m * n;
    float *kept = malloc(stored * sizeof *kept);
    if (!kept) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory decoding a sparse tensor");
    tern_weight v;
    memset(&v, 0, sizeof v);
    v.encoding = d->encoding;
    v.layout = TERN_LAYOUT_ROW_MAJOR;
    v.rows = rows;
    v.cols = stored;
    v.values = planes[TERN_PLANE_VALUES];
    v.scales = planes[TERN_PLANE_SCALES];
    v.zeros = planes[TERN_PLANE_ZEROS];
    v.group_size = d->group_size;
    v.flags = d->flags;
    for (size_t r = 0; r < rows; r++) {
        tern_weight_row_f32(&v, r, kept);
        float *o = out + r * cols;
        memset(o, 0, cols * sizeof *o);
        for (size_t k = 0; k < stored; k++)
            o[k / n * m + tern_sparse_index_get(planes[TERN_PLANE_INDEX], cols, n, m, r, k)] = kept[k];
    }
    free(kept);
    return TERN_OK;
}

/* Prunes linear L with the conversion's method into packed planes (the
 * tensor's record in the result) and makes the pruned matrix, as the file
 * will hold it, L's replacement for the later stages. */
static tern_status prune_linear(const tern_calib_method *meth, tern_calib_linear *L,
                                pthreadpool_t pool, tern_error *err) {
    const tern_convert_ctx *ctx = meth->ctx;
    const size_t rows = L->rows, cols = L->cols;
    const unsigned n = ctx->sparse_n, m = ctx->sparse_m;
    tern_calib_tensor *t = tern_calib_result_get(meth->result, L->name, rows, cols);
    if (!t) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    tern_tensor_desc *d = &t->desc;
    tern_convert_sparse_desc(ctx, rows, cols, d);
    uint64_t sizes[TERN_PLANE_COUNT];
    if (tern_tensor_plane_sizes(d, sizes) != 0)
        return tern_fail(err, TERN_ERR_INTERNAL, "%s: inconsistent sparse description", L->name);
    for (int p = 0; p < TERN_PLANE_COUNT; p++)
        if (sizes[p] && !(t->planes[p] = malloc((size_t)sizes[p])))
            return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", L->name);
    float *w = malloc(rows * cols * sizeof *w);
    float *x_norm = NULL;
    uint16_t *fixed_scales = NULL;
    uint8_t *fixed_zeros = NULL;
    tern_status st = TERN_OK;
    if (!w) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", L->name);
    memcpy(w, L->weight, rows * cols * sizeof *w);
    const int quantised = d->encoding == TERN_ENC_Q8 || d->encoding == TERN_ENC_Q4;
    switch (ctx->prune) {
    case TERN_PRUNE_WANDA:
        if (!(x_norm = malloc(cols * sizeof *x_norm))) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", L->name);
            break;
        }
        for (size_t c = 0; c < cols; c++) x_norm[c] = (float)sqrt(L->stats->sum_sq[c]);
        st = tern_prune_wanda(w, rows, cols, x_norm, n, m, err);
        break;
    case TERN_PRUNE_SPARSEGPT: {
        /* With Q8/Q4 values the kept weights are quantised inside the pruning
         * loop, so later columns compensate the rounding too. */
        tern_sparse_rtn q;
        memset(&q, 0, sizeof q);
        if (quantised) {
            const size_t ng = rows * (cols / m * n / d->group_size);
            q.params.encoding = d->encoding;
            q.params.group_size = d->group_size;
            q.params.asymmetric = (d->flags & TERN_TENSOR_HAS_ZERO_POINT) != 0;
            q.params.clip_search = ctx->clip_search;
            q.n = n;
            q.m = m;
            q.scales = fixed_scales = malloc(ng * sizeof *fixed_scales);
            q.zeros = fixed_zeros = calloc(ng, sizeof *fixed_zeros);
            if (!fixed_scales || !fixed_zeros) {
                st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %s", L->name);
                break;
            }
        }
        st = tern_prune_sparsegpt(w, rows, cols, L->stats->hessian, n, m, 0, TERN_SPARSEGPT_PERCDAMP,
                                  quantised ? tern_sparse_rtn_quantize : NULL, &q, pool, err);
        break;
    }
    default:
        st = tern_prune_magnitude(w, rows, cols, n, m, err);
    }
    if (st == TERN_OK)
        st = tern_sparse_pack(d, w, ctx->clip_search, fixed_scales,
                              (d->flags & TERN_TENSOR_HAS_ZERO_POINT) ? fixed_zeros : NULL,
                              t->planes[TERN_PLANE_VALUES], t->planes[TERN_PLANE_SCALES],
                              t->planes[TERN_PLANE_ZEROS], t->planes[TERN_PLANE_INDEX], err);
    free(x_norm);
    free(fixed_scales);
    free(fixed_zeros);
    if (st == TERN_OK) st = sparse_decode(d, t->planes, w, err);
    if (st != TERN_OK) {
        free(w);
        return tern_fail_context(err, st, "pruning %s", L->name);
    }
    t->has_planes = 1;
    free(t->dequant);
    t->dequant = w;
    tern_weight *r = &L->replacement;
    memset(r, 0, sizeof *r);
    r->encoding = TERN_ENC_F32;
    r->layout = TERN_LAYOUT_ROW_MAJOR;
    r->rows = rows;
    r->cols = cols;
    r->values = w;
    L->has_replacement = 1;
    return TERN_OK;
}

/* What prune_calib_stage gets as user. */
typedef struct {
    tern_calib_method *meth;
    tern_calib_stage_fn then; /* the --method for the layers left dense, or NULL (RTN) */
} prune_calib;

/* tern_calib_stage_fn: prunes the selected linears of the stage; the others
 * go to the quantisation method's own callback. */
static tern_status prune_calib_stage(void *user, tern_calib_stage *stage, tern_error *err) {
    prune_calib *pc = user;
    const tern_convert_ctx *ctx = pc->meth->ctx;
    tern_status st = TERN_OK;
    size_t n_dense = 0;
    for (size_t i = 0; i < stage->n_linears; i++) n_dense += !prune_selects(ctx, &stage->linears[i]);
    if (pc->then && n_dense) {
        tern_calib_linear *dense = malloc(n_dense * sizeof *dense);
        if (!dense) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        size_t k = 0;
        for (size_t i = 0; i < stage->n_linears; i++)
            if (!prune_selects(ctx, &stage->linears[i])) dense[k++] = stage->linears[i];
        tern_calib_stage sub = *stage;
        sub.linears = dense;
        sub.n_linears = n_dense;
        st = pc->then(pc->meth, &sub, err);
        k = 0;
        for (size_t i = 0; i < stage->n_linears; i++)
            if (!prune_selects(ctx, &stage->linears[i])) {
                stage->linears[i].replacement = dense[k].replacement;
                stage->linears[i].has_replacement = dense[k].has_replacement;
                k++;
            }
        free(dense);
    }
    for (size_t i = 0; i < stage->n_linears && st == TERN_OK; i++)
        if (prune_selects(ctx, &stage->linears[i])) st = prune_linear(pc->meth, &stage->linears[i], stage->pool, err);
    return st;
}

/* ---- Temporary float copies ------------------------------------------------------ */

/* "<dst>.calib-PID.tern" holds the float model while a conversion
 * calibrates; its writer's "<dst>.calib-PID.tern.tmp.XXXXXX" precedes it. A
 * conversion killed outright leaves them behind: the next conversion of the
 * same dst removes those whose process is gone (kill(PID, 0) fails with
 * ESRCH) and which nobody holds an flock on (a live conversion keeps one on
 * its copy, tern_writer one on its temporary file). Best effort, as the
 * writer's own cleaning. */
static void calib_remove_stale(const char *dst_path) {
    const char *slash = strrchr(dst_path, '/');
    const char *base = slash ? slash + 1 : dst_path;
    const size_t base_len = strlen(base);
    char dir[4096];
    const size_t dir_len = !slash ? 0 : slash == dst_path ? 1 : (size_t)(slash - dst_path);
    if (dir_len >= sizeof dir) return;
    if (dir_len == 0) strcpy(dir, ".");
    else memcpy(dir, dst_path, dir_len), dir[dir_len] = '\0';
    DIR *d = opendir(dir);
    if (!d) return;
    static const char mark[] = ".calib-";
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, mark, sizeof mark - 1) != 0)
            continue;
        const char *p = name + base_len + sizeof mark - 1, *digits = p;
        long pid = 0;
        while (*p >= '0' && *p <= '9' && pid < 1L << 30) pid = pid * 10 + (*p++ - '0');
        if (p == digits || pid <= 0 || strncmp(p, ".tern", 5) != 0) continue;
        p += 5;
        if (*p && !(strncmp(p, ".tmp.", 5) == 0 && strlen(p + 5) == 6)) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        int fd = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st, now;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            fstatat(dirfd(d), name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st.st_dev &&
            now.st_ino == st.st_ino)
            unlinkat(dirfd(d), name, 0);
        close(fd);
    }
    closedir(d);
}

tern_status tern_calib_prepare(const tern_importer *imp, const tern_convert_ctx *ctx,
                               const tern_convert_options *opts, const char *dst_path,
                               tern_calib_result **out, tern_error *err) {
    *out = NULL;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.calib-%ld.tern", dst_path, (long)getpid()) >= sizeof tmp)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "destination path too long");
    calib_remove_stale(dst_path);
    /* The float model, exactly as the importer reads the source. */
    tern_convert_ctx fc = *ctx;
    fc.writer = NULL;
    fc.weights = TERN_WEIGHTS_F32;
    fc.embed = TERN_IO_F32;
    fc.output = TERN_IO_F32;
    fc.prune = 0;
    fc.tensor_hook = NULL;
    fc.done_bytes = fc.total_bytes = 0;
    progress_prefix pp = {ctx->progress, ctx->progress_user, "float copy: ", {0}};
    if (ctx->progress) {
        fc.progress = prefixed_progress;
        fc.progress_user = &pp;
    }
    tern_status st = tern_convert_import(imp, &fc, tmp, err);
    if (st != TERN_OK) return tern_fail_context(err, st, "writing the float model for calibration");
    /* The lock tells other conversions' calib_remove_stale that the copy is alive. */
    const int lock_fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (lock_fd >= 0) (void)flock(lock_fd, LOCK_EX | LOCK_NB);

    tern_calib_result *r = calloc(1, sizeof *r);
    if (!r) {
        unlink(tmp);
        if (lock_fd >= 0) close(lock_fd);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
    }
    tern_calib_method meth = {ctx, r, opts->act_order};
    tern_calib_options co;
    memset(&co, 0, sizeof co);
    co.data_path = opts->calib_path;
    co.max_tokens = opts->calib_tokens;
    co.image_views = opts->calib_views;
    co.progress = ctx->progress;
    co.progress_user = ctx->progress_user;
    co.first_stage = 1; /* the methods work on the blocks (gptq.c, awq.c say why) */
    /* A tiny model's operations last microseconds: worker threads would
     * spend the passes spinning between them (stories260K: 95 % of the time). */
    struct stat fst;
    co.n_threads = opts->n_threads;
    if (stat(tmp, &fst) == 0 && fst.st_size < (8 << 20)) co.n_threads = 1;
    tern_calib_stage_fn fn = NULL;
    void *user = &meth;
    switch (opts->method) {
    case TERN_METHOD_RTN:
        break; /* pruning alone: prune_calib_stage below */
    case TERN_METHOD_GPTQ:
        co.need_hessian = 1;
        co.sequential = 1;
        fn = tern_gptq_calib_stage;
        break;
    case TERN_METHOD_AWQ:
        co.need_hessian = 1;
        fn = tern_awq_calib_stage;
        break;
    case TERN_METHOD_SMOOTHQUANT:
        fn = tern_smoothquant_calib_stage;
        break;
    default:
        st = tern_fail(err, TERN_ERR_INVALID_ARG, "method %u needs no calibration", opts->method);
    }
    /* Pruning: every selected linear, stage by stage; the later stages see
     * the pruned (and quantised) earlier ones, as in the SparseGPT paper. */
    prune_calib pc = {&meth, fn};
    if (st == TERN_OK && ctx->prune) {
        co.sequential = 1;
        if (ctx->prune == TERN_PRUNE_SPARSEGPT) co.need_hessian = 1;
        fn = prune_calib_stage;
        user = &pc;
    }
    if (st == TERN_OK && !fn)
        st = tern_fail(err, TERN_ERR_INVALID_ARG, "nothing to calibrate (no method, no pruning)");
    if (st == TERN_OK) st = tern_calib_run(tmp, &co, fn, user, err);
    unlink(tmp);
    if (lock_fd >= 0) close(lock_fd);
    for (size_t i = 0; i < r->n; i++) { /* replacements served their purpose */
        free(r->tensors[i].dequant);
        r->tensors[i].dequant = NULL;
    }
    if (st != TERN_OK) {
        tern_calib_result_free(r);
        return tern_fail_context(err, st, "calibrating on %s", opts->calib_path);
    }
    *out = r;
    return TERN_OK;
}

tern_status tern_calib_tensor_hook(void *user, tern_convert_ctx *ctx, const char *name,
                                   uint32_t ndim, const uint64_t *dims, float *buf,
                                   uint64_t src_bytes, int *done, tern_error *err) {
    const tern_calib_tensor *t = tern_calib_result_find(user, name);
    *done = 0;
    if (!t) return TERN_OK;
    const uint64_t rows = dims[0], cols = ndim == 2 ? dims[1] : 1;
    if (ndim > 2 || rows != t->rows || cols != t->cols)
        return tern_fail(err, TERN_ERR_INTERNAL,
                         "tensor %s changed shape between calibration and conversion", name);
    if (t->has_planes) {
        *done = 1;
        const void *planes[TERN_PLANE_COUNT] = {t->planes[0], t->planes[1], t->planes[2], t->planes[3]};
        return tern_convert_add_planes(ctx, name, &t->desc, planes, src_bytes, err);
    }
    if (ndim == 1) {
        for (uint64_t i = 0; t->row_div && i < rows; i++) buf[i] /= t->row_div[i];
        return TERN_OK;
    }
    float *row = malloc((size_t)cols * sizeof *row);
    if (!row) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory folding %s", name);
    for (uint64_t r = 0; r < rows; r++) {
        tern_calib_tensor_apply_row(t, (size_t)r, buf + r * cols, row);
        memcpy(buf + r * cols, row, (size_t)cols * sizeof *row);
    }
    free(row);
    return TERN_OK;
}
