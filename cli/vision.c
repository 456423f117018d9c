/* Vision sub-commands: classify images, logits of preprocessed pixels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "formats/npy.h"
#include "runtime/image.h"

#define CLASSIFY_BATCH 8 /* images decoded and run together */

static int open_vision_model(const run_args *a, tern_model **model, tern_session **session,
                             tern_model_info *info, tern_image_config *ic) {
    int rc = tern_cli_open_model(a, model, session, info);
    if (rc) return rc;
    if (tern_model_image_config(*model, ic) != TERN_OK) {
        fprintf(stderr, "tern: %s is a %s model, it does not take images\n", a->model, info->arch_name);
        tern_session_destroy(*session);
        tern_model_close(*model);
        return 1;
    }
    return 0;
}

/* Prints the top k classes of one image's logits, with softmax probabilities. */
static void print_top(const tern_model *model, const char *path, const float *logits,
                      uint32_t n_classes, uint32_t k, int32_t *order) {
    double max = -INFINITY, sum = 0;
    for (uint32_t i = 0; i < n_classes; i++) max = logits[i] > max ? logits[i] : max;
    for (uint32_t i = 0; i < n_classes; i++) sum += exp((double)logits[i] - max);
    /* Partial selection: k is small. */
    for (uint32_t i = 0; i < n_classes; i++) order[i] = (int32_t)i;
    if (k > n_classes) k = n_classes;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t best = i;
        for (uint32_t j = i + 1; j < n_classes; j++)
            if (logits[order[j]] > logits[order[best]]) best = j;
        int32_t t = order[i];
        order[i] = order[best];
        order[best] = t;
    }
    printf("%s\n", path);
    for (uint32_t i = 0; i < k; i++) {
        const double p = exp((double)logits[order[i]] - max) / sum;
        const char *label;
        size_t len;
        if (tern_model_label(model, (uint32_t)order[i], &label, &len) == TERN_OK)
            printf("  %8.4f  %5d  %.*s\n", p, order[i], (int)len, label);
        else
            printf("  %8.4f  %5d\n", p, order[i]);
    }
}

/* A path as a JSON string. */
static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* Agreement of a model with its base over the images run so far. */
typedef struct {
    uint64_t n, agree;
    double kl_sum, kl_sum_sq, kl_max;
} agreement;

/* `tern classify MODEL [--base BASE.tern] [--json] IMAGE...`: the top classes
 * of each image; with --base, BASE runs on the same pixels and a summary gives
 * the top-1 agreement and the mean KL(base || model) of the class
 * distributions over the images (the quality of a quantised ViT against its
 * float model). --json prints one object instead of the tables. */
int tern_cli_classify(int argc, char **argv) {
    run_args a;
    memset(&a, 0, sizeof a);
    uint32_t top = 5;
    int json = 0;
    const char *base_path = NULL;
    char **images = calloc(argc > 0 ? (size_t)argc : 1, sizeof *images);
    size_t n_images = 0;
    if (!images) return 1;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(arg, "--top") || !strcmp(arg, "-k")) {
            bad = !val || tern_cli_parse_u32(val, &top) || top == 0;
            if (bad) {
                free(images);
                return tern_cli_bad_usage("bad --top value '%s'", val ? val : "");
            }
            i++;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--threads")) {
            if (!val || tern_cli_parse_u32(val, &a.threads)) {
                free(images);
                return tern_cli_bad_usage("bad thread count '%s'", val ? val : "");
            }
            i++;
        } else if (!strcmp(arg, "--isa") || !strcmp(arg, "--base")) {
            if (!val) {
                free(images);
                return tern_cli_bad_usage("%s needs a value", arg);
            }
            if (arg[2] == 'i') a.isa = val;
            else base_path = val;
            i++;
        } else if (!strcmp(arg, "--json")) {
            json = 1;
        } else if (!strcmp(arg, "--verify")) {
            a.verify = 1;
        } else if (arg[0] == '-' && arg[1]) {
            free(images);
            return tern_cli_bad_usage("unknown option '%s'", arg);
        } else if (!a.model) {
            a.model = arg;
        } else {
            images[n_images++] = argv[i];
        }
    }
    if (!a.model || n_images == 0) {
        free(images);
        return tern_cli_bad_usage("%s", "classify needs a model and at least one image");
    }
    tern_model *model, *base = NULL;
    tern_session *session, *base_session = NULL;
    tern_model_info info, base_info;
    tern_image_config ic, base_ic;
    int rc = open_vision_model(&a, &model, &session, &info, &ic);
    if (rc) {
        free(images);
        return rc;
    }
    float *pixels = NULL, *logits = NULL, *base_logits = NULL;
    int32_t *order = NULL;
    if (base_path) {
        run_args ba = a;
        ba.model = base_path;
        tern_model *bm;
        tern_session *bs;
        /* On failure the out-pointers may hold a closed model: keep them local. */
        if ((rc = open_vision_model(&ba, &bm, &bs, &base_info, &base_ic))) goto done;
        base = bm;
        base_session = bs;
        if (base_info.n_vocab != info.n_vocab || base_ic.channels != ic.channels ||
            base_ic.height != ic.height || base_ic.width != ic.width) {
            fprintf(stderr,
                    "tern classify: %s (%u classes, %ux%ux%u input) and %s (%u classes, %ux%ux%u input) "
                    "cannot be compared: --base needs the same classes and input shape\n",
                    a.model, info.n_vocab, ic.channels, ic.height, ic.width, base_path, base_info.n_vocab,
                    base_ic.channels, base_ic.height, base_ic.width);
            rc = 1;
            goto done;
        }
    }
    const size_t per_image = (size_t)ic.channels * ic.height * ic.width;
    pixels = malloc(CLASSIFY_BATCH * per_image * sizeof *pixels);
    logits = malloc(CLASSIFY_BATCH * (size_t)info.n_vocab * sizeof *logits);
    order = malloc((size_t)info.n_vocab * sizeof *order);
    if (base) base_logits = malloc(CLASSIFY_BATCH * (size_t)info.n_vocab * sizeof *base_logits);
    const char *names[CLASSIFY_BATCH];
    if (!pixels || !logits || !order || (base && !base_logits)) {
        fprintf(stderr, "tern classify: out of memory\n");
        rc = 1;
        goto done;
    }
    agreement ag = {0};
    double seconds = 0;
    if (json) printf("{\"images\": [");
    /* Batches of decoded images; one that fails to decode is reported and
     * skipped. Both models see the pixels preprocessed the model's way. */
    for (size_t next = 0; next < n_images;) {
        size_t n = 0;
        while (n < CLASSIFY_BATCH && next < n_images) {
            const char *path = images[next++];
            tern_error err = {0};
            tern_image img;
            tern_status st = tern_image_load(path, &img, &err);
            if (st == TERN_OK) {
                st = tern_image_preprocess(&img, &ic, pixels + n * per_image, &err);
                tern_image_free(&img);
            }
            if (st != TERN_OK) {
                tern_cli_fail("classify", &err);
                rc = 1;
                continue;
            }
            names[n++] = path;
        }
        if (n == 0) continue;
        tern_error err = {0};
        const double t0 = tern_cli_now_seconds();
        const tern_status st = tern_session_classify(session, pixels, n, logits, &err);
        seconds += tern_cli_now_seconds() - t0; /* the model's time only, not decoding or the base */
        if (st != TERN_OK ||
            (base && tern_session_classify(base_session, pixels, n, base_logits, &err) != TERN_OK)) {
            rc = tern_cli_fail("classify", &err);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            const float *row = logits + i * info.n_vocab;
            const tern_cli_row_stats ms = tern_cli_row_stats_of(row, info.n_vocab);
            tern_cli_row_stats bs = {0, 0, 0};
            double kl = 0;
            if (base) {
                const float *brow = base_logits + i * info.n_vocab;
                bs = tern_cli_row_stats_of(brow, info.n_vocab);
                kl = tern_cli_row_kl(brow, bs, row, ms, info.n_vocab);
                ag.agree += bs.argmax == ms.argmax;
                ag.kl_sum += kl;
                ag.kl_sum_sq += kl * kl;
                ag.kl_max = kl > ag.kl_max ? kl : ag.kl_max;
            }
            if (json) {
                printf("%s{\"path\": ", ag.n ? ", " : "");
                print_json_string(names[i]);
                printf(", \"top1\": %u, \"p\": %.6f", ms.argmax, exp(-ms.log_z));
                if (base) printf(", \"base_top1\": %u, \"kl\": %.8f", bs.argmax, kl);
                printf("}");
            } else {
                print_top(model, names[i], row, info.n_vocab, top, order);
                if (base) printf("  base top-1 %u%s, KL(base || model) %.6f\n", bs.argmax,
                                 bs.argmax == ms.argmax ? " (same)" : " (differs)", kl);
            }
            ag.n++;
        }
    }
    if (json)
        printf("], \"n\": %llu, \"seconds\": %.4f, \"images_per_s\": %.3f", (unsigned long long)ag.n, seconds,
               seconds > 0 ? (double)ag.n / seconds : 0.0);
    if (base && ag.n) {
        const double n = (double)ag.n, p = (double)ag.agree / n, kl = ag.kl_sum / n;
        const double var = ag.n > 1 ? (ag.kl_sum_sq / n - kl * kl) * n / (n - 1) : 0;
        const double kl_se = sqrt(var > 0 ? var : 0) / sqrt(n);
        if (json)
            printf(", \"top1_agreement\": %.6f, \"agree\": %llu, \"kl\": %.8f, \"kl_se\": %.8f, \"kl_max\": %.8f", p,
                   (unsigned long long)ag.agree, kl, kl_se, ag.kl_max);
        else
            printf("agreement with %s: top-1 %llu of %llu images (%.4f), mean KL(base || model) %.6f +/- %.6f, "
                   "max %.6f\n",
                   base_path, (unsigned long long)ag.agree, (unsigned long long)ag.n, p, kl, kl_se, ag.kl_max);
    }
    if (json) printf("}\n");
done:
    free(pixels);
    free(logits);
    free(base_logits);
    free(order);
    free(images);
    tern_session_destroy(session);
    tern_model_close(model);
    tern_session_destroy(base_session);
    tern_model_close(base);
    return rc;
}

int tern_cli_logits_pixels(const run_args *a) {
    tern_model *model;
    tern_session *session;
    tern_model_info info;
    tern_image_config ic;
    int rc = open_vision_model(a, &model, &session, &info, &ic);
    if (rc) return rc;
    tern_error err = {0};
    float *pixels = NULL, *logits = NULL;
    uint32_t ndim;
    uint64_t shape[4];
    if (tern_npy_read_f32(a->pixels, &pixels, &ndim, shape, &err) != TERN_OK) {
        rc = tern_cli_fail("logits", &err);
        goto done;
    }
    /* [B, C, H, W], or one image [C, H, W]. */
    const uint64_t batch = ndim == 4 ? shape[0] : 1;
    const uint64_t *chw = ndim == 4 ? shape + 1 : shape;
    if ((ndim != 3 && ndim != 4) || chw[0] != ic.channels || chw[1] != ic.height ||
        chw[2] != ic.width || batch == 0) {
        fprintf(stderr, "tern logits: %s must be float32 [B, %u, %u, %u]\n", a->pixels, ic.channels,
                ic.height, ic.width);
        rc = 1;
        goto done;
    }
    logits = malloc(batch * info.n_vocab * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "tern logits: out of memory for %llu x %u logits\n",
                (unsigned long long)batch, info.n_vocab);
        rc = 1;
        goto done;
    }
    if (tern_session_classify(session, pixels, batch, logits, &err) != TERN_OK) {
        rc = tern_cli_fail("logits", &err);
        goto done;
    }
    const uint64_t out_shape[2] = {batch, info.n_vocab};
    if (tern_npy_write_f32(a->out, logits, 2, out_shape, &err) != TERN_OK) rc = tern_cli_fail("logits", &err);
done:
    free(pixels);
    free(logits);
    tern_session_destroy(session);
    tern_model_close(model);
    return rc;
}
