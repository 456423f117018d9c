/* Token sampling: greedy, or temperature + top-k + top-p with a seeded
 * generator, so a seed always gives the same text. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tern.h"

typedef struct {
    float p;
    int32_t id;
} candidate;

/* splitmix64: one 64-bit state, good statistics, trivially seedable. */
static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static float next_unit(uint64_t *state) {
    return (float)(next_u64(state) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
}

void tern_sampler_init(tern_sampler *s, const tern_sampler_options *opts) {
    memset(s, 0, sizeof *s);
    s->opts = *opts;
    s->rng_state = opts->seed;
}

static int32_t argmax(const float *x, uint32_t n) {
    int32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int32_t)i;
    return best;
}

static int by_probability_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : (x->id > y->id); /* stable order for ties */
}

int32_t tern_sampler_sample(tern_sampler *s, const float *logits, uint32_t n_vocab, void *scratch) {
    if (n_vocab == 0) return -1;
    if (s->opts.temperature <= 0.0f) return argmax(logits, n_vocab);
    candidate *c = scratch;
    const float inv_t = 1.0f / s->opts.temperature;
    float max = logits[argmax(logits, n_vocab)];
    for (uint32_t i = 0; i < n_vocab; i++) {
        c[i].p = (logits[i] - max) * inv_t;
        c[i].id = (int32_t)i;
    }
    qsort(c, n_vocab, sizeof *c, by_probability_desc);
    uint32_t n = n_vocab;
    if (s->opts.top_k > 0 && s->opts.top_k < n) n = s->opts.top_k;
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) sum += c[i].p = expf(c[i].p);
    if (s->opts.top_p > 0.0f && s->opts.top_p < 1.0f) {
        double cum = 0.0;
        for (uint32_t i = 0; i < n; i++) {
            cum += c[i].p / sum;
            if (cum >= s->opts.top_p) {
                n = i + 1;
                break;
            }
        }
        sum = 0.0;
        for (uint32_t i = 0; i < n; i++) sum += c[i].p;
    }
    double r = next_unit(&s->rng_state) * sum, cum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}
