/* tern: the command-line tool. One sub-command per task; every failure prints
 * the library's message and exits non-zero. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "formats/npy.h"
#include "formats/tern_file.h"
#include "cli/cli.h"
#include "tern.h"

static void usage(FILE *f) {
    fputs("usage: tern <command> [options]\n"
          "\n"
          "commands:\n"
          "  convert SRC -o OUT.tern [--weights f32|f16|bf16|q8|q4|keep] [--group 32|64|128|0]\n"
          "          [--asym] [--clip-search] [--embed ENC] [--output ENC] [--tokenizer FILE]\n"
          "      convert a checkpoint (Hugging Face folder, GGUF or llama2.c file) into a .tern\n"
          "      file; q8/q4: round-to-nearest groups (--group 0: one per row), keep: GGUF\n"
          "      Q8_0/Q4_0/Q4_1 as they are; --embed/--output f32|f16|bf16|q8|q4|keep: token\n"
          "      embedding / output layer (default q8 for q8/q4 bodies); --layout tiles|rows:\n"
          "      q8/q4 layers in the integer kernels' 16-row tiles (default) or row by row\n"
          "      [--method rtn|gptq|awq|smoothquant --calib FILE|DIR [--calib-tokens N]\n"
          "       [--calib-views N] [--act-order]]\n"
          "      calibration-based quantisation (docs/quantization.md) on a text, a .ids file of\n"
          "      token ids or (ViT) a folder of images; --calib-tokens: default 2048;\n"
          "      --calib-views: views per image (the image, its mirror, random crops), default 4;\n"
          "      -t N: calibration threads (default: one per performance core)\n"
          "      [--sparsity N:M [--prune magnitude|wanda|sparsegpt] [--sparse-layers GLOB]]\n"
          "      N:M structured sparsity of the block matrices (default magnitude); wanda and\n"
          "      sparsegpt need --calib (as above); layers --sparse-layers leaves dense follow --method\n"
          "  info MODEL.tern [--verify]\n"
          "      architecture, hyper-parameters, tensor table, bytes per encoding\n"
          "  generate MODEL.tern (-p TEXT | --tokens 1,2,3) [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
          "      continue a text (or token ids); speed on standard error\n"
          "  chat MODEL.tern [-p SYSTEM] [-n MAX]\n"
          "      multi-turn chat with the model's template, one user message per line of input\n"
          "  tokenize MODEL.tern|VOCAB.gguf [--ids] [--bos]    (text on standard input)\n"
          "  detokenize MODEL.tern                             (token ids on standard input)\n"
          "  perplexity MODEL.tern -f FILE.txt [--ctx N] [--stride S | --chunks] [--kl-base BASE.tern] [--json]\n"
          "      perplexity of a text; --kl-base: also KL(base || model) of the next-token\n"
          "      distributions and top-1 agreement with BASE (same tokenizer) on the same tokens\n"
          "  logits MODEL.tern --tokens 1,2,3 [--stepwise] -o OUT.npy\n"
          "      float32 [T, vocab] logits of every position (--stepwise: one token at a time)\n"
          "  logits MODEL.tern --pixels IN.npy -o OUT.npy      (vision models)\n"
          "  classify MODEL.tern IMAGE... [--top K] [--base BASE.tern] [--json]   (vision models)\n"
          "      top classes per image; --base: top-1 agreement and mean KL(base || model) with BASE\n"
          "  bench MODEL.tern [-p 128] [-n 64] [-t 1,2] [-r 5] [--json] [--board NAME]\n"
          "      tokens/s of a prefill of -p tokens (ppN) and of -n one-token steps (tgN) per\n"
          "      thread count, median of -r runs after a warm-up (0 skips a test); --board: also\n"
          "      the decode roofline on boards/NAME (bytes per token / memory bandwidth)\n"
          "\n"
          "common options: -t THREADS, --ctx N, --kv f32|f16|q8 (KV cache),\n"
          "                --isa ref|avx2|avx512|avx512vnni|neon|dotprod|i8mm\n"
          "                (or TERN_ISA in the environment)\n",
          f);
}

/* ---- convert -------------------------------------------------------------- */
static void progress_bar(void *user, uint64_t done, uint64_t total, const char *what) {
    (void)user;
    const int width = 30;
    int filled = total ? (int)(done * width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %3d%% %-40.40s", filled, "##############################",
            width - filled, "", total ? (int)(done * 100 / total) : 100, what ? what : "");
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* An --embed / --output value, or -1. */
static int parse_io_weights(const char *v) {
    static const struct {
        const char *name;
        tern_io_weights io;
    } names[] = {{"f32", TERN_IO_F32}, {"f16", TERN_IO_F16}, {"bf16", TERN_IO_BF16},
                 {"q8", TERN_IO_Q8},   {"q4", TERN_IO_Q4},   {"keep", TERN_IO_KEEP}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) return (int)names[i].io;
    return -1;
}

static int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    tern_convert_options opts;
    tern_convert_options_default(&opts);
    for (int i = 0; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--output") && val && parse_io_weights(val) >= 0) {
            /* --output ENC: the output layer; any other value is the
             * destination (the older spelling of -o) */
            opts.output_weights = (tern_io_weights)parse_io_weights(argv[++i]);
        } else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
            if (!val) return tern_cli_bad_usage("%s needs a value", argv[i]);
            dst = argv[++i];
        } else if (!strcmp(argv[i], "--embed")) {
            if (!val || parse_io_weights(val) < 0)
                return tern_cli_bad_usage("%s needs f32, f16, bf16, q8, q4 or keep", argv[i]);
            opts.embed_weights = (tern_io_weights)parse_io_weights(argv[++i]);
        } else if (!strcmp(argv[i], "--group")) {
            char *end = NULL;
            unsigned long g = val ? strtoul(val, &end, 10) : 1;
            if (!val || *end || end == val || (g != 0 && (g % 2 || g > 65536)))
                return tern_cli_bad_usage("%s needs an even group size (32, 64, 128) or 0 (per row)", argv[i]);
            opts.group_size = g ? (uint32_t)g : TERN_GROUP_PER_ROW;
            i++;
        } else if (!strcmp(argv[i], "--asym")) {
            opts.asymmetric = 1;
        } else if (!strcmp(argv[i], "--clip-search")) {
            opts.clip_search = 1;
        } else if (!strcmp(argv[i], "--layout")) {
            if (!val || (strcmp(val, "tiles") && strcmp(val, "rows")))
                return tern_cli_bad_usage("%s needs tiles or rows", argv[i]);
            opts.row_major = !strcmp(val, "rows");
            i++;
        } else if (!strcmp(argv[i], "--weights")) {
            if (!val) return tern_cli_bad_usage("%s needs a value", argv[i]);
            i++;
            if (!strcmp(val, "f32")) opts.weights = TERN_WEIGHTS_F32;
            else if (!strcmp(val, "f16")) opts.weights = TERN_WEIGHTS_F16;
            else if (!strcmp(val, "bf16")) opts.weights = TERN_WEIGHTS_BF16;
            else if (!strcmp(val, "q8")) opts.weights = TERN_WEIGHTS_Q8;
            else if (!strcmp(val, "q4")) opts.weights = TERN_WEIGHTS_Q4;
            else if (!strcmp(val, "keep")) opts.weights = TERN_WEIGHTS_KEEP;
            else return tern_cli_bad_usage("unknown weight encoding '%s' (f32, f16, bf16, q8, q4, keep)", val);
        } else if (!strcmp(argv[i], "--tokenizer")) {
            if (!val) return tern_cli_bad_usage("%s needs a value", argv[i]);
            opts.tokenizer_path = argv[++i];
        } else if (!strcmp(argv[i], "--method")) {
            static const char *const methods[] = {"rtn", "gptq", "awq", "smoothquant"};
            int found = -1;
            for (int k = 0; val && k < 4; k++)
                if (!strcmp(val, methods[k])) found = k;
            if (found < 0) return tern_cli_bad_usage("%s needs rtn, gptq, awq or smoothquant", argv[i]);
            opts.method = (uint8_t)found;
            i++;
        } else if (!strcmp(argv[i], "--calib")) {
            if (!val) return tern_cli_bad_usage("%s needs a file (text, .ids) or a folder of images", argv[i]);
            opts.calib_path = argv[++i];
        } else if (!strcmp(argv[i], "--calib-tokens")) {
            if (!val || tern_cli_parse_u32(val, &opts.calib_tokens) || opts.calib_tokens == 0)
                return tern_cli_bad_usage("bad --calib-tokens value '%s'", val ? val : "");
            i++;
        } else if (!strcmp(argv[i], "--calib-views")) {
            uint32_t v = 0;
            if (!val || tern_cli_parse_u32(val, &v) || v == 0 || v > 255)
                return tern_cli_bad_usage("bad --calib-views value '%s' (1 to 255)", val ? val : "");
            opts.calib_views = (uint8_t)v;
            i++;
        } else if (!strcmp(argv[i], "--act-order")) {
            opts.act_order = 1;
        } else if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) {
            uint32_t t = 0;
            if (!val || tern_cli_parse_u32(val, &t) || t == 0 || t > 1024)
                return tern_cli_bad_usage("bad -t value '%s' (1 to 1024)", val ? val : "");
            opts.n_threads = (uint16_t)t;
            i++;
        } else if (!strcmp(argv[i], "--sparsity")) {
            unsigned n = 0, m = 0;
            char tail;
            if (!val || sscanf(val, "%u:%u%c", &n, &m, &tail) != 2 || n == 0 || m == 0 || n > m || m > 255)
                return tern_cli_bad_usage("%s needs N:M (e.g. 2:4)", argv[i]);
            opts.sparse_n = (uint8_t)n;
            opts.sparse_m = (uint8_t)m;
            if (!opts.prune) opts.prune = TERN_PRUNE_MAGNITUDE;
            i++;
        } else if (!strcmp(argv[i], "--prune")) {
            static const char *const prunes[] = {"none", "magnitude", "wanda", "sparsegpt"};
            int found = -1;
            for (int k = 0; val && k < 4; k++)
                if (!strcmp(val, prunes[k])) found = k;
            if (found < 0) return tern_cli_bad_usage("%s needs magnitude, wanda or sparsegpt", argv[i]);
            opts.prune = (uint8_t)found;
            i++;
        } else if (!strcmp(argv[i], "--sparse-layers")) {
            if (!val) return tern_cli_bad_usage("%s needs a glob over tensor names", argv[i]);
            opts.sparse_layers = argv[++i];
        } else if (argv[i][0] == '-') {
            return tern_cli_bad_usage("unknown option '%s'", argv[i]);
        } else if (!src) {
            src = argv[i];
        } else {
            return tern_cli_bad_usage("unexpected argument '%s'", argv[i]);
        }
    }
    if (!src || !dst) return tern_cli_bad_usage("%s", "convert needs SRC and -o OUT.tern");
    if (isatty(STDERR_FILENO)) opts.progress = progress_bar;
    tern_error err = {0};
    double t0 = tern_cli_now_seconds();
    if (tern_convert(src, dst, &opts, &err) != TERN_OK) return tern_cli_fail("convert", &err);
    fprintf(stderr, "wrote %s in %.2f s\n", dst, tern_cli_now_seconds() - t0);
    return 0;
}

/* ---- info ----------------------------------------------------------------- */
static void print_meta_value(const tern_file *f, const char *key, tern_meta_type type, uint32_t count) {
    union {
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        float f32;
    } v;
    const char *s;
    size_t len;
    switch (type) {
    case TERN_META_U32: tern_file_meta_u32(f, key, &v.u32, NULL); printf("%" PRIu32, v.u32); break;
    case TERN_META_I32: tern_file_meta_i32(f, key, &v.i32, NULL); printf("%" PRId32, v.i32); break;
    case TERN_META_U64: tern_file_meta_u64(f, key, &v.u64, NULL); printf("%" PRIu64, v.u64); break;
    case TERN_META_F32: tern_file_meta_f32(f, key, &v.f32, NULL); printf("%g", v.f32); break;
    case TERN_META_STRING:
        tern_file_meta_str(f, key, &s, &len, NULL);
        printf("\"%.*s\"", len > 60 ? 60 : (int)len, s);
        if (len > 60) printf("... (%zu bytes)", len);
        break;
    default: printf("array of %u", count); break;
    }
}

static int cmd_info(int argc, char **argv) {
    run_args a;
    int rc = tern_cli_parse_run_args(argc, argv, &a);
    if (rc) return rc;
    tern_file f;
    tern_error err = {0};
    if (tern_file_open(a.model, a.verify, &f, &err) != TERN_OK) return tern_cli_fail("info", &err);
    printf("file: %s\n", a.model);
    printf("format: .tern %u.%u, %" PRIu64 " bytes, %u tensors, %u metadata keys%s\n",
           f.header->version_major, f.header->version_minor, f.size, f.n_tensors, f.n_meta,
           a.verify ? ", all checksums verified" : "");
    printf("\nmetadata:\n");
    for (uint32_t i = 0; i < f.n_meta; i++) {
        const char *key;
        size_t key_len;
        tern_meta_type type;
        uint32_t count;
        tern_file_meta_at(&f, i, &key, &key_len, &type, &count);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)key_len, key);
        printf("  %-28s ", name);
        print_meta_value(&f, name, type, count);
        printf("\n");
    }
    uint64_t enc_bytes[TERN_ENC_COUNT_] = {0}, enc_elems[TERN_ENC_COUNT_] = {0};
    uint64_t total_bytes = 0, total_elems = 0;
    printf("\n  %-36s %-6s %-18s %12s %8s\n", "tensor", "enc", "shape", "bytes", "bits/w");
    for (uint32_t i = 0; i < f.n_tensors; i++) {
        tern_tensor_view v;
        tern_file_tensor_view(&f, i, &v);
        uint64_t bytes = 0, elems = tern_tensor_elements(&v.desc);
        for (int p = 0; p < TERN_PLANE_COUNT; p++) bytes += v.plane_sizes[p];
        printf("  %-36.*s %-6s ", (int)v.name_length, v.name, tern_encoding_name(v.desc.encoding));
        char shape[64];
        int n = 0;
        for (uint32_t j = 0; j < v.desc.ndim; j++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%" PRIu64, j ? "x" : "", v.desc.dims[j]);
        printf("%-18s %12" PRIu64 " %8.3f", shape, bytes, elems ? 8.0 * bytes / elems : 0.0);
        if (v.desc.sparse_m) printf("  %u:%u sparse", v.desc.sparse_n, v.desc.sparse_m);
        if (v.desc.group_size) printf("  group %u", v.desc.group_size);
        if (v.desc.layout == TERN_LAYOUT_ROW_INTERLEAVED) printf("  tiles of %u rows", v.desc.tile_rows);
        printf("\n");
        if (v.desc.encoding < TERN_ENC_COUNT_) {
            enc_bytes[v.desc.encoding] += bytes;
            enc_elems[v.desc.encoding] += elems;
        }
        total_bytes += bytes;
        total_elems += elems;
    }
    printf("\nbytes per encoding:\n");
    for (int e = 0; e < TERN_ENC_COUNT_; e++) {
        if (!enc_elems[e]) continue;
        printf("  %-6s %14" PRIu64 " bytes %14" PRIu64 " values %8.3f bits/value\n",
               tern_encoding_name((tern_encoding)e), enc_bytes[e], enc_elems[e], 8.0 * enc_bytes[e] / enc_elems[e]);
    }
    printf("  total  %14" PRIu64 " bytes %14" PRIu64 " values (%.2f M parameters)\n", total_bytes,
           total_elems, total_elems / 1e6);
    tern_file_close(&f);
    return 0;
}

/* ---- logits --------------------------------------------------------------- */
static int cmd_logits(int argc, char **argv) {
    run_args a;
    int rc = tern_cli_parse_run_args(argc, argv, &a);
    if (rc) return rc;
    if (a.pixels && a.out) return tern_cli_logits_pixels(&a);
    if (!a.tokens || !a.out) return tern_cli_bad_usage("%s", "logits needs --tokens (or --pixels) and -o OUT.npy");
    int32_t *tokens;
    size_t n;
    if (tern_cli_parse_tokens(a.tokens, &tokens, &n) || n == 0) return tern_cli_bad_usage("bad token list '%s'", a.tokens);
    tern_model *model;
    tern_session *session;
    tern_model_info info;
    if ((rc = tern_cli_open_model(&a, &model, &session, &info))) {
        free(tokens);
        return rc;
    }
    rc = 1;
    tern_error err = {0};
    float *logits = malloc(n * (size_t)info.n_vocab * sizeof(float));
    if (!logits) {
        fprintf(stderr, "tern logits: out of memory for %zu x %u logits\n", n, info.n_vocab);
        goto done;
    }
    if (a.stepwise) {
        for (size_t i = 0; i < n; i++) {
            if (tern_session_feed(session, tokens + i, 1, logits + i * info.n_vocab, TERN_LOGITS_LAST,
                                  &err) != TERN_OK) {
                rc = tern_cli_fail("logits", &err);
                goto done;
            }
        }
    } else if (tern_session_feed(session, tokens, n, logits, TERN_LOGITS_ALL, &err) != TERN_OK) {
        rc = tern_cli_fail("logits", &err);
        goto done;
    }
    uint64_t shape[2] = {n, info.n_vocab};
    if (tern_npy_write_f32(a.out, logits, 2, shape, &err) != TERN_OK) {
        rc = tern_cli_fail("logits", &err);
        goto done;
    }
    rc = 0;
done:
    free(logits);
    free(tokens);
    tern_session_destroy(session);
    tern_model_close(model);
    return rc;
}

/* ---- generate ------------------------------------------------------------- */
int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 2, argv + 2);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(cmd, "classify")) return tern_cli_classify(argc - 2, argv + 2);
    if (!strcmp(cmd, "generate")) return tern_cli_generate(argc - 2, argv + 2);
    if (!strcmp(cmd, "chat")) return tern_cli_chat(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokenize")) return tern_cli_tokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "detokenize")) return tern_cli_detokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "perplexity")) return tern_cli_perplexity(argc - 2, argv + 2);
    if (!strcmp(cmd, "bench")) return tern_cli_bench(argc - 2, argv + 2);
    return tern_cli_bad_usage("unknown command '%s'", cmd);
}
