#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

tern_status tern_fail(tern_error *err, tern_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

tern_status tern_fail_context(tern_error *err, tern_status status, const char *fmt, ...) {
    if (err) {
        char prefix[sizeof err->message];
        char old[sizeof err->message];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->message, sizeof old);
        old[sizeof old - 1] = '\0';
        /* Keep the end of the old message when the two do not fit. */
        snprintf(err->message, sizeof err->message, "%.200s: %.290s", prefix, old);
        err->status = status;
    }
    return status;
}

const char *tern_status_string(tern_status status) {
    switch (status) {
    case TERN_OK: return "ok";
    case TERN_ERR_INVALID_ARG: return "invalid argument";
    case TERN_ERR_IO: return "I/O error";
    case TERN_ERR_FORMAT: return "malformed file";
    case TERN_ERR_UNSUPPORTED: return "unsupported";
    case TERN_ERR_NO_MEMORY: return "out of memory";
    case TERN_ERR_CONTEXT_FULL: return "context full";
    case TERN_ERR_OUT_OF_RANGE: return "out of range";
    case TERN_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}
