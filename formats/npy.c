/* NumPy .npy version 1.0 reader and writer (float32, C order). */
#include "formats/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

tern_status tern_npy_write_f32(const char *path, const float *data, uint32_t ndim,
                               const uint64_t *shape, tern_error *err) {
    if (ndim == 0 || ndim > 4) return tern_fail(err, TERN_ERR_INVALID_ARG, "npy: %u dims", ndim);
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    uint64_t count = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%llu,%s",
                        (unsigned long long)shape[i], i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* Header (magic 6 + version 2 + length 2 + dict + padding + '\n') is a multiple of 64. */
    size_t total = 10 + (size_t)len + 1;
    size_t padded = (total + 63) / 64 * 64;
    FILE *f = fopen(path, "wb");
    if (!f) return tern_fail(err, TERN_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char head[10];
    memcpy(head, npy_magic, 6);
    head[6] = 1;
    head[7] = 0;
    head[8] = (unsigned char)((padded - 10) & 0xff);
    head[9] = (unsigned char)((padded - 10) >> 8);
    int ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len;
    for (size_t i = total - 1; ok && i < padded - 1; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, sizeof(float), count, f) == count; /* little-endian hosts only */
    if (fclose(f) != 0) ok = 0;
    if (!ok) {
        remove(path);
        return tern_fail(err, TERN_ERR_IO, "%s: write failed", path);
    }
    return TERN_OK;
}

tern_status tern_npy_read_f32(const char *path, float **data, uint32_t *ndim, uint64_t shape[4],
                              tern_error *err) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tern_fail(err, TERN_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char head[10];
    char dict[4096];
    tern_status st = TERN_ERR_FORMAT;
    if (fread(head, 1, 10, f) != 10 || memcmp(head, npy_magic, 6) != 0 || head[6] != 1) {
        tern_fail(err, st, "%s: not a version 1 .npy file", path);
        goto done;
    }
    size_t hlen = (size_t)head[8] | (size_t)head[9] << 8;
    if (hlen >= sizeof dict || fread(dict, 1, hlen, f) != hlen) {
        tern_fail(err, st, "%s: .npy header truncated or too long", path);
        goto done;
    }
    dict[hlen] = '\0';
    if (!strstr(dict, "'descr': '<f4'") || !strstr(dict, "'fortran_order': False")) {
        tern_fail(err, TERN_ERR_UNSUPPORTED, "%s: only little-endian float32 in C order is read", path);
        goto done;
    }
    const char *p = strstr(dict, "'shape': (");
    if (!p) {
        tern_fail(err, st, "%s: .npy header has no shape", path);
        goto done;
    }
    p += 10;
    uint64_t count = 1;
    *ndim = 0;
    while (*p && *p != ')') {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || *ndim == 4 || v > (1ull << 40) || (v && count > (1ull << 40) / v)) {
            tern_fail(err, st, "%s: bad or too large .npy shape", path);
            goto done;
        }
        shape[(*ndim)++] = v;
        count *= v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (*ndim == 0) {
        tern_fail(err, st, "%s: scalar .npy arrays are not read", path);
        goto done;
    }
    /* The shape is untrusted: check it against the bytes the file has left
     * before allocating, so a short file cannot ask for terabytes. */
    const long at = ftell(f);
    long end = -1;
    if (at >= 0 && fseek(f, 0, SEEK_END) == 0) end = ftell(f);
    if (end < at || fseek(f, at, SEEK_SET) != 0) {
        tern_fail(err, TERN_ERR_IO, "%s: cannot find the size of the file", path);
        goto done;
    }
    if (count > (uint64_t)(end - at) / sizeof(float)) {
        tern_fail(err, st, "%s: shape of %llu values needs %llu bytes but %ld follow the header", path,
                  (unsigned long long)count, (unsigned long long)count * sizeof(float), end - at);
        goto done;
    }
    *data = malloc(count ? count * sizeof(float) : 1);
    if (!*data) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "%s: out of memory", path);
        goto done;
    }
    if (fread(*data, sizeof(float), count, f) != count) {
        free(*data);
        *data = NULL;
        tern_fail(err, st, "%s: data shorter than the shape says", path);
        goto done;
    }
    st = TERN_OK;
done:
    fclose(f);
    return st;
}
