/* Streaming read bandwidth: T threads each sum their own slice of a buffer
 * far larger than the caches (default 4 GiB), the best of R passes. This is
 * the ceiling a memory-bound decode can reach: weight bytes read per token x
 * tokens/s over it is the fraction bench/compare_llamacpp.sh reports.
 *
 *   tern-bench-bandwidth [-s GIB] [-t 1,2] [-r REPS] [--json]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint64_t *p;
    size_t n;
    pthread_barrier_t *start;
    double t0, t1;
    uint64_t sum;
} slice;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *read_slice(void *arg) {
    slice *s = arg;
    pthread_barrier_wait(s->start);
    s->t0 = now();
    uint64_t acc[8] = {0};
    for (size_t i = 0; i + 8 <= s->n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += s->p[i + (size_t)j];
    s->t1 = now();
    for (int j = 0; j < 8; j++) s->sum += acc[j];
    return NULL;
}

/* GB/s of one pass with `threads` threads over n words */
static double pass(const uint64_t *buf, size_t n, unsigned threads, uint64_t *check) {
    pthread_t tid[64];
    slice sl[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads);
    const size_t per = n / threads / 8 * 8;
    for (unsigned t = 0; t < threads; t++) {
        sl[t] = (slice){buf + t * per, per, &start, 0, 0, 0};
        if (t > 0) pthread_create(&tid[t], NULL, read_slice, &sl[t]);
    }
    read_slice(&sl[0]);
    for (unsigned t = 1; t < threads; t++) pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&start);
    double t0 = sl[0].t0, t1 = sl[0].t1;
    for (unsigned t = 0; t < threads; t++) {
        if (sl[t].t0 < t0) t0 = sl[t].t0;
        if (sl[t].t1 > t1) t1 = sl[t].t1;
        *check += sl[t].sum;
    }
    return (double)(per * threads * sizeof *buf) / (t1 - t0) * 1e-9;
}

int main(int argc, char **argv) {
    double gib = 4.0;
    int reps = 3, json = 0;
    unsigned list[16] = {1, 2};
    size_t n_list = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            gib = atof(argv[++i]);
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            n_list = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n_list < 16; tok = strtok(NULL, ","))
                list[n_list++] = (unsigned)atoi(tok);
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "usage: %s [-s GIB] [-t 1,2] [-r REPS] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (gib <= 0 || reps < 1) {
        fprintf(stderr, "tern-bench-bandwidth: -s and -r must be positive\n");
        return 2;
    }
    for (size_t i = 0; i < n_list; i++) {
        if (list[i] < 1 || list[i] > 64) {
            fprintf(stderr, "tern-bench-bandwidth: thread counts are 1..64\n");
            return 2;
        }
    }
    const size_t n = (size_t)(gib * (double)(1u << 30)) / sizeof(uint64_t);
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, n * sizeof *buf) != 0) {
        fprintf(stderr, "tern-bench-bandwidth: cannot allocate %.1f GiB\n", gib);
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = i; /* fault every page in first */
    uint64_t check = 0;
    if (json) printf("[");
    for (size_t i = 0; i < n_list; i++) {
        double best = 0;
        for (int r = 0; r < reps; r++) {
            const double g = pass(buf, n, list[i], &check);
            if (g > best) best = g;
        }
        if (json)
            printf("%s{\"threads\": %u, \"read_gbs\": %.3f, \"buffer_gib\": %.2f}", i ? ", " : "",
                   list[i], best, gib);
        else
            printf("threads %u: %.2f GB/s (best of %d passes over %.1f GiB)\n", list[i], best, reps,
                   gib);
    }
    if (json) printf("]\n");
    fprintf(stderr, "checksum %llu\n", (unsigned long long)check);
    free(buf);
    return 0;
}
