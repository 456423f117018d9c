/* Runtime internals: the model and session objects behind the opaque handles,
 * and the per-architecture interface every model family implements. */
#ifndef TERN_RUNTIME_INTERNAL_H
#define TERN_RUNTIME_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/tern_file.h"
#include "kernels/kernels.h"
#include "runtime/pool.h" /* pthreadpool.h, annotated under TSan */
#include "runtime/tokenizer.h"
#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tern_arch_ops tern_arch_ops;

struct tern_model {
    tern_file file;
    tern_kernels kernels;
    tern_arch arch;
    char arch_name[32];
    char name[128];
    uint32_t n_vocab;
    uint32_t n_ctx;
    uint32_t n_layer;
    uint32_t d_model;
    int32_t bos_token;
    int32_t eos_token;
    const tern_arch_ops *ops;
    const char *labels_key; /* metadata key of the class labels, or NULL */
    tern_tokenizer *tokenizer; /* NULL when the file has none */
    int int8_activations; /* Q8/Q4 linear layers take INT8-quantised activations */
    size_t qa_max_cols;   /* widest Q8/Q4 weight (columns): sizes the sessions' buffers */
    void *impl; /* the family's weights and hyper-parameters */
};

/* Activations quantised for the integer linear kernels: rows of up to
 * qa_max_cols values, TERN_QA_ROWS rows at a time. */
#define TERN_QA_ROWS 64
typedef struct tern_qa_buffer {
    int8_t *q;  /* [TERN_QA_ROWS][qa_max_cols] */
    float *d;   /* [TERN_QA_ROWS][qa_max_cols / 32] */
    int32_t *s; /* [TERN_QA_ROWS][qa_max_cols / 32] */
} tern_qa_buffer;

/* Observer of every linear layer a session runs (converter/calib.c): called
 * by tern_parallel_linear before the product with its input rows; returns a
 * weight to multiply by instead of w (same shape), or NULL to keep w. */
typedef const tern_weight *(*tern_linear_observer_fn)(void *user, const tern_weight *w,
                                                      const float *x, size_t m, size_t ldx);

/* A part of the blocks of a Llama-family or ViT forward (converter/calib.c
 * runs a model a block or two at a time): the residual stream entering a
 * block is read from `resume` or saved to `save`, rows in the order they are
 * fed (a token each; ViT: every token of every image). */
typedef struct tern_block_window {
    const float *resume; /* non-NULL: no embedding; the stream entering block `begin` */
    uint32_t begin;      /* with resume: the first block run */
    uint32_t end;        /* blocks < end run; below n_layer, the forward stops there (no logits) */
    float *save;         /* non-NULL: the stream entering block save_at (<= end) is copied here */
    uint32_t save_at;
    size_t cursor;       /* rows read or saved so far; the caller resets it */
} tern_block_window;

struct tern_session {
    tern_model *model;
    tern_linear_observer_fn on_linear; /* NULL: none (the normal case) */
    void *on_linear_user;
    tern_block_window *window;         /* NULL: the whole model (the normal case) */
    pthreadpool_t pool; /* NULL: run on the calling thread */
    uint32_t n_threads;
    uint32_t n_ctx;
    uint32_t max_batch;
    uint32_t n_pos;
    uint8_t kv_type;     /* tern_kv_type of the attention cache (options.kv_cache) */
    size_t state_bytes;  /* bytes session_init allocated for caches and scratch */
    tern_qa_buffer qa; /* empty when the model has no integer linear layers */
    void *state; /* the family's caches and scratch buffers */
};

/* What a model family provides. forward() is called with 1 <= n <= max_batch
 * tokens that are already range-checked and fit in the context; it must not
 * fail after it has changed the session's state. */
struct tern_arch_ops {
    const char *name;
    tern_status (*load)(tern_model *model, tern_error *err);
    void (*unload)(tern_model *model);
    tern_status (*session_init)(tern_session *session, tern_error *err);
    void (*session_free)(tern_session *session);
    /* logits: n rows (TERN_LOGITS_ALL), 1 row (LAST) or NULL (NONE). */
    void (*forward)(tern_session *session, const int32_t *tokens, size_t n, float *logits,
                    tern_logits_mode mode);
    /* Keeps positions [0, n_keep); families without a cache of positions
     * reject anything but 0 and the current position. */
    tern_status (*truncate)(tern_session *session, uint32_t n_keep, tern_error *err);
    /* Vision models (forward and truncate NULL): n images in, logits out.
     * pixels are already checked for size by the caller. */
    tern_status (*classify)(tern_session *session, const float *pixels, size_t n, float *logits,
                            tern_error *err);
    /* Vision models: the input the model expects. */
    tern_status (*image_config)(const tern_model *model, tern_image_config *out);
};

extern const tern_arch_ops tern_llama_ops;
extern const tern_arch_ops tern_mamba_ops;
extern const tern_arch_ops tern_rwkv4_ops;
extern const tern_arch_ops tern_vit_ops;

/* The tokenizer stored in a file's tokenizer.* metadata; *out stays NULL when
 * the file has none. */
tern_status tern_tokenizer_from_file(const tern_file *file, tern_tokenizer **out, tern_error *err);

/* ---- Helpers shared by the families (runtime/weights.c, runtime/parallel.c) */

/* Starts the blocks of a forward of s: [*first, *end) are the blocks to run
 * (all without a window). Returns 1 when the window resumes a stream: its
 * rows are copied into x (rows x width) and the embedding is skipped. */
static inline int tern_window_begin(const tern_session *s, uint32_t n_layer, float *x, size_t rows, size_t width,
                                    uint32_t *first, uint32_t *end) {
    const tern_block_window *w = s->window;
    *first = w && w->resume ? w->begin : 0;
    *end = w && w->end < n_layer ? w->end : n_layer;
    if (!w || !w->resume) return 0;
    memcpy(x, w->resume + w->cursor * width, rows * width * sizeof *x);
    return 1;
}

/* Copies the stream x (rows x width) into the window's save rows when it
 * enters block `block` and that is the block to save. */
static inline void tern_window_save(const tern_session *s, uint32_t block, const float *x, size_t rows,
                                    size_t width) {
    const tern_block_window *w = s->window;
    if (w && w->save && w->save_at == block && !(w->resume == w->save && w->begin == block))
        memcpy(w->save + w->cursor * width, x, rows * width * sizeof *x);
}

/* After the blocks [.., end) of a forward of s: saves the stream leaving
 * them if the window asks, moves its cursor past these rows; returns 1 when
 * the forward stops here (end below n_layer: no output layer, no logits). */
static inline int tern_window_end(tern_session *s, uint32_t n_layer, uint32_t end, const float *x, size_t rows,
                                  size_t width) {
    if (!s->window) return 0;
    tern_window_save(s, end, x, rows, width);
    s->window->cursor += rows;
    return end < n_layer;
}

/* Binds a 2-D weight [rows][cols] named `name`, checking its shape and that the
 * kernel table has a linear kernel for its encoding. */
tern_status tern_bind_weight(const tern_model *model, const char *name, size_t rows, size_t cols,
                             tern_weight *out, tern_error *err);
/* Binds a 1-D F32 vector of n floats; `optional` allows it to be absent (*out = NULL). */
tern_status tern_bind_vector(const tern_model *model, const char *name, size_t n, int optional,
                             const float **out, tern_error *err);
/* A 2-D F32 matrix [rows][cols] (small per-layer tables such as Mamba's A). */
tern_status tern_bind_matrix_f32(const tern_model *model, const char *name, size_t rows,
                                 size_t cols, const float **out, tern_error *err);
/* A u32 metadata value that must lie in [lo, hi]. */
tern_status tern_meta_u32_range(const tern_model *model, const char *key, uint32_t *out,
                                uint32_t lo, uint32_t hi, tern_error *err);
/* calloc of a * b * c floats with overflow checks; sets *failed on failure. */
float *tern_alloc_floats(size_t a, size_t b, size_t c, int *failed);
/* Dequantises row r of a weight into out[cols] (embedding lookups): F32,
 * F16, BF16 and dense row-major Q8/Q4 (zero points and mins included). */
void tern_weight_row_f32(const tern_weight *w, size_t r, float *out);
/* 1 when tern_weight_row_f32 can read w's rows (checked when binding an embedding). */
int tern_weight_rows_readable(const tern_weight *w);
/* Whether a tensor named `name` exists. */
int tern_model_has_tensor(const tern_model *model, const char *name);

/* y[m][rows] = x[m][cols] W^T + bias over the session's threads; the split
 * is by output rows, so results do not depend on the thread count. */
void tern_parallel_linear(const tern_session *s, size_t m, const float *x, size_t ldx,
                          const tern_weight *w, const float *bias, float *y, size_t ldy);
/* attention for tokens [0, n) (token t sees keys [0, kv_base + t + 1)) over
 * the session's threads; args->q/out advance by q_stride per token. */
void tern_parallel_attention(const tern_session *s, const tern_attention_args *proto, size_t n,
                             size_t kv_base, size_t q_stride);

#ifdef __cplusplus
}
#endif
#endif
