/* The validating .tern reader (docs/format.md, "Validation"). Nothing in the
 * file is trusted: every count, offset and size is checked with 64-bit
 * arithmetic that cannot wrap before anything is dereferenced, so that once
 * tern_file_open_memory succeeds the getters need no further checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/error.h"
#include "formats/tern_file.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .tern reader maps records in place and needs a little-endian host"
#endif

_Static_assert(sizeof(tern_file_header) == TERN_FILE_HEADER_SIZE, "header is 128 bytes");
_Static_assert(sizeof(tern_section_entry) == 32, "section entry is 32 bytes");
_Static_assert(sizeof(tern_meta_entry) == 24, "metadata entry is 24 bytes");
_Static_assert(sizeof(tern_tensor_record) == 128, "tensor record is 128 bytes");

/* [off, off+size) lies inside [0, limit), without wrapping. */
static int tern_range_inside(uint64_t off, uint64_t size, uint64_t limit) {
    return off <= limit && size <= limit - off;
}

/* Lexicographic order of byte strings: memcmp, then the shorter first. */
static int tern_bytes_cmp(const uint8_t *a, uint64_t alen, const uint8_t *b, uint64_t blen) {
    uint64_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* A hostile name printed safely: at most 64 bytes, non-printables as '?'. */
static const char *tern_printable(const uint8_t *s, uint64_t len, char buf[72]) {
    size_t n = len > 64 ? 64 : (size_t)len;
    for (size_t i = 0; i < n; i++) buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    if (len > 64) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static const char *tern_section_name(uint32_t kind) {
    switch (kind) {
    case TERN_SECTION_STRINGS: return "STRINGS";
    case TERN_SECTION_METADATA: return "METADATA";
    case TERN_SECTION_BLOB: return "BLOB";
    case TERN_SECTION_TENSORS: return "TENSORS";
    case TERN_SECTION_DATA: return "DATA";
    default: return "unknown";
    }
}

/* A byte range that must not overlap any other of its list. */
typedef struct tern_span {
    uint64_t offset;
    uint64_t end;
    uint32_t owner; /* section index, or tensor index */
    uint32_t part;  /* plane number for tensor planes */
} tern_span;

static int tern_span_cmp(const void *a, const void *b) {
    const tern_span *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks the header; fills *table with the section table. */
static tern_status tern_file_check_header(const uint8_t *base, uint64_t size,
                                          const tern_section_entry **table, tern_error *err) {
    if (size < TERN_FILE_HEADER_SIZE)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "file is %llu bytes, smaller than the %d-byte header",
                         (unsigned long long)size, TERN_FILE_HEADER_SIZE);
    const tern_file_header *h = (const tern_file_header *)base;
    if (memcmp(h->magic, TERN_FILE_MAGIC, 8) != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "not a .tern file (bad magic)");
    /* The major version decides the layout of everything after it. */
    if (h->version_major > TERN_FILE_VERSION_MAJOR)
        return tern_fail(err, TERN_ERR_UNSUPPORTED,
                         "file format version %u.%u is newer than this reader (%d.%d)",
                         h->version_major, h->version_minor, TERN_FILE_VERSION_MAJOR,
                         TERN_FILE_VERSION_MINOR);
    if (h->version_major != TERN_FILE_VERSION_MAJOR)
        return tern_fail(err, TERN_ERR_FORMAT, "unknown file format version %u.%u",
                         h->version_major, h->version_minor);
    if (h->header_size != TERN_FILE_HEADER_SIZE)
        return tern_fail(err, TERN_ERR_FORMAT, "header_size is %u, expected %d", h->header_size,
                         TERN_FILE_HEADER_SIZE);
    uint64_t hash = XXH64(base, offsetof(tern_file_header, header_xxh64), 0);
    if (hash != h->header_xxh64)
        return tern_fail(err, TERN_ERR_FORMAT, "header checksum mismatch (stored %016llx, computed %016llx)",
                         (unsigned long long)h->header_xxh64, (unsigned long long)hash);
    if (h->file_size != size)
        return tern_fail(err, TERN_ERR_FORMAT,
                         "header says the file is %llu bytes but it is %llu (truncated or extended)",
                         (unsigned long long)h->file_size, (unsigned long long)size);
    if (h->flags != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "header flags are 0x%x, expected 0", h->flags);
    for (size_t i = 0; i < sizeof h->reserved; i++) {
        if (h->reserved[i] != 0)
            return tern_fail(err, TERN_ERR_FORMAT, "header reserved byte %zu is not zero",
                             offsetof(tern_file_header, reserved) + i);
    }
    if (h->section_count < 1 || h->section_count > TERN_FILE_MAX_SECTIONS)
        return tern_fail(err, TERN_ERR_FORMAT, "section_count %u is outside 1..%d",
                         h->section_count, TERN_FILE_MAX_SECTIONS);
    uint64_t table_size = (uint64_t)h->section_count * sizeof(tern_section_entry);
    if (h->section_table_offset % 8 != 0)
        return tern_fail(err, TERN_ERR_FORMAT, "section table offset %llu is not 8-byte aligned",
                         (unsigned long long)h->section_table_offset);
    if (h->section_table_offset < TERN_FILE_HEADER_SIZE ||
        !tern_range_inside(h->section_table_offset, table_size, size))
        return tern_fail(err, TERN_ERR_FORMAT,
                         "section table [%llu, +%llu) is not inside the file after the header",
                         (unsigned long long)h->section_table_offset,
                         (unsigned long long)table_size);
    hash = XXH64(base + h->section_table_offset, (size_t)table_size, 0);
    if (hash != h->section_table_xxh64)
        return tern_fail(err, TERN_ERR_FORMAT, "section table checksum mismatch");
    *table = (const tern_section_entry *)(base + h->section_table_offset);
    return TERN_OK;
}

static const char *tern_span_owner(const tern_span *s, const tern_section_entry *table, char buf[48]) {
    if (s->owner == UINT32_MAX) return "the header";
    if (s->owner == UINT32_MAX - 1) return "the section table";
    snprintf(buf, 48, "section %u (%s)", s->owner, tern_section_name(table[s->owner].kind));
    return buf;
}

/* Checks the section table; fills out's section pointers. */
static tern_status tern_file_check_sections(const tern_section_entry *table, int verify_data,
                                            tern_file *out, tern_error *err) {
    const tern_file_header *h = out->header;
    uint32_t n = h->section_count;
    int newer_minor = h->version_minor > TERN_FILE_VERSION_MINOR;
    int seen[TERN_SECTION_DATA + 1] = {0};
    tern_span spans[TERN_FILE_MAX_SECTIONS + 2];
    uint32_t n_spans = 0;

    spans[n_spans++] = (tern_span){0, TERN_FILE_HEADER_SIZE, UINT32_MAX, 0};
    spans[n_spans++] = (tern_span){h->section_table_offset,
                                   h->section_table_offset + (uint64_t)n * sizeof(tern_section_entry),
                                   UINT32_MAX - 1, 0};
    for (uint32_t i = 0; i < n; i++) {
        const tern_section_entry *s = &table[i];
        int known = s->kind >= TERN_SECTION_STRINGS && s->kind <= TERN_SECTION_DATA;
        if (!known && !newer_minor)
            return tern_fail(err, TERN_ERR_FORMAT, "section %u has unknown kind %u", i, s->kind);
        if (known && seen[s->kind])
            return tern_fail(err, TERN_ERR_FORMAT, "section %u: a second %s section", i,
                             tern_section_name(s->kind));
        if (known) seen[s->kind] = 1;
        if (s->flags != 0)
            return tern_fail(err, TERN_ERR_FORMAT, "section %u (%s): flags 0x%x, expected 0", i,
                             tern_section_name(s->kind), s->flags);
        if (!tern_range_inside(s->offset, s->size, out->size))
            return tern_fail(err, TERN_ERR_FORMAT,
                             "section %u (%s): range [%llu, +%llu) is outside the %llu-byte file",
                             i, tern_section_name(s->kind), (unsigned long long)s->offset,
                             (unsigned long long)s->size, (unsigned long long)out->size);
        uint64_t align = s->kind == TERN_SECTION_DATA ? TERN_FILE_ALIGN
                         : s->kind == TERN_SECTION_STRINGS || !known ? 1
                                                                     : 8;
        if (s->offset % align != 0)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "section %u (%s): offset %llu is not %llu-byte aligned", i,
                             tern_section_name(s->kind), (unsigned long long)s->offset,
                             (unsigned long long)align);
        if (s->size > 0) spans[n_spans++] = (tern_span){s->offset, s->offset + s->size, i, 0};
    }
    qsort(spans, n_spans, sizeof spans[0], tern_span_cmp);
    for (uint32_t i = 1; i < n_spans; i++) {
        if (spans[i - 1].end > spans[i].offset) {
            char a[48], b[48];
            return tern_fail(err, TERN_ERR_FORMAT, "%s overlaps %s",
                             tern_span_owner(&spans[i - 1], table, a), tern_span_owner(&spans[i], table, b));
        }
    }
    static const uint32_t required[] = {TERN_SECTION_STRINGS, TERN_SECTION_METADATA,
                                        TERN_SECTION_TENSORS, TERN_SECTION_DATA};
    for (size_t r = 0; r < sizeof required / sizeof required[0]; r++) {
        if (!seen[required[r]])
            return tern_fail(err, TERN_ERR_FORMAT, "the %s section is missing",
                             tern_section_name(required[r]));
    }
    for (uint32_t i = 0; i < n; i++) {
        const tern_section_entry *s = &table[i];
        if (s->kind == TERN_SECTION_DATA && !verify_data) continue;
        uint64_t hash = XXH64(out->base + s->offset, (size_t)s->size, 0);
        if (hash != s->xxh64)
            return tern_fail(err, TERN_ERR_FORMAT,
                             "section %u (%s): checksum mismatch (stored %016llx, computed %016llx)",
                             i, tern_section_name(s->kind), (unsigned long long)s->xxh64,
                             (unsigned long long)hash);
    }
    /* Only the sections kinds this reader knows are used; newer optional ones are skipped. */
    for (uint32_t i = 0; i < n; i++) {
        const tern_section_entry *s = &table[i];
        const uint8_t *p = out->base + s->offset;
        switch (s->kind) {
        case TERN_SECTION_STRINGS:
            out->strings = p;
            out->strings_size = s->size;
            break;
        case TERN_SECTION_BLOB:
            out->blob = p;
            out->blob_size = s->size;
            break;
        case TERN_SECTION_METADATA:
        case TERN_SECTION_TENSORS: {
            const char *what = tern_section_name(s->kind);
            uint64_t rec = s->kind == TERN_SECTION_METADATA ? sizeof(tern_meta_entry)
                                                            : sizeof(tern_tensor_record);
            if (s->size < 8)
                return tern_fail(err, TERN_ERR_FORMAT, "%s section is %llu bytes, too small for its count",
                                 what, (unsigned long long)s->size);
            const uint32_t *words = (const uint32_t *)p;
            if (words[1] != 0)
                return tern_fail(err, TERN_ERR_FORMAT, "%s section: reserved word is %u, expected 0",
                                 what, words[1]);
            /* count < 2^32 and rec <= 128: the product cannot wrap in 64 bits. */
            if ((s->size - 8) != (uint64_t)words[0] * rec)
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "%s section: count %u needs %llu bytes of records, section has %llu",
                                 what, words[0], (unsigned long long)((uint64_t)words[0] * rec),
                                 (unsigned long long)(s->size - 8));
            if (s->kind == TERN_SECTION_METADATA) {
                out->meta = (const tern_meta_entry *)(p + 8);
                out->n_meta = words[0];
            } else {
                out->tensors = (const tern_tensor_record *)(p + 8);
                out->n_tensors = words[0];
            }
            break;
        }
        case TERN_SECTION_DATA:
            out->data_offset = s->offset;
            out->data_size = s->size;
            break;
        default: break;
        }
    }
    return TERN_OK;
}

static size_t tern_meta_elem_size(uint32_t type) {
    switch (type) {
    case TERN_META_ARR_U32:
    case TERN_META_ARR_I32:
    case TERN_META_ARR_F32: return 4;
    case TERN_META_ARR_STRING: return 8;
    default: return 0;
    }
}

static tern_status tern_file_check_meta(const tern_file *f, tern_error *err) {
    int newer_minor = f->header->version_minor > TERN_FILE_VERSION_MINOR;
    char name[72];
    for (uint32_t i = 0; i < f->n_meta; i++) {
        const tern_meta_entry *e = &f->meta[i];
        if (e->key_length == 0 || !tern_range_inside(e->key_offset, e->key_length, f->strings_size))
            return tern_fail(err, TERN_ERR_FORMAT,
                             "metadata entry %u: key [%u, +%u) is empty or outside STRINGS (%llu bytes)",
                             i, e->key_offset, e->key_length, (unsigned long long)f->strings_size);
        const uint8_t *key = f->strings + e->key_offset;
        tern_printable(key, e->key_length, name);
        if (i > 0) {
            const tern_meta_entry *p = &f->meta[i - 1];
            if (tern_bytes_cmp(f->strings + p->key_offset, p->key_length, key, e->key_length) >= 0)
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "metadata key '%s' (entry %u) is not sorted after the previous key, or repeats it",
                                 name, i);
        }
        switch (e->type) {
        case TERN_META_U32:
        case TERN_META_I32:
        case TERN_META_F32:
        case TERN_META_U64:
        case TERN_META_F64:
            if (e->count != 1)
                return tern_fail(err, TERN_ERR_FORMAT, "metadata '%s': scalar with count %u, expected 1",
                                 name, e->count);
            if (e->type != TERN_META_U64 && e->type != TERN_META_F64 && (e->value >> 32) != 0)
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "metadata '%s': 32-bit value with nonzero upper bits", name);
            break;
        case TERN_META_STRING:
            if (!tern_range_inside(e->value, e->count, f->strings_size))
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "metadata '%s': string [%llu, +%u) is outside STRINGS (%llu bytes)",
                                 name, (unsigned long long)e->value, e->count,
                                 (unsigned long long)f->strings_size);
            break;
        case TERN_META_ARR_U32:
        case TERN_META_ARR_I32:
        case TERN_META_ARR_F32:
        case TERN_META_ARR_STRING: {
            size_t elem = tern_meta_elem_size(e->type);
            uint64_t bytes = (uint64_t)e->count * elem; /* < 2^35: no wrap */
            if (!tern_range_inside(e->value, bytes, f->blob_size))
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "metadata '%s': array [%llu, +%llu) is outside BLOB (%llu bytes)",
                                 name, (unsigned long long)e->value, (unsigned long long)bytes,
                                 (unsigned long long)f->blob_size);
            if (e->value % 4 != 0)
                return tern_fail(err, TERN_ERR_FORMAT,
                                 "metadata '%s': array offset %llu is not 4-byte aligned", name,
                                 (unsigned long long)e->value);
            if (e->type == TERN_META_ARR_STRING) {
                const uint32_t *pairs = (const uint32_t *)(f->blob + e->value);
                for (uint32_t k = 0; k < e->count; k++) {
                    if (!tern_range_inside(pairs[2 * k], pairs[2 * k + 1], f->strings_size))
                        return tern_fail(err, TERN_ERR_FORMAT,
                                         "metadata '%s': string %u [%u, +%u) is outside STRINGS (%llu bytes)",
                                         name, k, pairs[2 * k], pairs[2 * k + 1],
                                         (unsigned long long)f->strings_size);
                }
            }
            break;
        }
        default:
            return tern_fail(err, newer_minor ? TERN_ERR_UNSUPPORTED : TERN_ERR_FORMAT,
                             "metadata '%s': unknown type %u%s", name, e->type,
                             newer_minor ? " (the file is of a newer minor version)" : "");
        }
    }
    return TERN_OK;
}

static void tern_record_desc(const tern_tensor_record *r, tern_tensor_desc *d) {
    memset(d, 0, sizeof *d);
    d->encoding = (tern_encoding)r->encoding;
    d->layout = (tern_layout)r->layout;
    d->ndim = r->ndim;
    for (int i = 0; i < 4; i++) d->dims[i] = r->dims[i];
    d->group_size = r->group_size;
    d->tile_rows = r->tile_rows;
    d->sparse_n = r->sparse_n;
    d->sparse_m = r->sparse_m;
    d->flags = r->flags;
}

static tern_status tern_file_check_tensors(const tern_file *f, tern_error *err) {
    int newer_minor = f->header->version_minor > TERN_FILE_VERSION_MINOR;
    tern_status unknown = newer_minor ? TERN_ERR_UNSUPPORTED : TERN_ERR_FORMAT;
    const char *why_unknown = newer_minor ? " (the file is of a newer minor version)" : "";
    char name[72];
    tern_span *spans = NULL;
    if (f->n_tensors > 0) {
        spans = malloc((size_t)f->n_tensors * TERN_PLANE_COUNT * sizeof *spans);
        if (!spans) return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory to check %u tensors", f->n_tensors);
    }
    size_t n_spans = 0;
    tern_status st = TERN_OK;
    for (uint32_t i = 0; i < f->n_tensors && st == TERN_OK; i++) {
        const tern_tensor_record *r = &f->tensors[i];
        if (r->name_length == 0 || !tern_range_inside(r->name_offset, r->name_length, f->strings_size)) {
            st = tern_fail(err, TERN_ERR_FORMAT,
                           "tensor %u: name [%u, +%u) is empty or outside STRINGS (%llu bytes)", i,
                           r->name_offset, r->name_length, (unsigned long long)f->strings_size);
            break;
        }
        const uint8_t *nm = f->strings + r->name_offset;
        tern_printable(nm, r->name_length, name);
        if (i > 0) {
            const tern_tensor_record *p = &f->tensors[i - 1];
            if (tern_bytes_cmp(f->strings + p->name_offset, p->name_length, nm, r->name_length) >= 0) {
                st = tern_fail(err, TERN_ERR_FORMAT,
                               "tensor '%s' (record %u) is not sorted after the previous name, or repeats it",
                               name, i);
                break;
            }
        }
        if (!tern_encoding_is_known(r->encoding)) {
            st = tern_fail(err, unknown, "tensor '%s': unknown encoding %u%s", name, r->encoding, why_unknown);
            break;
        }
        if (r->layout != TERN_LAYOUT_ROW_MAJOR && r->layout != TERN_LAYOUT_ROW_INTERLEAVED) {
            st = tern_fail(err, unknown, "tensor '%s': unknown layout %u%s", name, r->layout, why_unknown);
            break;
        }
        if (r->ndim < 1 || r->ndim > 4) {
            st = tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': ndim %u is outside 1..4", name, r->ndim);
            break;
        }
        for (uint32_t d = 0; d < 4 && st == TERN_OK; d++) {
            if (d < r->ndim && r->dims[d] == 0)
                st = tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': dim %u is 0", name, d);
            else if (d >= r->ndim && r->dims[d] != 0)
                st = tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': unused dim %u is %llu, expected 0",
                               name, d, (unsigned long long)r->dims[d]);
        }
        if (st != TERN_OK) break;
        if (r->flags & ~TERN_TENSOR_KNOWN_FLAGS) {
            st = tern_fail(err, unknown, "tensor '%s': unknown flags 0x%x%s", name, r->flags, why_unknown);
            break;
        }
        if (r->reserved != 0) {
            st = tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': reserved field is %u, expected 0", name,
                           r->reserved);
            break;
        }
        tern_tensor_desc desc;
        uint64_t sizes[TERN_PLANE_COUNT];
        tern_record_desc(r, &desc);
        if (tern_tensor_plane_sizes(&desc, sizes) != 0) {
            st = tern_fail(err, TERN_ERR_FORMAT,
                           "tensor '%s': inconsistent description (encoding %s, ndim %u, dims "
                           "[%llu, %llu, %llu, %llu], group_size %u, sparse %u:%u, layout %u, "
                           "tile_rows %u, flags 0x%x)",
                           name, tern_encoding_name(desc.encoding), r->ndim,
                           (unsigned long long)r->dims[0], (unsigned long long)r->dims[1],
                           (unsigned long long)r->dims[2], (unsigned long long)r->dims[3],
                           r->group_size, r->sparse_n, r->sparse_m, r->layout, r->tile_rows,
                           r->flags);
            break;
        }
        for (uint32_t p = 0; p < TERN_PLANE_COUNT; p++) {
            uint64_t off = r->planes[p].offset, size = r->planes[p].size;
            if (sizes[p] == 0) {
                if (off != 0 || size != 0) {
                    st = tern_fail(err, TERN_ERR_FORMAT,
                                   "tensor '%s': plane %u should be absent (offset 0, size 0), has "
                                   "offset %llu size %llu",
                                   name, p, (unsigned long long)off, (unsigned long long)size);
                    break;
                }
                continue;
            }
            if (size != sizes[p]) {
                st = tern_fail(err, TERN_ERR_FORMAT, "tensor '%s': plane %u is %llu bytes, expected %llu",
                               name, p, (unsigned long long)size, (unsigned long long)sizes[p]);
                break;
            }
            if (off % TERN_FILE_ALIGN != 0) {
                st = tern_fail(err, TERN_ERR_FORMAT,
                               "tensor '%s': plane %u offset %llu is not %d-byte aligned", name, p,
                               (unsigned long long)off, TERN_FILE_ALIGN);
                break;
            }
            if (off < f->data_offset || !tern_range_inside(off - f->data_offset, size, f->data_size)) {
                st = tern_fail(err, TERN_ERR_FORMAT,
                               "tensor '%s': plane %u [%llu, +%llu) is outside DATA [%llu, +%llu)",
                               name, p, (unsigned long long)off, (unsigned long long)size,
                               (unsigned long long)f->data_offset, (unsigned long long)f->data_size);
                break;
            }
            spans[n_spans++] = (tern_span){off, off + size, i, p};
        }
    }
    if (st == TERN_OK && n_spans > 1) {
        qsort(spans, n_spans, sizeof *spans, tern_span_cmp);
        for (size_t k = 1; k < n_spans; k++) {
            if (spans[k - 1].end > spans[k].offset) {
                const tern_tensor_record *a = &f->tensors[spans[k - 1].owner];
                const tern_tensor_record *b = &f->tensors[spans[k].owner];
                char name_b[72];
                tern_printable(f->strings + a->name_offset, a->name_length, name);
                tern_printable(f->strings + b->name_offset, b->name_length, name_b);
                st = tern_fail(err, TERN_ERR_FORMAT,
                               "tensor '%s' plane %u [%llu, %llu) overlaps tensor '%s' plane %u at %llu",
                               name, spans[k - 1].part, (unsigned long long)spans[k - 1].offset,
                               (unsigned long long)spans[k - 1].end, name_b, spans[k].part,
                               (unsigned long long)spans[k].offset);
                break;
            }
        }
    }
    free(spans);
    return st;
}

tern_status tern_file_open_memory(const void *data, size_t size, int verify_data, tern_file *out,
                                  tern_error *err) {
    if (!out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_file_open_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!data && size > 0) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_file_open_memory: data is NULL");
    if ((uintptr_t)data % TERN_FILE_ALIGN != 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_file_open_memory: buffer is not %d-byte aligned",
                         TERN_FILE_ALIGN);
    tern_file f;
    memset(&f, 0, sizeof f);
    f.base = data;
    f.size = size;
    const tern_section_entry *table = NULL;
    tern_status st = tern_file_check_header(f.base, f.size, &table, err);
    if (st != TERN_OK) return st;
    f.header = (const tern_file_header *)f.base;
    if ((st = tern_file_check_sections(table, verify_data, &f, err)) != TERN_OK) return st;
    if ((st = tern_file_check_meta(&f, err)) != TERN_OK) return st;
    if ((st = tern_file_check_tensors(&f, err)) != TERN_OK) return st;
    *out = f;
    return TERN_OK;
}

tern_status tern_file_open(const char *path, int verify_data, tern_file *out, tern_error *err) {
    if (!path || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_file_open: NULL argument");
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tern_fail(err, TERN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tern_fail(err, TERN_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return tern_fail(err, TERN_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < TERN_FILE_HEADER_SIZE) {
        close(fd);
        return tern_fail(err, TERN_ERR_FORMAT, "%s: file is %lld bytes, smaller than the %d-byte header",
                         path, (long long)sb.st_size, TERN_FILE_HEADER_SIZE);
    }
    if ((off_t)(size_t)sb.st_size != sb.st_size) {
        close(fd);
        return tern_fail(err, TERN_ERR_IO, "%s: file too large to map on this machine", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return tern_fail(err, TERN_ERR_IO, "%s: cannot map: %s", path, strerror(map_errno));
    tern_status st = tern_file_open_memory(map, size, verify_data, out, err);
    if (st != TERN_OK) {
        munmap(map, size);
        return tern_fail_context(err, st, "%s", path);
    }
    out->owns_mapping = 1;
    return TERN_OK;
}

void tern_file_close(tern_file *file) {
    if (!file) return;
    if (file->owns_mapping && file->base) munmap((void *)file->base, (size_t)file->size);
    memset(file, 0, sizeof *file);
}

const tern_tensor_record *tern_file_find_tensor(const tern_file *file, const char *name) {
    if (!file || !name) return NULL;
    size_t len = strlen(name);
    uint32_t lo = 0, hi = file->n_tensors;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const tern_tensor_record *r = &file->tensors[mid];
        int c = tern_bytes_cmp(file->strings + r->name_offset, r->name_length, (const uint8_t *)name, len);
        if (c == 0) return r;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

void tern_file_tensor_view(const tern_file *file, uint32_t i, tern_tensor_view *out) {
    const tern_tensor_record *r = &file->tensors[i];
    memset(out, 0, sizeof *out);
    out->name = (const char *)(file->strings + r->name_offset);
    out->name_length = r->name_length;
    tern_record_desc(r, &out->desc);
    for (int p = 0; p < TERN_PLANE_COUNT; p++) {
        out->plane_sizes[p] = r->planes[p].size;
        out->planes[p] = r->planes[p].size ? file->base + r->planes[p].offset : NULL;
    }
}

tern_status tern_file_get_tensor(const tern_file *file, const char *name, tern_tensor_view *out,
                                 tern_error *err) {
    if (!file || !name || !out) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_file_get_tensor: NULL argument");
    const tern_tensor_record *r = tern_file_find_tensor(file, name);
    if (!r) return tern_fail(err, TERN_ERR_FORMAT, "tensor '%s' not found", name);
    tern_file_tensor_view(file, (uint32_t)(r - file->tensors), out);
    return TERN_OK;
}

static const tern_meta_entry *tern_file_find_meta(const tern_file *file, const char *key) {
    if (!file || !key) return NULL;
    size_t len = strlen(key);
    uint32_t lo = 0, hi = file->n_meta;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const tern_meta_entry *e = &file->meta[mid];
        int c = tern_bytes_cmp(file->strings + e->key_offset, e->key_length, (const uint8_t *)key, len);
        if (c == 0) return e;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const char *tern_meta_type_name(uint32_t type) {
    switch (type) {
    case TERN_META_U32: return "u32";
    case TERN_META_I32: return "i32";
    case TERN_META_U64: return "u64";
    case TERN_META_F32: return "f32";
    case TERN_META_F64: return "f64";
    case TERN_META_STRING: return "string";
    case TERN_META_ARR_U32: return "u32 array";
    case TERN_META_ARR_I32: return "i32 array";
    case TERN_META_ARR_F32: return "f32 array";
    case TERN_META_ARR_STRING: return "string array";
    default: return "unknown";
    }
}

/* The entry for key with the given type, or NULL and a message. */
static const tern_meta_entry *tern_file_meta_typed(const tern_file *file, const char *key, uint32_t type,
                                                   tern_error *err) {
    if (!file || !key) {
        tern_fail(err, TERN_ERR_INVALID_ARG, "metadata lookup: NULL argument");
        return NULL;
    }
    const tern_meta_entry *e = tern_file_find_meta(file, key);
    if (!e) {
        tern_fail(err, TERN_ERR_FORMAT, "metadata key '%s' is missing", key);
        return NULL;
    }
    if (e->type != type) {
        tern_fail(err, TERN_ERR_FORMAT, "metadata key '%s' is a %s, expected a %s", key,
                  tern_meta_type_name(e->type), tern_meta_type_name(type));
        return NULL;
    }
    return e;
}

/* A missing key is a FORMAT error; a NULL argument is INVALID_ARG. */
static tern_status tern_meta_status(const tern_file *file, const char *key) {
    return (!file || !key) ? TERN_ERR_INVALID_ARG : TERN_ERR_FORMAT;
}

int tern_file_has_meta(const tern_file *file, const char *key) {
    return tern_file_find_meta(file, key) != NULL;
}

tern_status tern_file_meta_u32(const tern_file *file, const char *key, uint32_t *out, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_U32, err);
    if (!e) return tern_meta_status(file, key);
    *out = (uint32_t)e->value;
    return TERN_OK;
}

tern_status tern_file_meta_i32(const tern_file *file, const char *key, int32_t *out, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_I32, err);
    if (!e) return tern_meta_status(file, key);
    uint32_t u = (uint32_t)e->value;
    memcpy(out, &u, sizeof u);
    return TERN_OK;
}

tern_status tern_file_meta_u64(const tern_file *file, const char *key, uint64_t *out, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_U64, err);
    if (!e) return tern_meta_status(file, key);
    *out = e->value;
    return TERN_OK;
}

tern_status tern_file_meta_f32(const tern_file *file, const char *key, float *out, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_F32, err);
    if (!e) return tern_meta_status(file, key);
    uint32_t u = (uint32_t)e->value;
    memcpy(out, &u, sizeof u);
    return TERN_OK;
}

tern_status tern_file_meta_f64(const tern_file *file, const char *key, double *out, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_F64, err);
    if (!e) return tern_meta_status(file, key);
    uint64_t u = e->value;
    memcpy(out, &u, sizeof u);
    return TERN_OK;
}

tern_status tern_file_meta_str(const tern_file *file, const char *key, const char **out,
                               size_t *length, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_STRING, err);
    if (!e) return tern_meta_status(file, key);
    *out = (const char *)(file->strings + e->value);
    *length = e->count;
    return TERN_OK;
}

static const void *tern_meta_array(const tern_file *file, const tern_meta_entry *e) {
    return e->count ? (const void *)(file->blob + e->value) : (const void *)file->base;
}

tern_status tern_file_meta_arr_u32(const tern_file *file, const char *key, const uint32_t **out,
                                   uint32_t *count, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_ARR_U32, err);
    if (!e) return tern_meta_status(file, key);
    *out = tern_meta_array(file, e);
    *count = e->count;
    return TERN_OK;
}

tern_status tern_file_meta_arr_i32(const tern_file *file, const char *key, const int32_t **out,
                                   uint32_t *count, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_ARR_I32, err);
    if (!e) return tern_meta_status(file, key);
    *out = tern_meta_array(file, e);
    *count = e->count;
    return TERN_OK;
}

tern_status tern_file_meta_arr_f32(const tern_file *file, const char *key, const float **out,
                                   uint32_t *count, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_ARR_F32, err);
    if (!e) return tern_meta_status(file, key);
    *out = tern_meta_array(file, e);
    *count = e->count;
    return TERN_OK;
}

tern_status tern_file_meta_arr_str_count(const tern_file *file, const char *key, uint32_t *count,
                                         tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_ARR_STRING, err);
    if (!e) return tern_meta_status(file, key);
    *count = e->count;
    return TERN_OK;
}

tern_status tern_file_meta_arr_str(const tern_file *file, const char *key, uint32_t i,
                                   const char **out, size_t *length, tern_error *err) {
    const tern_meta_entry *e = tern_file_meta_typed(file, key, TERN_META_ARR_STRING, err);
    if (!e) return tern_meta_status(file, key);
    if (i >= e->count)
        return tern_fail(err, TERN_ERR_OUT_OF_RANGE, "metadata '%s': index %u is past the %u strings",
                         key, i, e->count);
    const uint32_t *pair = (const uint32_t *)(file->blob + e->value) + 2 * (size_t)i;
    *out = (const char *)(file->strings + pair[0]);
    *length = pair[1];
    return TERN_OK;
}

void tern_file_meta_at(const tern_file *file, uint32_t i, const char **key, size_t *key_length,
                       tern_meta_type *type, uint32_t *count) {
    const tern_meta_entry *e = &file->meta[i];
    if (key) *key = (const char *)(file->strings + e->key_offset);
    if (key_length) *key_length = e->key_length;
    if (type) *type = (tern_meta_type)e->type;
    if (count) *count = e->count;
}
