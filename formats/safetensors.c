/* Safetensors reader. The file is mapped read-only and every field of the
 * JSON header is checked before a tensor is handed out: dtype, shape, and
 * data offsets that must tile the data area exactly (no holes, no overlap),
 * as the format's specification requires. */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "formats/encoding.h"

/* The reference implementation's limit: a larger header is hostile. */
#define TERN_ST_MAX_HEADER (100u * 1000u * 1000u)
/* The header is at most three levels deep; json-c recurses per level. */
#define TERN_ST_MAX_JSON_DEPTH 16

static const struct {
    const char *name;
    tern_st_dtype dtype;
    size_t size;
} tern_st_dtypes[] = {
    {"F64", TERN_ST_F64, 8}, {"F32", TERN_ST_F32, 4}, {"F16", TERN_ST_F16, 2},
    {"BF16", TERN_ST_BF16, 2}, {"I64", TERN_ST_I64, 8}, {"I32", TERN_ST_I32, 4},
    {"I16", TERN_ST_I16, 2}, {"I8", TERN_ST_I8, 1}, {"U8", TERN_ST_U8, 1},
    {"BOOL", TERN_ST_BOOL, 1},
};
#define TERN_ST_N_DTYPES (sizeof tern_st_dtypes / sizeof tern_st_dtypes[0])

size_t tern_st_dtype_size(tern_st_dtype dtype) {
    for (size_t i = 0; i < TERN_ST_N_DTYPES; i++)
        if (tern_st_dtypes[i].dtype == dtype) return tern_st_dtypes[i].size;
    return 0;
}

const char *tern_st_dtype_name(tern_st_dtype dtype) {
    for (size_t i = 0; i < TERN_ST_N_DTYPES; i++)
        if (tern_st_dtypes[i].dtype == dtype) return tern_st_dtypes[i].name;
    return "?";
}

static int tern_st_tensor_cmp_name(const void *a, const void *b) {
    return strcmp(((const tern_st_tensor *)a)->name, ((const tern_st_tensor *)b)->name);
}

typedef struct tern_st_range {
    uint64_t begin, end;
    const char *name;
} tern_st_range;

static int tern_st_range_cmp(const void *a, const void *b) {
    const tern_st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void tern_st_free_tensors(tern_st_tensor *tensors, uint32_t n) {
    if (!tensors) return;
    for (uint32_t i = 0; i < n; i++) free(tensors[i].name);
    free(tensors);
}

/* A non-negative JSON integer; json-c saturates larger values at INT64_MAX,
 * which every caller's bound check then rejects. */
static int tern_st_json_u64(json_object *o, uint64_t *out) {
    if (!o || json_object_get_type(o) != json_type_int) return 0;
    int64_t v = json_object_get_int64(o);
    if (v < 0) return 0;
    *out = (uint64_t)v;
    return 1;
}

static tern_status tern_st_parse_entry(const char *name, json_object *entry, uint64_t data_size,
                                       tern_st_tensor *t, tern_st_range *range, tern_error *err) {
    if (json_object_get_type(entry) != json_type_object)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': header entry is not a JSON object",
                         name);

    json_object *jdtype = NULL, *jshape = NULL, *joffs = NULL;
    if (!json_object_object_get_ex(entry, "dtype", &jdtype) ||
        json_object_get_type(jdtype) != json_type_string)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': missing or non-string \"dtype\"",
                         name);
    const char *dtype = json_object_get_string(jdtype);
    size_t di = 0;
    while (di < TERN_ST_N_DTYPES && strcmp(tern_st_dtypes[di].name, dtype) != 0) di++;
    if (di == TERN_ST_N_DTYPES)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tensor '%s': dtype '%.32s' is not supported",
                         name, dtype);
    t->dtype = tern_st_dtypes[di].dtype;

    if (!json_object_object_get_ex(entry, "shape", &jshape) ||
        json_object_get_type(jshape) != json_type_array)
        return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': missing or non-array \"shape\"", name);
    size_t ndim = json_object_array_length(jshape);
    if (ndim > TERN_ST_MAX_DIMS)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tensor '%s': %zu dimensions (at most %d)",
                         name, ndim, TERN_ST_MAX_DIMS);
    t->ndim = (uint32_t)ndim;
    uint64_t n = 1;
    for (size_t d = 0; d < ndim; d++) {
        if (!tern_st_json_u64(json_object_array_get_idx(jshape, d), &t->shape[d]))
            return tern_fail(err, TERN_ERR_FORMAT,
                             "tensor '%s': shape[%zu] is not a non-negative integer", name, d);
        if (__builtin_mul_overflow(n, t->shape[d], &n))
            return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': element count overflows", name);
    }
    t->n_elements = n;
    uint64_t bytes;
    if (__builtin_mul_overflow(n, (uint64_t)tern_st_dtypes[di].size, &bytes))
        return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': byte size overflows", name);

    if (!json_object_object_get_ex(entry, "data_offsets", &joffs) ||
        json_object_get_type(joffs) != json_type_array || json_object_array_length(joffs) != 2)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor '%s': \"data_offsets\" must be an array [begin, end]", name);
    uint64_t begin, end;
    if (!tern_st_json_u64(json_object_array_get_idx(joffs, 0), &begin) ||
        !tern_st_json_u64(json_object_array_get_idx(joffs, 1), &end))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor '%s': data_offsets are not non-negative integers", name);
    if (begin > end || end > data_size)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte data area",
                         name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_size);
    if (end - begin != bytes)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensor '%s': data_offsets span %llu bytes but %s shape needs %llu", name,
                         (unsigned long long)(end - begin), dtype, (unsigned long long)bytes);
    t->size = bytes;
    range->begin = begin;
    range->end = end;
    return TERN_OK;
}

/* The tensors' byte ranges must tile [0, data_size): this rejects overlap,
 * holes (polyglot files) and a duplicate name that json-c silently merged. */
static tern_status tern_st_check_tiling(tern_st_range *ranges, uint32_t n, uint64_t data_size,
                                        tern_error *err) {
    qsort(ranges, n, sizeof *ranges, tern_st_range_cmp);
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (ranges[i].begin != at)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "tensor '%s': data begins at %llu, expected %llu (%s)",
                             ranges[i].name, (unsigned long long)ranges[i].begin,
                             (unsigned long long)at,
                             ranges[i].begin > at ? "a hole or a duplicate name before it"
                                                  : "overlaps another");
        at = ranges[i].end;
    }
    if (at != data_size)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "tensors cover %llu bytes of a %llu-byte data area",
                         (unsigned long long)at, (unsigned long long)data_size);
    return TERN_OK;
}

static tern_status tern_st_parse(const uint8_t *base, size_t size, tern_safetensors *out,
                                 tern_error *err) {
    if (size < 8)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "file is %zu bytes, too small for the 8-byte header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > size - 8)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "header length %llu runs past the end of the %zu-byte file",
                         (unsigned long long)hlen, size);
    if (hlen >= TERN_ST_MAX_HEADER)
        return tern_fail(err, TERN_ERR_FORMAT, "header length %llu exceeds the %u-byte limit",
                         (unsigned long long)hlen, TERN_ST_MAX_HEADER);
    if (hlen < 2 || base[8] != '{')
        return tern_fail(err, TERN_ERR_FORMAT, "header does not start with a JSON object");
    const char *hdr = (const char *)base + 8;
    if (memchr(hdr, '\0', hlen))
        return tern_fail(err, TERN_ERR_FORMAT, "header contains a NUL byte");
    const uint8_t *data = base + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;

    json_tokener *tok = json_tokener_new_ex(TERN_ST_MAX_JSON_DEPTH);
    if (!tok) return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for the JSON parser");
    json_object *root = json_tokener_parse_ex(tok, hdr, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t parsed = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root) {
        if (jerr == json_tokener_continue)
            return tern_fail(err, TERN_ERR_FORMAT, "header JSON is truncated");
        return tern_fail(err, TERN_ERR_FORMAT, "header JSON is malformed at byte %zu: %s", parsed,
                         json_tokener_error_desc(jerr));
    }
    tern_status st = TERN_OK;
    tern_st_tensor *tensors = NULL;
    tern_st_range *ranges = NULL;
    uint32_t n = 0;

    /* The specification allows trailing spaces as padding, nothing else. */
    for (size_t i = parsed; i < hlen; i++) {
        if (hdr[i] != ' ' && hdr[i] != '\t' && hdr[i] != '\n' && hdr[i] != '\r') {
            st = tern_fail(err, TERN_ERR_FORMAT, "header has trailing bytes after the JSON at %zu",
                           i);
            goto done;
        }
    }
    if (json_object_get_type(root) != json_type_object) {
        st = tern_fail(err, TERN_ERR_FORMAT, "header is not a JSON object");
        goto done;
    }
    size_t n_entries = (size_t)json_object_object_length(root);
    tensors = calloc(n_entries ? n_entries : 1, sizeof *tensors);
    ranges = calloc(n_entries ? n_entries : 1, sizeof *ranges);
    if (!tensors || !ranges) {
        st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for %zu tensors", n_entries);
        goto done;
    }
    json_object_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue; /* free-form strings: not needed */
        tern_st_tensor *t = &tensors[n];
        st = tern_st_parse_entry(key, val, data_size, t, &ranges[n], err);
        if (st != TERN_OK) goto done;
        t->name = strdup(key);
        if (!t->name) {
            st = tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory for tensor names");
            goto done;
        }
        t->data = data + ranges[n].begin;
        ranges[n].name = t->name;
        n++;
    }
    st = tern_st_check_tiling(ranges, n, data_size, err);
    if (st != TERN_OK) goto done;
    qsort(tensors, n, sizeof *tensors, tern_st_tensor_cmp_name);
    for (uint32_t i = 1; i < n; i++) {
        if (strcmp(tensors[i - 1].name, tensors[i].name) == 0) {
            st = tern_fail(err, TERN_ERR_FORMAT, "tensor '%s' appears twice", tensors[i].name);
            goto done;
        }
    }
    out->base = base;
    out->size = size;
    out->tensors = tensors;
    out->n_tensors = n;
    tensors = NULL;
done:
    tern_st_free_tensors(tensors, n);
    free(ranges);
    json_object_put(root);
    return st;
}

tern_status tern_safetensors_open_memory(const void *data, size_t size, tern_safetensors *out,
                                         tern_error *err) {
    if (!out || (!data && size))
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_safetensors_open_memory: NULL argument");
    memset(out, 0, sizeof *out);
    return tern_st_parse(data, size, out, err);
}

tern_status tern_safetensors_open(const char *path, tern_safetensors *out, tern_error *err) {
    if (!path || !out)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_safetensors_open: NULL argument");
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tern_fail(err, TERN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return tern_fail(err, TERN_ERR_IO, "%s is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return tern_fail(err, TERN_ERR_FORMAT,
                         "%s: file is %zu bytes, too small for the 8-byte header length", path,
                         size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return tern_fail(err, TERN_ERR_IO, "cannot map %s: %s", path, strerror(map_errno));
    tern_status st = tern_st_parse(map, size, out, err);
    if (st != TERN_OK) {
        munmap(map, size);
        return tern_fail_context(err, st, "%s", path);
    }
    out->owns_mapping = 1;
    return TERN_OK;
}

void tern_safetensors_close(tern_safetensors *st) {
    if (!st) return;
    tern_st_free_tensors(st->tensors, st->n_tensors);
    if (st->owns_mapping && st->base) munmap((void *)st->base, st->size);
    memset(st, 0, sizeof *st);
}

const tern_st_tensor *tern_safetensors_find(const tern_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    uint32_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Loads are memcpy'd: tensor data inside a safetensors file is not aligned. */
tern_status tern_st_to_f32(const tern_st_tensor *t, float *out, tern_error *err) {
    if (!t || (!out && t->n_elements))
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_st_to_f32: NULL argument");
    const uint8_t *p = t->data;
    uint64_t n = t->n_elements;
    switch (t->dtype) {
    case TERN_ST_F32:
        if (n) memcpy(out, p, n * 4);
        break;
    case TERN_ST_F64:
        for (uint64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    case TERN_ST_F16:
    case TERN_ST_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = t->dtype == TERN_ST_F16 ? tern_f16_to_f32(v) : tern_bf16_to_f32(v);
        }
        break;
    case TERN_ST_I64:
        for (uint64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    case TERN_ST_I32:
        for (uint64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = (float)v;
        }
        break;
    case TERN_ST_I16:
        for (uint64_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = (float)v;
        }
        break;
    case TERN_ST_I8:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i];
        break;
    case TERN_ST_U8:
        for (uint64_t i = 0; i < n; i++) out[i] = (float)p[i];
        break;
    case TERN_ST_BOOL:
        for (uint64_t i = 0; i < n; i++) out[i] = p[i] ? 1.0f : 0.0f;
        break;
    default:
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "tensor '%s': unknown dtype %d",
                         t->name ? t->name : "?", (int)t->dtype);
    }
    return TERN_OK;
}
