/* Error reporting shared by every part of the library. */
#ifndef TERN_COMMON_ERROR_H
#define TERN_COMMON_ERROR_H

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *err (when not NULL) with status and a printf-style message, and
 * returns status, so a failure reads: return tern_fail(err, TERN_ERR_FORMAT, "...", ...); */
tern_status tern_fail(tern_error *err, tern_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with context ("tensor blk.0.attn_q.weight: ..."). */
tern_status tern_fail_context(tern_error *err, tern_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
