/* The session's thread pool, as ThreadSanitizer should see it.
 *
 * Debian's libpthreadpool is not built with -fsanitize=thread: the atomics and
 * futexes with which it hands a task to its workers and waits for them are
 * invisible to TSan, which then reports every write the caller made before
 * the call (the task's context struct, the input activations) as racing with
 * the workers' reads, and every worker write as racing with the caller's
 * reads after the call. Under TSan the parallelize calls tern uses are
 * redirected here to state that fork/join order with __tsan_release and
 * __tsan_acquire, on two separate addresses so that workers gain no order
 * among themselves: races between tiles are still reported. Elsewhere this
 * header only includes pthreadpool.h. */
#ifndef TERN_RUNTIME_POOL_H
#define TERN_RUNTIME_POOL_H

#include <pthreadpool.h>

#if defined(__SANITIZE_THREAD__)
#define TERN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TERN_TSAN 1
#endif
#endif

#ifdef TERN_TSAN
#include <sanitizer/tsan_interface.h>

typedef struct {
    void (*fn)(void); /* the caller's task; its address is the fork edge */
    void *ctx;   /* the caller's context; its address is the join edge */
} tern_tsan_task;

static inline void tern_tsan_tile_1d(void *c, size_t i, size_t n) {
    tern_tsan_task *t = (tern_tsan_task *)c;
    __tsan_acquire(&t->fn);
    ((pthreadpool_task_1d_tile_1d_t)t->fn)(t->ctx, i, n);
    __tsan_release(&t->ctx);
}

static inline void tern_tsan_tile_2d(void *c, size_t i, size_t j, size_t n) {
    tern_tsan_task *t = (tern_tsan_task *)c;
    __tsan_acquire(&t->fn);
    ((pthreadpool_task_2d_tile_1d_t)t->fn)(t->ctx, i, j, n);
    __tsan_release(&t->ctx);
}

static inline void tern_tsan_parallelize_1d_tile_1d(pthreadpool_t pool, pthreadpool_task_1d_tile_1d_t fn,
                                                    void *ctx, size_t range, size_t tile, uint32_t flags) {
    tern_tsan_task t = {(void (*)(void))fn, ctx};
    __tsan_release(&t.fn);
    (pthreadpool_parallelize_1d_tile_1d)(pool, tern_tsan_tile_1d, &t, range, tile, flags);
    __tsan_acquire(&t.ctx);
}

static inline void tern_tsan_parallelize_2d_tile_1d(pthreadpool_t pool, pthreadpool_task_2d_tile_1d_t fn,
                                                    void *ctx, size_t range_i, size_t range_j, size_t tile_j,
                                                    uint32_t flags) {
    tern_tsan_task t = {(void (*)(void))fn, ctx};
    __tsan_release(&t.fn);
    (pthreadpool_parallelize_2d_tile_1d)(pool, tern_tsan_tile_2d, &t, range_i, range_j, tile_j, flags);
    __tsan_acquire(&t.ctx);
}

#define pthreadpool_parallelize_1d_tile_1d tern_tsan_parallelize_1d_tile_1d
#define pthreadpool_parallelize_2d_tile_1d tern_tsan_parallelize_2d_tile_1d
#endif

#endif
