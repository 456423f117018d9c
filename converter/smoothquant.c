/* SmoothQuant (converter/smoothquant.h): per fold group (awq.h), from the
 * calibration maxima of the shared input and the members' weight maxima. */
#include "converter/smoothquant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "converter/awq.h"

tern_status tern_smoothquant_calib_stage(void *user, tern_calib_stage *stage, tern_error *err) {
    tern_calib_method *m = user;
    if (stage->index == 0) return TERN_OK;
    tern_fold_group groups[4];
    const size_t n_groups = tern_fold_groups(stage->arch, stage->index - 1, groups);
    tern_status st = TERN_OK;
    for (size_t gi = 0; gi < n_groups && st == TERN_OK; gi++) {
        const tern_fold_group *g = &groups[gi];
        const tern_calib_linear *first = tern_calib_find(stage, g->members[0]);
        int ok = first && first->stats && first->stats->n > 0;
        for (size_t i = 1; i < g->n_members && ok; i++) {
            const tern_calib_linear *L = tern_calib_find(stage, g->members[i]);
            ok = L && L->cols == first->cols && L->stats == first->stats;
        }
        const tern_calib_linear *prev = g->prev_is_linear ? tern_calib_find(stage, g->prev[0]) : NULL;
        if (!ok || (g->prev_is_linear && !prev)) continue;
        const size_t cols = first->cols;
        size_t *tie = malloc(cols * sizeof *tie), n_scales;
        float *x_max = calloc(cols, sizeof *x_max), *w_max = calloc(cols, sizeof *w_max);
        float *s = malloc(cols * sizeof *s);
        if (!tie || !x_max || !w_max || !s) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory");
        } else if (tern_fold_tie(stage, g, cols, tie, &n_scales) == 0 &&
                   (!prev || prev->rows == n_scales)) {
            for (size_t c = 0; c < cols; c++)
                if (first->stats->max_abs[c] > x_max[tie[c]]) x_max[tie[c]] = first->stats->max_abs[c];
            for (size_t i = 0; i < g->n_members; i++) {
                const tern_calib_linear *L = tern_calib_find(stage, g->members[i]);
                for (size_t r = 0; r < L->rows; r++)
                    for (size_t c = 0; c < cols; c++) {
                        const float a = fabsf(L->weight[r * cols + c]);
                        if (a > w_max[tie[c]]) w_max[tie[c]] = a;
                    }
            }
            const double alpha = TERN_SMOOTHQUANT_ALPHA;
            for (size_t k = 0; k < n_scales; k++) {
                const double wm = w_max[k] > 1e-5f ? w_max[k] : 1e-5;
                const double v = pow((double)x_max[k], alpha) / pow(wm, 1.0 - alpha);
                s[k] = (float)(v > 1e-5 ? v : 1e-5);
            }
            st = tern_fold_apply(m->result, stage, g, tie, s, cols, n_scales, err);
        }
        free(tie);
        free(x_max);
        free(w_max);
        free(s);
    }
    return st;
}
