/* GGUF reader: see gguf.h. Parsing walks a cursor over the mapping; every read
 * checks the bytes left first, and every count is bounded by the bytes left
 * before anything is allocated for it. */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
} cursor;

static uint64_t left(const cursor *c) {
    return c->size - c->pos;
}

static tern_status need(cursor *c, uint64_t n, const char *what, tern_error *err) {
    if (n > left(c))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: %s (%" PRIu64 " bytes) runs past the end of the file at offset %" PRIu64,
                         what, n, c->pos);
    return TERN_OK;
}

static uint64_t rd_u64(cursor *c) {
    uint64_t v;
    memcpy(&v, c->base + c->pos, 8);
    c->pos += 8;
    return v;
}

static uint32_t rd_u32(cursor *c) {
    uint32_t v;
    memcpy(&v, c->base + c->pos, 4);
    c->pos += 4;
    return v;
}

static tern_status read_u32(cursor *c, uint32_t *out, const char *what, tern_error *err) {
    tern_status s = need(c, 4, what, err);
    if (s) return s;
    *out = rd_u32(c);
    return TERN_OK;
}

static tern_status read_u64(cursor *c, uint64_t *out, const char *what, tern_error *err) {
    tern_status s = need(c, 8, what, err);
    if (s) return s;
    *out = rd_u64(c);
    return TERN_OK;
}

/* A gguf string: u64 length then bytes. `what` names it in messages. */
static tern_status read_str(cursor *c, tern_gguf_str *out, const char *what, tern_error *err) {
    uint64_t at = c->pos;
    uint64_t len;
    tern_status s = read_u64(c, &len, what, err);
    if (s) return s;
    if (len > left(c))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: %s string length %" PRIu64 " runs past the end of the file at offset %" PRIu64,
                         what, len, at);
    out->ptr = (const char *)c->base + c->pos;
    out->len = len;
    c->pos += len;
    return TERN_OK;
}

size_t tern_gguf_type_size(tern_gguf_type type) {
    switch (type) {
    case TERN_GGUF_U8: case TERN_GGUF_I8: case TERN_GGUF_BOOL: return 1;
    case TERN_GGUF_U16: case TERN_GGUF_I16: return 2;
    case TERN_GGUF_U32: case TERN_GGUF_I32: case TERN_GGUF_F32: return 4;
    case TERN_GGUF_U64: case TERN_GGUF_I64: case TERN_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *tern_gguf_type_name(tern_gguf_type type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

static int valid_type(uint32_t t) {
    return t <= TERN_GGUF_F64;
}

/* Decodes a scalar at p (its size checked by the caller). */
static void decode_scalar(tern_gguf_type t, const uint8_t *p, tern_gguf_value *v) {
    switch (t) {
    case TERN_GGUF_U8: case TERN_GGUF_BOOL: v->v.u = p[0]; break;
    case TERN_GGUF_I8: v->v.i = (int8_t)p[0]; break;
    case TERN_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); v->v.u = x; break; }
    case TERN_GGUF_I16: { int16_t x; memcpy(&x, p, 2); v->v.i = x; break; }
    case TERN_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); v->v.u = x; break; }
    case TERN_GGUF_I32: { int32_t x; memcpy(&x, p, 4); v->v.i = x; break; }
    case TERN_GGUF_U64: { uint64_t x; memcpy(&x, p, 8); v->v.u = x; break; }
    case TERN_GGUF_I64: { int64_t x; memcpy(&x, p, 8); v->v.i = x; break; }
    case TERN_GGUF_F32: { float x; memcpy(&x, p, 4); v->v.f = x; break; }
    case TERN_GGUF_F64: { double x; memcpy(&x, p, 8); v->v.f = x; break; }
    default: break;
    }
}

typedef struct ggml_type_row {
    uint32_t id;
    const char *name;
    uint32_t block_elems;
    uint32_t block_bytes;
} ggml_type_row;

static const ggml_type_row k_ggml_types[] = {
    {0, "f32", 1, 4},          {1, "f16", 1, 2},          {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},       {6, "q5_0", 32, 22},       {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},       {9, "q8_1", 32, 36},       {10, "q2_K", 256, 84},
    {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},    {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},    {15, "q8_K", 256, 292},    {16, "iq2_xxs", 256, 66},
    {17, "iq2_xs", 256, 74},   {18, "iq3_xxs", 256, 98},  {19, "iq1_s", 256, 50},
    {20, "iq4_nl", 32, 18},    {21, "iq3_s", 256, 110},   {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},          {25, "i16", 1, 2},
    {26, "i32", 1, 4},         {27, "i64", 1, 8},         {28, "f64", 1, 8},
    {29, "iq1_m", 256, 56},    {30, "bf16", 1, 2},        {34, "tq1_0", 256, 54},
    {35, "tq2_0", 256, 66},
};

static const ggml_type_row *ggml_row(uint32_t type) {
    for (size_t i = 0; i < sizeof k_ggml_types / sizeof k_ggml_types[0]; i++)
        if (k_ggml_types[i].id == type) return &k_ggml_types[i];
    return NULL;
}

int tern_ggml_type_info(uint32_t type, uint64_t *block_elems, uint64_t *block_bytes) {
    const ggml_type_row *r = ggml_row(type);
    if (!r) return 0;
    if (block_elems) *block_elems = r->block_elems;
    if (block_bytes) *block_bytes = r->block_bytes;
    return 1;
}

const char *tern_ggml_type_name(uint32_t type) {
    const ggml_type_row *r = ggml_row(type);
    return r ? r->name : "unknown";
}

static int str_cmp(tern_gguf_str a, tern_gguf_str b) {
    uint64_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c) return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

int tern_gguf_str_eq(tern_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* Sorting index arrays by the names they point at, without global state:
 * an insertion-free merge sort over (name, index) pairs. */
typedef struct name_ix {
    tern_gguf_str name;
    uint32_t ix;
} name_ix;

static void sort_names(name_ix *a, name_ix *tmp, uint64_t n) {
    if (n < 2) return;
    uint64_t h = n / 2;
    sort_names(a, tmp, h);
    sort_names(a + h, tmp, n - h);
    uint64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = str_cmp(a[j].name, a[i].name) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

/* Builds the sorted index of n names (taken with get) and rejects duplicates. */
static tern_status build_index(uint64_t n, const void *items, size_t stride, size_t name_off,
                               uint32_t **out, const char *what, tern_error *err) {
    *out = NULL;
    if (n == 0) return TERN_OK;
    name_ix *a = malloc(n * sizeof *a);
    name_ix *tmp = malloc(n * sizeof *tmp);
    uint32_t *ix = malloc(n * sizeof *ix);
    if (!a || !tmp || !ix) {
        free(a), free(tmp), free(ix);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory indexing %s", what);
    }
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&a[i].name, (const uint8_t *)items + i * stride + name_off, sizeof(tern_gguf_str));
        a[i].ix = (uint32_t)i;
    }
    sort_names(a, tmp, n);
    for (uint64_t i = 0; i < n; i++) {
        if (i > 0 && str_cmp(a[i - 1].name, a[i].name) == 0) {
            tern_status s = tern_fail(err, TERN_ERR_FORMAT, "gguf: duplicate %s '%.*s'", what,
                                      (int)(a[i].name.len > 200 ? 200 : a[i].name.len), a[i].name.ptr);
            free(a), free(tmp), free(ix);
            return s;
        }
        ix[i] = a[i].ix;
    }
    free(a);
    free(tmp);
    *out = ix;
    return TERN_OK;
}

#define KEY_FMT "'%.*s'"
#define KEY_ARG(k) (int)((k).len > 200 ? 200 : (k).len), (k).ptr

/* Reads the value of kv at the cursor. A string array records the offset of
 * every element in the shared pool (by index: the pool may still move). */
static tern_status read_value(cursor *c, tern_gguf_kv *kv, uint64_t **pool, uint64_t *pool_used,
                              uint64_t *pool_cap, tern_error *err) {
    tern_gguf_value *v = &kv->value;
    char what[256];
    snprintf(what, sizeof what, "metadata key " KEY_FMT, KEY_ARG(kv->key));
    if (v->type == TERN_GGUF_STRING) return read_str(c, &v->v.s, what, err);
    if (v->type != TERN_GGUF_ARRAY) {
        size_t sz = tern_gguf_type_size(v->type);
        tern_status s = need(c, sz, what, err);
        if (s) return s;
        decode_scalar(v->type, c->base + c->pos, v);
        c->pos += sz;
        return TERN_OK;
    }
    uint32_t et;
    tern_status s = read_u32(c, &et, what, err);
    if (s) return s;
    if (et == TERN_GGUF_ARRAY)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: metadata key " KEY_FMT " is a nested array",
                         KEY_ARG(kv->key));
    if (!valid_type(et))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: metadata key " KEY_FMT " has unknown array element type %u at offset %" PRIu64,
                         KEY_ARG(kv->key), et, c->pos - 4);
    v->elem_type = (tern_gguf_type)et;
    uint64_t at = c->pos;
    s = read_u64(c, &v->count, what, err);
    if (s) return s;
    uint64_t min_elem = et == TERN_GGUF_STRING ? 8 : tern_gguf_type_size(v->elem_type);
    if (v->count > left(c) / min_elem)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: metadata key " KEY_FMT " array of %" PRIu64 " %s runs past the end of the file at offset %" PRIu64,
                         KEY_ARG(kv->key), v->count, tern_gguf_type_name(v->elem_type), at);
    v->data = c->base + c->pos;
    if (et != TERN_GGUF_STRING) {
        c->pos += v->count * min_elem;
        return TERN_OK;
    }
    /* An empty array needs no offsets (and the pool may not exist yet). */
    if (v->count == 0) return TERN_OK;
    /* Offsets of every element, in the shared pool (allocated lazily, grown
     * geometrically; its total is bounded by the file size / 8). */
    if (*pool_used + v->count > *pool_cap) {
        uint64_t cap = *pool_cap ? *pool_cap : 64;
        while (cap < *pool_used + v->count) cap *= 2;
        uint64_t *p = realloc(*pool, cap * sizeof *p);
        if (!p) return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory for key " KEY_FMT, KEY_ARG(kv->key));
        *pool = p;
        *pool_cap = cap;
    }
    uint64_t *offs = *pool + *pool_used;
    for (uint64_t i = 0; i < v->count; i++) {
        offs[i] = c->pos;
        tern_gguf_str e;
        char ewhat[300];
        snprintf(ewhat, sizeof ewhat, "metadata key " KEY_FMT " element %" PRIu64, KEY_ARG(kv->key), i);
        s = read_str(c, &e, ewhat, err);
        if (s) return s;
    }
    *pool_used += v->count;
    v->v.u = (uint64_t)(offs - *pool); /* pool index, resolved once the pool stops moving */
    return TERN_OK;
}

static tern_status parse(tern_gguf *g, tern_error *err) {
    cursor c = {g->base, g->size, 0};
    tern_status s = need(&c, 4, "magic", err);
    if (s) return s;
    if (memcmp(g->base, "GGUF", 4) != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: bad magic (expected 'GGUF')");
    c.pos = 4;
    if ((s = read_u32(&c, &g->version, "version", err))) return s;
    if (g->version != 2 && g->version != 3)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: version %u is not supported (2 and 3 are)",
                         g->version);
    if ((s = read_u64(&c, &g->n_tensors, "tensor count", err))) return s;
    if ((s = read_u64(&c, &g->n_kv, "metadata count", err))) return s;
    /* A key/value takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor
     * info at least 8 + 4 + 8 + 4 + 8: reject counts that cannot fit. */
    if (g->n_kv > left(&c) / 13)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: metadata count %" PRIu64 " cannot fit in the %" PRIu64 " bytes left", g->n_kv,
                         left(&c));
    if (g->n_tensors > left(&c) / 32)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "gguf: tensor count %" PRIu64 " cannot fit in the %" PRIu64 " bytes left",
                         g->n_tensors, left(&c));
    if (g->n_kv > UINT32_MAX || g->n_tensors > UINT32_MAX)
        return tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: too many entries");
    g->kvs = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kvs);
    if (!g->kvs) return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory");
    uint64_t pool_used = 0, pool_cap = 0;
    g->alignment = 32;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        tern_gguf_kv *kv = &g->kvs[i];
        char what[64];
        snprintf(what, sizeof what, "metadata key %" PRIu64, i);
        if ((s = read_str(&c, &kv->key, what, err))) return s;
        uint32_t t;
        snprintf(what, sizeof what, "type of metadata key %" PRIu64, i);
        if ((s = read_u32(&c, &t, what, err))) return s;
        if (!valid_type(t))
            return tern_fail(err, TERN_ERR_FORMAT,
                             "gguf: metadata key " KEY_FMT " has unknown value type %u at offset %" PRIu64,
                             KEY_ARG(kv->key), t, c.pos - 4);
        kv->value.type = (tern_gguf_type)t;
        if ((s = read_value(&c, kv, &g->str_offsets_pool, &pool_used, &pool_cap, err))) return s;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        tern_gguf_value *v = &g->kvs[i].value;
        if (v->type == TERN_GGUF_ARRAY && v->elem_type == TERN_GGUF_STRING) {
            v->str_offsets = v->count ? g->str_offsets_pool + v->v.u : NULL;
            v->v.u = 0;
        }
    }
    if ((s = build_index(g->n_kv, g->kvs, sizeof *g->kvs, offsetof(tern_gguf_kv, key), &g->kv_sorted,
                         "metadata key", err)))
        return s;
    const tern_gguf_value *al = tern_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != TERN_GGUF_U32)
            return tern_fail(err, TERN_ERR_FORMAT, "gguf: general.alignment is %s, expected u32",
                             tern_gguf_type_name(al->type));
        if (al->v.u == 0 || (al->v.u & (al->v.u - 1)) != 0)
            return tern_fail(err, TERN_ERR_FORMAT, "gguf: general.alignment %" PRIu64 " is not a power of two",
                             al->v.u);
        g->alignment = al->v.u;
    }

    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) return tern_fail(err, TERN_ERR_NO_MEMORY, "gguf: out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        tern_gguf_tensor *t = &g->tensors[i];
        char what[64];
        snprintf(what, sizeof what, "tensor %" PRIu64 " name", i);
        if ((s = read_str(&c, &t->name, what, err))) return s;
        char tw[300];
        snprintf(tw, sizeof tw, "tensor '%.*s' info", KEY_ARG(t->name));
        if ((s = read_u32(&c, &t->n_dims, tw, err))) return s;
        if (t->n_dims > TERN_GGUF_MAX_DIMS)
            return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor " KEY_FMT " has %u dimensions (at most %d)",
                             KEY_ARG(t->name), t->n_dims, TERN_GGUF_MAX_DIMS);
        if ((s = need(&c, 8ull * t->n_dims + 12, tw, err))) return s;
        t->n_elements = 1;
        for (uint32_t d = 0; d < TERN_GGUF_MAX_DIMS; d++) t->dims[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            t->dims[d] = rd_u64(&c);
            if (t->dims[d] != 0 && t->n_elements > UINT64_MAX / t->dims[d])
                return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor " KEY_FMT " element count overflows",
                                 KEY_ARG(t->name));
            t->n_elements *= t->dims[d];
        }
        t->type = rd_u32(&c);
        t->offset = rd_u64(&c);
        uint64_t be, bb;
        if (!tern_ggml_type_info(t->type, &be, &bb))
            return tern_fail(err, TERN_ERR_UNSUPPORTED, "gguf: tensor " KEY_FMT " has unknown ggml type %u",
                             KEY_ARG(t->name), t->type);
        if (t->dims[0] % be != 0)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "gguf: tensor " KEY_FMT " row of %" PRIu64 " elements is not a multiple of the %s block (%" PRIu64 ")",
                             KEY_ARG(t->name), t->dims[0], tern_ggml_type_name(t->type), be);
        uint64_t blocks = t->n_elements / be;
        if (blocks > UINT64_MAX / bb)
            return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor " KEY_FMT " size overflows", KEY_ARG(t->name));
        t->size = blocks * bb;
        if (t->offset % g->alignment != 0)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "gguf: tensor " KEY_FMT " offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                             KEY_ARG(t->name), t->offset, g->alignment);
    }
    if ((s = build_index(g->n_tensors, g->tensors, sizeof *g->tensors, offsetof(tern_gguf_tensor, name),
                         &g->tensor_sorted, "tensor", err)))
        return s;
    uint64_t data = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors > 0 && data > g->size)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: tensor data section at offset %" PRIu64
                         " starts past the end of the file (%zu bytes)", data, g->size);
    g->data_offset = data;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        tern_gguf_tensor *t = &g->tensors[i];
        uint64_t room = g->size - data;
        if (t->offset > room || t->size > room - t->offset)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "gguf: tensor " KEY_FMT " data [%" PRIu64 ", +%" PRIu64 ") runs past the end of the file",
                             KEY_ARG(t->name), data + t->offset, t->size);
        t->data = g->base + data + t->offset;
    }
    return TERN_OK;
}

tern_status tern_gguf_open_memory(const void *data, size_t size, tern_gguf *out, tern_error *err) {
    memset(out, 0, sizeof *out);
    if (!data && size) return tern_fail(err, TERN_ERR_INVALID_ARG, "gguf: NULL buffer");
    out->base = data;
    out->size = size;
    tern_status s = parse(out, err);
    if (s) tern_gguf_close(out);
    return s;
}

tern_status tern_gguf_open(const char *path, tern_gguf *out, tern_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tern_fail(err, TERN_ERR_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return tern_fail(err, TERN_ERR_IO, "gguf: '%s' is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size == 0) {
        close(fd);
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: '%s' is empty", path);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return tern_fail(err, TERN_ERR_IO, "gguf: cannot map '%s': %s", path, strerror(errno));
    out->base = map;
    out->size = size;
    out->owns_mapping = 1;
    tern_status s = parse(out, err);
    if (s) {
        tern_fail_context(err, s, "%s", path);
        tern_gguf_close(out);
    }
    return s;
}

void tern_gguf_close(tern_gguf *g) {
    if (!g) return;
    if (g->owns_mapping && g->base) munmap((void *)g->base, g->size);
    free(g->kvs);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->tensor_sorted);
    free(g->str_offsets_pool);
    memset(g, 0, sizeof *g);
}

const tern_gguf_value *tern_gguf_find(const tern_gguf *g, const char *key) {
    if (!g || !key || !g->kv_sorted) return NULL;
    tern_gguf_str k = {key, strlen(key)};
    uint64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const tern_gguf_kv *kv = &g->kvs[g->kv_sorted[mid]];
        int c = str_cmp(kv->key, k);
        if (c == 0) return &kv->value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const tern_gguf_tensor *tern_gguf_find_tensor(const tern_gguf *g, const char *name) {
    if (!g || !name || !g->tensor_sorted) return NULL;
    tern_gguf_str k = {name, strlen(name)};
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const tern_gguf_tensor *t = &g->tensors[g->tensor_sorted[mid]];
        int c = str_cmp(t->name, k);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static tern_status find_or_fail(const tern_gguf *g, const char *key, const tern_gguf_value **v,
                                tern_error *err) {
    *v = tern_gguf_find(g, key);
    if (!*v) return tern_fail(err, TERN_ERR_INVALID_ARG, "gguf: metadata key '%s' is missing", key);
    return TERN_OK;
}

static int is_unsigned(tern_gguf_type t) {
    return t == TERN_GGUF_U8 || t == TERN_GGUF_U16 || t == TERN_GGUF_U32 || t == TERN_GGUF_U64;
}

static int is_signed(tern_gguf_type t) {
    return t == TERN_GGUF_I8 || t == TERN_GGUF_I16 || t == TERN_GGUF_I32 || t == TERN_GGUF_I64;
}

/* Any integer value as (negative?, magnitude) so range checks are exact. */
static tern_status get_int(const tern_gguf *g, const char *key, int64_t lo, uint64_t hi, int *neg,
                           uint64_t *mag, tern_error *err) {
    const tern_gguf_value *v;
    tern_status s = find_or_fail(g, key, &v, err);
    if (s) return s;
    if (is_unsigned(v->type)) {
        *neg = 0;
        *mag = v->v.u;
    } else if (is_signed(v->type)) {
        *neg = v->v.i < 0;
        *mag = *neg ? (uint64_t)(-(v->v.i + 1)) + 1 : (uint64_t)v->v.i;
    } else {
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key '%s' is %s, expected an integer", key,
                         tern_gguf_type_name(v->type));
    }
    int fits = *neg ? (lo < 0 && *mag <= (uint64_t)(-(lo + 1)) + 1) : *mag <= hi;
    if (!fits)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key '%s' value %s%" PRIu64 " is out of range", key,
                         *neg ? "-" : "", *mag);
    return TERN_OK;
}

tern_status tern_gguf_get_u32(const tern_gguf *g, const char *key, uint32_t *out, tern_error *err) {
    int neg = 0;
    uint64_t mag = 0;
    tern_status s = get_int(g, key, 0, UINT32_MAX, &neg, &mag, err);
    if (!s) *out = (uint32_t)mag;
    return s;
}

tern_status tern_gguf_get_i32(const tern_gguf *g, const char *key, int32_t *out, tern_error *err) {
    int neg = 0;
    uint64_t mag = 0;
    tern_status s = get_int(g, key, INT32_MIN, INT32_MAX, &neg, &mag, err);
    if (!s) *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return s;
}

tern_status tern_gguf_get_u64(const tern_gguf *g, const char *key, uint64_t *out, tern_error *err) {
    int neg = 0;
    uint64_t mag = 0;
    tern_status s = get_int(g, key, 0, UINT64_MAX, &neg, &mag, err);
    if (!s) *out = mag;
    return s;
}

tern_status tern_gguf_get_f32(const tern_gguf *g, const char *key, float *out, tern_error *err) {
    const tern_gguf_value *v;
    tern_status s = find_or_fail(g, key, &v, err);
    if (s) return s;
    if (v->type != TERN_GGUF_F32 && v->type != TERN_GGUF_F64)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key '%s' is %s, expected f32", key,
                         tern_gguf_type_name(v->type));
    *out = (float)v->v.f;
    return TERN_OK;
}

tern_status tern_gguf_get_bool(const tern_gguf *g, const char *key, int *out, tern_error *err) {
    const tern_gguf_value *v;
    tern_status s = find_or_fail(g, key, &v, err);
    if (s) return s;
    if (v->type != TERN_GGUF_BOOL)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key '%s' is %s, expected bool", key,
                         tern_gguf_type_name(v->type));
    *out = v->v.u != 0;
    return TERN_OK;
}

tern_status tern_gguf_get_str(const tern_gguf *g, const char *key, tern_gguf_str *out, tern_error *err) {
    const tern_gguf_value *v;
    tern_status s = find_or_fail(g, key, &v, err);
    if (s) return s;
    if (v->type != TERN_GGUF_STRING)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key '%s' is %s, expected string", key,
                         tern_gguf_type_name(v->type));
    *out = v->v.s;
    return TERN_OK;
}

tern_status tern_gguf_get_array(const tern_gguf *g, const char *key, const tern_gguf_value **out,
                                tern_error *err) {
    const tern_gguf_value *v;
    tern_status s = find_or_fail(g, key, &v, err);
    if (s) return s;
    if (v->type != TERN_GGUF_ARRAY)
        return tern_fail(err, TERN_ERR_FORMAT, "gguf: metadata key '%s' is %s, expected array", key,
                         tern_gguf_type_name(v->type));
    *out = v;
    return TERN_OK;
}

tern_gguf_str tern_gguf_array_str(const tern_gguf_value *arr, uint64_t index) {
    tern_gguf_str s = {"", 0};
    if (arr->type != TERN_GGUF_ARRAY || arr->elem_type != TERN_GGUF_STRING || index >= arr->count) return s;
    /* Offsets were validated at open: length field and bytes lie in the file. */
    const uint8_t *file = arr->data - arr->str_offsets[0];
    uint64_t off = arr->str_offsets[index];
    memcpy(&s.len, file + off, 8);
    s.ptr = (const char *)file + off + 8;
    return s;
}

int64_t tern_gguf_array_int(const tern_gguf_value *arr, uint64_t index) {
    if (arr->type != TERN_GGUF_ARRAY || index >= arr->count) return 0;
    size_t sz = tern_gguf_type_size(arr->elem_type);
    tern_gguf_value v;
    memset(&v, 0, sizeof v);
    if (!sz || arr->elem_type == TERN_GGUF_F32 || arr->elem_type == TERN_GGUF_F64) return 0;
    decode_scalar(arr->elem_type, arr->data + index * sz, &v);
    return is_signed(arr->elem_type) ? v.v.i : (int64_t)v.v.u;
}

double tern_gguf_array_float(const tern_gguf_value *arr, uint64_t index) {
    if (arr->type != TERN_GGUF_ARRAY || index >= arr->count) return 0;
    if (arr->elem_type != TERN_GGUF_F32 && arr->elem_type != TERN_GGUF_F64)
        return (double)tern_gguf_array_int(arr, index);
    tern_gguf_value v;
    memset(&v, 0, sizeof v);
    decode_scalar(arr->elem_type, arr->data + index * tern_gguf_type_size(arr->elem_type), &v);
    return v.v.f;
}
