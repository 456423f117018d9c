/*
 * tern: inference runtime for compressed Transformer-family models on edge CPUs.
 *
 * This is the only header a user includes. Every object is an opaque handle;
 * every fallible call returns a tern_status and, when `err` is not NULL, fills
 * it with a human-readable message. The library never exits the process and
 * keeps no global mutable state: two sessions on one model may run on two
 * threads at once.
 *
 *   tern_model_options mo;  tern_model_options_default(&mo);
 *   tern_model *model;      tern_model_open("m.tern", &mo, &model, &err);
 *   tern_session_options so; tern_session_options_default(&so);
 *   tern_session *s;        tern_session_create(model, &so, &s, &err);
 *   tern_session_feed(s, prompt, n_prompt, logits, TERN_LOGITS_LAST, &err);
 *   ... sample, feed one token at a time ...
 *   tern_session_destroy(s); tern_model_close(model);
 */
#ifndef TERN_H
#define TERN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TERN_API __declspec(dllexport)
#else
#define TERN_API __attribute__((visibility("default")))
#endif

#define TERN_VERSION_MAJOR 0
#define TERN_VERSION_MINOR 1

typedef enum tern_status {
    TERN_OK = 0,
    TERN_ERR_INVALID_ARG = -1,  /* a caller-side mistake: NULL handle, bad option */
    TERN_ERR_IO = -2,           /* open/read/write/mmap failed */
    TERN_ERR_FORMAT = -3,       /* a file is malformed, truncated or hostile */
    TERN_ERR_UNSUPPORTED = -4,  /* valid but not handled: unknown arch, encoding */
    TERN_ERR_NO_MEMORY = -5,
    TERN_ERR_CONTEXT_FULL = -6, /* the session has no room for more positions */
    TERN_ERR_OUT_OF_RANGE = -7, /* token id or index outside the model's range */
    TERN_ERR_INTERNAL = -8,
} tern_status;

/* Caller-owned error record: the library writes the status and a message. */
typedef struct tern_error {
    tern_status status;
    char message[496];
} tern_error;

TERN_API const char *tern_status_string(tern_status status);

/* ---- Instruction-set tiers ------------------------------------------------
 * Kernels are chosen once per model from the CPU's features. A mask limits the
 * tiers that may be used (tests, benches, working around a bad CPU). */
typedef enum tern_isa {
    TERN_ISA_REF = 0,          /* plain C, always present */
    TERN_ISA_X86_AVX2 = 1,     /* AVX2 + FMA + F16C */
    TERN_ISA_X86_AVX512 = 2,   /* AVX-512 F/BW/VL/DQ */
    TERN_ISA_X86_AVX512VNNI = 3,
    TERN_ISA_ARM_NEON = 16,    /* ARMv8.0 AdvSIMD */
    TERN_ISA_ARM_DOTPROD = 17, /* ARMv8.2 sdot/udot */
    TERN_ISA_ARM_I8MM = 18,    /* ARMv8.6 smmla */
} tern_isa;

#define TERN_ISA_MASK(isa) (UINT64_C(1) << (unsigned)(isa))
#define TERN_ISA_MASK_ALL (~UINT64_C(0))

TERN_API const char *tern_isa_name(tern_isa isa);
/* Parses "ref", "avx2", "avx512", "avx512vnni", "neon", "dotprod", "i8mm" into
 * the mask of that tier and every tier below it on the same architecture. */
TERN_API tern_status tern_isa_mask_parse(const char *name, uint64_t *mask);
/* The highest tier this CPU supports within `mask`. */
TERN_API tern_isa tern_isa_best(uint64_t mask);

/* ---- Model ---------------------------------------------------------------- */
typedef struct tern_model tern_model;

typedef enum tern_arch {
    TERN_ARCH_UNKNOWN = 0,
    TERN_ARCH_LLAMA = 1, /* Llama, SmolLM, TinyLlama, Qwen2 (q/k/v bias) */
    TERN_ARCH_MAMBA = 2,
    TERN_ARCH_RWKV4 = 3,
    TERN_ARCH_VIT = 4,
} tern_arch;

typedef struct tern_model_options {
    uint32_t struct_size;  /* sizeof(tern_model_options), for ABI growth */
    uint64_t isa_mask;     /* TERN_ISA_MASK_ALL by default */
    int verify_checksums;  /* 1: hash every section, tensor data included */
    /* 1: keep activations in float for Q8/Q4 weights. By default they are
     * quantised to INT8 per 32 values for integer dot products (faster, and
     * bit-identical on every ISA tier). */
    uint8_t float_activations;
    uint8_t reserved[63];
} tern_model_options;

TERN_API void tern_model_options_default(tern_model_options *opts);
TERN_API tern_status tern_model_open(const char *path, const tern_model_options *opts,
                                     tern_model **out, tern_error *err);
TERN_API void tern_model_close(tern_model *model);

typedef struct tern_model_info {
    tern_arch arch;
    const char *arch_name;  /* "llama", "qwen2", ... owned by the model */
    const char *name;       /* model name from the file, may be "" */
    uint32_t n_vocab;       /* logits per position (classes for ViT) */
    uint32_t n_ctx;         /* maximum positions a session can hold */
    uint32_t n_layer;
    uint32_t d_model;
    uint64_t n_params;
    uint64_t weight_bytes;  /* bytes of all tensor data in the file */
    tern_isa isa;           /* the kernel tier chosen at open */
    int32_t bos_token;      /* -1 when the model has none */
    int32_t eos_token;
    int adds_bos;           /* the tokenizer puts BOS in front of a text */
} tern_model_info;

TERN_API tern_status tern_model_get_info(const tern_model *model, tern_model_info *out);

/* ---- Session -------------------------------------------------------------- */
typedef struct tern_session tern_session;

typedef struct tern_session_options {
    uint32_t struct_size;
    uint32_t n_threads;  /* 0: one per performance core */
    uint32_t n_ctx;      /* 0: the model's maximum */
    uint32_t max_batch;  /* largest prefill chunk; 0: 64 */
    uint8_t kv_cache;    /* tern_kv_type of the attention cache; 0: F32 */
    uint8_t reserved[63];
} tern_session_options;

typedef enum tern_kv_type {
    TERN_KV_F32 = 0,
    TERN_KV_F16 = 1,
    TERN_KV_Q8 = 2, /* INT8 with a scale per head and position */
} tern_kv_type;

TERN_API void tern_session_options_default(tern_session_options *opts);
TERN_API tern_status tern_session_create(tern_model *model, const tern_session_options *opts,
                                         tern_session **out, tern_error *err);
TERN_API void tern_session_destroy(tern_session *session);

/* Which positions' logits tern_session_feed writes. */
typedef enum tern_logits_mode {
    TERN_LOGITS_NONE = 0, /* only advance the state */
    TERN_LOGITS_LAST = 1, /* logits[n_vocab] of the last token */
    TERN_LOGITS_ALL = 2,  /* logits[n_tokens][n_vocab] */
} tern_logits_mode;

/* Appends tokens to the session (a prompt, then one at a time). On error the
 * session is left as it was before the call. */
TERN_API tern_status tern_session_feed(tern_session *session, const int32_t *tokens,
                                       size_t n_tokens, float *logits, tern_logits_mode mode,
                                       tern_error *err);
/* Number of positions held (tokens fed so far). */
TERN_API uint32_t tern_session_position(const tern_session *session);
/* Drops positions >= n_keep (0 clears the session). Recurrent models accept
 * only 0 or the current position. */
TERN_API tern_status tern_session_truncate(tern_session *session, uint32_t n_keep,
                                           tern_error *err);

/* ---- Text ------------------------------------------------------------------
 * Models converted with their tokenizer carry it inside the .tern file. */

/* 1 when the model has a tokenizer. */
TERN_API int tern_model_has_tokenizer(const tern_model *model);
/* UTF-8 text -> token ids. add_special: BOS/EOS as the model's tokenizer
 * asks; parse_special: special-token texts in the input (e.g. "<|im_end|>")
 * become those tokens. Writes up to cap ids and sets *n_out to the full
 * count: TERN_ERR_OUT_OF_RANGE when cap was too small. */
TERN_API tern_status tern_model_tokenize(const tern_model *model, const char *text, size_t length,
                                         int add_special, int parse_special, int32_t *out,
                                         size_t cap, size_t *n_out, tern_error *err);
/* 1 for tokens that end generation (EOS, EOT, EOM). */
TERN_API int tern_model_is_eog(const tern_model *model, int32_t token);
/* The id of a token's exact text, or -1. */
TERN_API int32_t tern_model_token_id(const tern_model *model, const char *text, size_t length);
/* The text of a token (control tokens too) into buf[cap]; the length, or -1
 * for ids outside the vocabulary or a model without tokenizer, or the negated
 * length needed when cap is too small. */
TERN_API int tern_model_token_piece(const tern_model *model, int32_t token, char *buf, size_t cap);
/* The chat template (Jinja source) the model came with; TERN_ERR_UNSUPPORTED if none. */
TERN_API tern_status tern_model_chat_template(const tern_model *model, const char **text,
                                              size_t *length);

/* Streaming detokenizer: ids in, complete UTF-8 text out (a character split
 * across tokens is held until it is whole). */
typedef struct tern_detokenizer tern_detokenizer;
/* special: render control tokens (e.g. "</s>") as their text. */
TERN_API tern_status tern_detokenizer_create(const tern_model *model, int special,
                                             tern_detokenizer **out, tern_error *err);
/* Appends the text completed by `token` to out[cap] and sets *n_out to its
 * length; TERN_ERR_INVALID_ARG names the size needed when cap is too small
 * (1024 bytes suffice for every vocabulary seen so far). */
TERN_API tern_status tern_detokenizer_feed(tern_detokenizer *d, int32_t token, char *out,
                                           size_t cap, size_t *n_out, tern_error *err);
/* Emits what is still held (an incomplete character, as is). */
TERN_API size_t tern_detokenizer_flush(tern_detokenizer *d, char *out, size_t cap);
TERN_API void tern_detokenizer_destroy(tern_detokenizer *d);

/* ---- Vision models (ViT) -------------------------------------------------- */
typedef enum tern_interpolation {
    TERN_INTERP_BILINEAR = 0,
    TERN_INTERP_BICUBIC = 1,
} tern_interpolation;

/* How a vision model wants its input prepared, from the checkpoint's config:
 * resize the short side to resize_short (interpolation), centre-crop
 * height x width, scale to [0, 1], then (x - mean) / std per channel.
 * resize_short 0: resize straight to height x width (no crop), as Hugging
 * Face's ViTImageProcessor does. */
typedef struct tern_image_config {
    uint32_t channels;
    uint32_t height;
    uint32_t width;
    uint32_t resize_short;
    tern_interpolation interpolation;
    float mean[4];
    float std[4];
} tern_image_config;

/* TERN_ERR_UNSUPPORTED for models that do not take images. */
TERN_API tern_status tern_model_image_config(const tern_model *model, tern_image_config *out);
/* Class label i (not NUL-terminated), when the model carries labels. */
TERN_API tern_status tern_model_label(const tern_model *model, uint32_t i, const char **text,
                                      size_t *length);
/* Runs n preprocessed images, float32 [n][channels][height][width], and writes
 * logits [n][n_vocab] (n_vocab is the number of classes). Holds no state
 * between calls. */
TERN_API tern_status tern_session_classify(tern_session *session, const float *pixels,
                                           size_t n_images, float *logits, tern_error *err);

/* ---- Sampling ------------------------------------------------------------- */
typedef struct tern_sampler_options {
    float temperature; /* <= 0: greedy */
    uint32_t top_k;    /* 0: off */
    float top_p;       /* >= 1: off */
    uint64_t seed;
} tern_sampler_options;

typedef struct tern_sampler {
    uint64_t rng_state;
    tern_sampler_options opts;
} tern_sampler;

TERN_API void tern_sampler_init(tern_sampler *sampler, const tern_sampler_options *opts);
/* Picks a token from logits[n_vocab]; `scratch` holds n_vocab (float, int32) pairs
 * (8 * n_vocab bytes). Deterministic for a given seed. */
TERN_API int32_t tern_sampler_sample(tern_sampler *sampler, const float *logits,
                                     uint32_t n_vocab, void *scratch);

/* ---- Conversion ----------------------------------------------------------- */
typedef enum tern_weight_type {
    TERN_WEIGHTS_F32 = 0,
    TERN_WEIGHTS_F16 = 1,
    TERN_WEIGHTS_BF16 = 2,
    TERN_WEIGHTS_Q8 = 3,   /* group-wise INT8, round to nearest (docs/quantization.md) */
    TERN_WEIGHTS_Q4 = 4,   /* group-wise INT4, round to nearest */
    TERN_WEIGHTS_KEEP = 5, /* quantised GGUF tensors exactly as they are, float ones F16 */
} tern_weight_type;

/* Encoding of the token embedding or the output layer, which quantisation
 * hurts most. Zero is AUTO so that zero-filled reserved bytes keep meaning
 * "as before". */
typedef enum tern_io_weights {
    TERN_IO_AUTO = 0, /* Q8 for q8/q4 bodies, KEEP for keep, else the body's encoding */
    TERN_IO_F32 = 1,
    TERN_IO_F16 = 2,
    TERN_IO_BF16 = 3,
    TERN_IO_Q8 = 4,
    TERN_IO_Q4 = 5,
    TERN_IO_KEEP = 6, /* a quantised GGUF tensor as it is, a float one F16 */
} tern_io_weights;

/* group_size value: one group per row (per output channel). */
#define TERN_GROUP_PER_ROW UINT32_MAX

typedef void (*tern_progress_fn)(void *user, uint64_t done, uint64_t total, const char *what);

typedef struct tern_convert_options {
    uint32_t struct_size;
    tern_weight_type weights;
    tern_progress_fn progress; /* may be NULL */
    void *progress_user;
    const char *tokenizer_path; /* extra tokenizer file (llama2.c), may be NULL */
    /* Quantisation (q8/q4 weights, or q8/q4 embedding or output). Only 2-D
     * matrices whose column count is a multiple of the group are quantised;
     * the others become F16. */
    uint32_t group_size;            /* values per scale (even); 0: 32; TERN_GROUP_PER_ROW */
    tern_io_weights embed_weights;  /* token_embd.weight */
    tern_io_weights output_weights; /* output.weight (a tied output follows the embedding) */
    uint8_t asymmetric;             /* 1: a uint8 zero point per group */
    uint8_t clip_search;            /* 1: per group, the clipped range with the least squared error */
    /* Calibration-based methods (docs/quantization.md, docs/sparsity.md). */
    uint8_t method;                 /* tern_quant_method; 0: RTN */
    uint8_t prune;                  /* tern_prune_method; 0: dense */
    uint8_t sparse_n, sparse_m;     /* N:M pattern when prune != 0 (e.g. 2, 4) */
    uint8_t act_order;              /* GPTQ: columns in order of decreasing Hessian diagonal */
    uint8_t calib_views;            /* images: views of each calibration image (mirror, crops); 0: 4 */
    uint32_t calib_tokens;          /* calibration tokens to use; 0: 2048 */
    const char *calib_path;         /* calibration text (.txt) or token ids; NULL: none */
    const char *sparse_layers;      /* glob over tensor names to prune; NULL: every linear in blocks */
    uint8_t row_major;              /* 1: Q8/Q4 layers row by row, not in the kernels' 16-row tiles */
    uint8_t reserved1;              /* zero */
    uint16_t n_threads;             /* calibration threads; 0: one per performance core */
    uint8_t reserved[20];           /* zero; keeps sizeof at 96 */
} tern_convert_options;

typedef enum tern_quant_method {
    TERN_METHOD_RTN = 0,
    TERN_METHOD_GPTQ = 1,
    TERN_METHOD_AWQ = 2,
    TERN_METHOD_SMOOTHQUANT = 3,
} tern_quant_method;

typedef enum tern_prune_method {
    TERN_PRUNE_NONE = 0,
    TERN_PRUNE_MAGNITUDE = 1,
    TERN_PRUNE_WANDA = 2,
    TERN_PRUNE_SPARSEGPT = 3,
} tern_prune_method;

TERN_API void tern_convert_options_default(tern_convert_options *opts);
/* Converts a checkpoint (HF folder, ...) into a .tern file. Writes to a
 * temporary file beside `dst_path` and renames it into place only when
 * complete: on failure nothing is left under `dst_path`'s name and a previous
 * file there is untouched. */
TERN_API tern_status tern_convert(const char *src_path, const char *dst_path,
                                  const tern_convert_options *opts, tern_error *err);

#ifdef __cplusplus
}
#endif
#endif /* TERN_H */
