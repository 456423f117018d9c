/* The streaming .tern writer (docs/format.md, "Writing a file"). Tensor
 * planes go to disk as they are added, so a converter never holds a whole
 * model; metadata and the tensor records stay in memory until finish, which
 * writes the tables and then the header over the zero placeholder. The file
 * appears under its final name only by rename, once complete and synced. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/error.h"
#include "formats/tern_file.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .tern writer emits records in host order and needs a little-endian host"
#endif

typedef struct tern_wmeta {
    char *key;
    size_t key_length;
    uint32_t type;
    uint32_t count;
    uint64_t value;        /* scalar bits; offsets are filled in at finish */
    uint8_t *data;         /* STRING bytes, array elements, or ARR_STRING's concatenated strings */
    size_t data_size;
    uint32_t *str_lengths; /* ARR_STRING: length of each string */
} tern_wmeta;

typedef struct tern_wtensor {
    char *name;
    size_t name_length;
    tern_tensor_record rec; /* name_offset filled in at finish */
} tern_wtensor;

struct tern_writer {
    int fd;
    int lock_fd;               /* holds an flock on the temporary file until it is renamed */
    int named;                 /* tmp_path names the temporary file (an O_TMPFILE one has no name at first) */
    char *tmp_path;
    char *dst_path;
    uint64_t pos;              /* bytes written so far (the file's end) */
    XXH64_state_t *data_hash;  /* DATA section: every byte from 128 to the end of the planes */
    tern_status failed;        /* sticky: after a write error the file is unusable */
    tern_wmeta *meta;
    size_t n_meta, cap_meta;
    tern_wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

/* A growable byte buffer for the tables built at finish. */
typedef struct tern_buf {
    uint8_t *p;
    size_t n, cap;
} tern_buf;

static int tern_buf_reserve(tern_buf *b, size_t extra) {
    if (extra <= b->cap - b->n) return 0;
    if (extra > SIZE_MAX / 2 - b->n) return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int tern_buf_append(tern_buf *b, const void *src, size_t n) {
    if (tern_buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

static int tern_buf_pad(tern_buf *b, size_t align) {
    size_t pad = (align - b->n % align) % align;
    if (pad == 0) return 0;
    if (tern_buf_reserve(b, pad) != 0) return -1;
    memset(b->p + b->n, 0, pad);
    b->n += pad;
    return 0;
}

static const uint8_t tern_zeros[TERN_FILE_ALIGN];

/* Writes all of buf at the end of the file, retrying short writes. */
static tern_status tern_writer_write(tern_writer *w, const void *buf, size_t len, int hash,
                                     tern_error *err) {
    const uint8_t *p = buf;
    size_t left = len;
    while (left > 0) {
        size_t chunk = left > ((size_t)1 << 30) ? ((size_t)1 << 30) : left;
        ssize_t n = write(w->fd, p, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : ENOSPC;
            w->failed = tern_fail(err, TERN_ERR_IO, "%s: write failed at offset %llu: %s",
                                  w->tmp_path, (unsigned long long)w->pos, strerror(e));
            return w->failed;
        }
        if (hash) XXH64_update(w->data_hash, p, (size_t)n);
        p += n;
        left -= (size_t)n;
        w->pos += (uint64_t)n;
    }
    return TERN_OK;
}

static tern_status tern_writer_pad(tern_writer *w, uint64_t align, int hash, tern_error *err) {
    uint64_t pad = (align - w->pos % align) % align;
    return pad ? tern_writer_write(w, tern_zeros, (size_t)pad, hash, err) : TERN_OK;
}

static void tern_writer_free(tern_writer *w) {
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].data);
        free(w->meta[i].str_lengths);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->meta);
    free(w->tensors);
    if (w->data_hash) XXH64_freeState(w->data_hash);
    free(w->tmp_path);
    free(w->dst_path);
    free(w);
}

/* Removes the temporary file (still locked), closes it, frees w. */
static void tern_writer_discard(tern_writer *w) {
    if (w->named) unlink(w->tmp_path);
    if (w->fd >= 0) close(w->fd);
    if (w->lock_fd >= 0) close(w->lock_fd);
    tern_writer_free(w);
}

static const char tern_tmp_suffix[] = ".tmp.XXXXXX";

/* The folder part of path ("." for a bare name) into dir[cap]; -1 if too long. */
static int tern_parent_dir(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    size_t len = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (len + 2 > cap) return -1;
    if (len == 0) strcpy(dir, ".");
    else memcpy(dir, path, len), dir[len] = '\0';
    return 0;
}

/* A writer killed outright (SIGKILL, power loss) leaves "<dst>.tmp.XXXXXX"
 * behind. A live writer holds an flock on its temporary file from before it
 * has a name (O_TMPFILE, tern_writer_create_unnamed) or from just after
 * mkostemp until the rename, so one that can be locked belongs to a dead
 * writer. An empty one may be a mkostemp writer between creating and locking,
 * and is left alone for a minute. Best effort: whatever fails here only
 * leaves a file. */
static void tern_writer_remove_stale(const char *dst_path) {
    const char *slash = strrchr(dst_path, '/');
    const char *base = slash ? slash + 1 : dst_path;
    size_t base_len = strlen(base), suffix_len = sizeof tern_tmp_suffix - 1;
    char dir[PATH_MAX];
    if (tern_parent_dir(dst_path, dir, sizeof dir) != 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strlen(name) != base_len + suffix_len || memcmp(name, base, base_len) != 0 ||
            memcmp(name + base_len, tern_tmp_suffix, suffix_len - 6) != 0)
            continue;
        int fd = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st, now;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            (st.st_size > 0 || time(NULL) - st.st_mtime > 60) &&
            fstatat(dirfd(d), name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st.st_dev &&
            now.st_ino == st.st_ino)
            unlinkat(dirfd(d), name, 0);
        close(fd);
    }
    closedir(d);
}

/* Mode, hash state and the zero placeholder header of a new temporary file. */
static tern_status tern_writer_start(tern_writer *w, tern_error *err) {
    /* mkstemp makes 0600, O_TMPFILE applies the umask; a model file is meant to be shared. */
    if (fchmod(w->fd, 0644) != 0)
        return tern_fail(err, TERN_ERR_IO, "%s: chmod: %s", w->tmp_path, strerror(errno));
    XXH64_reset(w->data_hash, 0);
    /* Placeholder header; the real one is written last, when offsets are known. */
    tern_status st = tern_writer_write(w, tern_zeros, TERN_FILE_HEADER_SIZE / 2, 0, err);
    if (st == TERN_OK) st = tern_writer_write(w, tern_zeros, TERN_FILE_HEADER_SIZE / 2, 0, err);
    return st;
}

/* Creates the temporary file without a name (O_TMPFILE), locks it, writes
 * the placeholder and only then links it as tmp_path: every name
 * "<dst>.tmp.XXXXXX" is a non-empty file locked by a live writer, so a kill
 * at any moment leaves nothing tern_writer_remove_stale must wait for.
 * Returns 1 when done, 0 where the file system, the kernel or a missing
 * /proc cannot (the caller falls back to mkostemp), -1 when writing the
 * placeholder failed (*st says why). */
static int tern_writer_create_unnamed(tern_writer *w, tern_status *st, tern_error *err) {
#if defined(O_TMPFILE) && defined(__linux__)
    char dir[PATH_MAX], proc[64];
    if (tern_parent_dir(w->dst_path, dir, sizeof dir) != 0) return 0;
    w->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
    if (w->fd < 0) return 0;
    if (flock(w->fd, LOCK_EX | LOCK_NB) != 0 || (w->lock_fd = dup(w->fd)) < 0) goto fall_back;
    if ((*st = tern_writer_start(w, err)) != TERN_OK) return -1;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", w->fd);
    static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *x = w->tmp_path + strlen(w->tmp_path) - 6;
    for (uint32_t attempt = 0; attempt < 64; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed[4] = {(uint64_t)getpid(), (uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, attempt};
        uint64_t r = XXH64(seed, sizeof seed, (uint64_t)(uintptr_t)w);
        for (int i = 0; i < 6; i++, r >>= 6) x[i] = letters[r & 63];
        if (linkat(AT_FDCWD, proc, AT_FDCWD, w->tmp_path, AT_SYMLINK_FOLLOW) == 0) {
            w->named = 1;
            return 1;
        }
        if (errno != EEXIST) break;
    }
fall_back:
    close(w->fd);
    if (w->lock_fd >= 0) close(w->lock_fd);
    w->fd = w->lock_fd = -1;
    w->pos = 0;
    memcpy(w->tmp_path + strlen(w->tmp_path) - 6, "XXXXXX", 6);
#else
    (void)w, (void)st, (void)err;
#endif
    return 0;
}

tern_status tern_writer_open(const char *dst_path, tern_writer **out, tern_error *err) {
    if (!dst_path || !out || !*dst_path)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_writer_open: NULL or empty argument");
    *out = NULL;
    tern_writer *w = calloc(1, sizeof *w);
    if (!w) return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for a writer");
    w->fd = w->lock_fd = -1;
    size_t len = strlen(dst_path);
    w->dst_path = malloc(len + 1);
    w->tmp_path = malloc(len + sizeof tern_tmp_suffix);
    w->data_hash = XXH64_createState();
    if (!w->dst_path || !w->tmp_path || !w->data_hash) {
        tern_writer_free(w);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for a writer");
    }
    memcpy(w->dst_path, dst_path, len + 1);
    memcpy(w->tmp_path, dst_path, len);
    memcpy(w->tmp_path + len, tern_tmp_suffix, sizeof tern_tmp_suffix);
    tern_writer_remove_stale(dst_path);
    tern_status st = TERN_OK;
    int unnamed = tern_writer_create_unnamed(w, &st, err);
    if (unnamed < 0) {
        tern_writer_discard(w);
        return st;
    }
    if (unnamed == 0) {
        w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
        if (w->fd < 0) {
            st = tern_fail(err, TERN_ERR_IO, "%s: cannot create: %s", w->tmp_path, strerror(errno));
            tern_writer_free(w);
            return st;
        }
        w->named = 1;
        /* The lock marks the file as alive for tern_writer_remove_stale. It sits
         * on a second descriptor so that it outlasts the checked close of w->fd
         * until the rename; where flock is unsupported, no writer removes anything. */
        w->lock_fd = open(w->tmp_path, O_RDONLY | O_CLOEXEC);
        if (w->lock_fd < 0) {
            st = tern_fail(err, TERN_ERR_IO, "%s: cannot reopen: %s", w->tmp_path, strerror(errno));
            tern_writer_discard(w);
            return st;
        }
        if (flock(w->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            close(w->lock_fd);
            w->lock_fd = -1;
        }
        st = tern_writer_start(w, err);
        if (st != TERN_OK) {
            tern_writer_discard(w);
            return st;
        }
    }
    *out = w;
    return TERN_OK;
}

static int tern_wname_eq(const char *a, size_t alen, const char *b, size_t blen) {
    return alen == blen && memcmp(a, b, alen) == 0;
}

static tern_status tern_writer_check_name(const char *what, const char *name, size_t *len,
                                          tern_error *err) {
    if (!name) return tern_fail(err, TERN_ERR_INVALID_ARG, "%s is NULL", what);
    *len = strlen(name);
    if (*len == 0) return tern_fail(err, TERN_ERR_INVALID_ARG, "%s is empty", what);
    if (*len > UINT32_MAX) return tern_fail(err, TERN_ERR_INVALID_ARG, "%s is too long", what);
    return TERN_OK;
}

/* Adds a metadata entry, copying key and data (data_size bytes; lengths for ARR_STRING). */
static tern_status tern_writer_add_meta(tern_writer *w, const char *key, uint32_t type,
                                        uint32_t count, uint64_t value, const void *data,
                                        size_t data_size, const uint32_t *lengths,
                                        tern_error *err) {
    if (!w) return tern_fail(err, TERN_ERR_INVALID_ARG, "writer is NULL");
    if (w->failed) return tern_fail(err, w->failed, "writer: an earlier write failed");
    size_t klen = 0;
    tern_status st = tern_writer_check_name("metadata key", key, &klen, err);
    if (st != TERN_OK) return st;
    if (data_size > 0 && !data)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "metadata '%s': value is NULL", key);
    for (size_t i = 0; i < w->n_meta; i++) {
        if (tern_wname_eq(w->meta[i].key, w->meta[i].key_length, key, klen))
            return tern_fail(err, TERN_ERR_INVALID_ARG, "metadata key '%s' is set twice", key);
    }
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 16;
        tern_wmeta *m = realloc(w->meta, cap * sizeof *m);
        if (!m) return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for metadata '%s'", key);
        w->meta = m;
        w->cap_meta = cap;
    }
    tern_wmeta e;
    memset(&e, 0, sizeof e);
    e.key = malloc(klen + 1);
    e.data = data_size ? malloc(data_size) : NULL;
    e.str_lengths = lengths && count ? malloc((size_t)count * sizeof *lengths) : NULL;
    if (!e.key || (data_size && !e.data) || (lengths && count && !e.str_lengths)) {
        free(e.key);
        free(e.data);
        free(e.str_lengths);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for metadata '%s'", key);
    }
    memcpy(e.key, key, klen + 1);
    e.key_length = klen;
    e.type = type;
    e.count = count;
    e.value = value;
    if (data_size) memcpy(e.data, data, data_size);
    e.data_size = data_size;
    if (e.str_lengths) memcpy(e.str_lengths, lengths, (size_t)count * sizeof *lengths);
    w->meta[w->n_meta++] = e;
    return TERN_OK;
}

tern_status tern_writer_set_u32(tern_writer *w, const char *key, uint32_t value, tern_error *err) {
    return tern_writer_add_meta(w, key, TERN_META_U32, 1, value, NULL, 0, NULL, err);
}

tern_status tern_writer_set_i32(tern_writer *w, const char *key, int32_t value, tern_error *err) {
    uint32_t u;
    memcpy(&u, &value, sizeof u);
    return tern_writer_add_meta(w, key, TERN_META_I32, 1, u, NULL, 0, NULL, err);
}

tern_status tern_writer_set_u64(tern_writer *w, const char *key, uint64_t value, tern_error *err) {
    return tern_writer_add_meta(w, key, TERN_META_U64, 1, value, NULL, 0, NULL, err);
}

tern_status tern_writer_set_f32(tern_writer *w, const char *key, float value, tern_error *err) {
    uint32_t u;
    memcpy(&u, &value, sizeof u);
    return tern_writer_add_meta(w, key, TERN_META_F32, 1, u, NULL, 0, NULL, err);
}

tern_status tern_writer_set_f64(tern_writer *w, const char *key, double value, tern_error *err) {
    uint64_t u;
    memcpy(&u, &value, sizeof u);
    return tern_writer_add_meta(w, key, TERN_META_F64, 1, u, NULL, 0, NULL, err);
}

tern_status tern_writer_set_str(tern_writer *w, const char *key, const char *value, size_t length,
                                tern_error *err) {
    if (length > UINT32_MAX)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "metadata '%s': string is too long", key ? key : "");
    return tern_writer_add_meta(w, key, TERN_META_STRING, (uint32_t)length, 0, value, length, NULL, err);
}

tern_status tern_writer_set_arr_u32(tern_writer *w, const char *key, const uint32_t *values,
                                    uint32_t count, tern_error *err) {
    return tern_writer_add_meta(w, key, TERN_META_ARR_U32, count, 0, values, (size_t)count * 4, NULL, err);
}

tern_status tern_writer_set_arr_i32(tern_writer *w, const char *key, const int32_t *values,
                                    uint32_t count, tern_error *err) {
    return tern_writer_add_meta(w, key, TERN_META_ARR_I32, count, 0, values, (size_t)count * 4, NULL, err);
}

tern_status tern_writer_set_arr_f32(tern_writer *w, const char *key, const float *values,
                                    uint32_t count, tern_error *err) {
    return tern_writer_add_meta(w, key, TERN_META_ARR_F32, count, 0, values, (size_t)count * 4, NULL, err);
}

tern_status tern_writer_set_arr_str(tern_writer *w, const char *key, const char *const *strings,
                                    const uint32_t *lengths, uint32_t count, tern_error *err) {
    if (count > 0 && (!strings || !lengths))
        return tern_fail(err, TERN_ERR_INVALID_ARG, "metadata '%s': NULL strings", key ? key : "");
    /* Concatenate into one buffer so the entry owns a single copy. */
    size_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (lengths[i] > 0 && !strings[i])
            return tern_fail(err, TERN_ERR_INVALID_ARG, "metadata '%s': string %u is NULL", key ? key : "", i);
        total += lengths[i];
        if (total > UINT32_MAX)
            return tern_fail(err, TERN_ERR_INVALID_ARG, "metadata '%s': strings exceed 4 GiB", key ? key : "");
    }
    uint8_t *cat = total ? malloc(total) : NULL;
    if (total && !cat) return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for metadata '%s'", key ? key : "");
    size_t at = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (lengths[i]) memcpy(cat + at, strings[i], lengths[i]);
        at += lengths[i];
    }
    tern_status st = tern_writer_add_meta(w, key, TERN_META_ARR_STRING, count, 0, cat, total,
                                          lengths, err);
    free(cat);
    return st;
}

tern_status tern_writer_add_tensor(tern_writer *w, const char *name, const tern_tensor_desc *desc,
                                   const void *const planes[TERN_PLANE_COUNT], tern_error *err) {
    if (!w || !desc) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_writer_add_tensor: NULL argument");
    if (w->failed) return tern_fail(err, w->failed, "writer: an earlier write failed");
    size_t nlen = 0;
    tern_status st = tern_writer_check_name("tensor name", name, &nlen, err);
    if (st != TERN_OK) return st;
    uint64_t sizes[TERN_PLANE_COUNT];
    if (tern_tensor_plane_sizes(desc, sizes) != 0)
        return tern_fail(err, TERN_ERR_INVALID_ARG,
                         "tensor '%s': inconsistent description (encoding %s, ndim %u, group_size %u, "
                         "sparse %u:%u, layout %u, tile_rows %u, flags 0x%x)",
                         name, tern_encoding_name(desc->encoding), desc->ndim, desc->group_size,
                         desc->sparse_n, desc->sparse_m, (unsigned)desc->layout, desc->tile_rows,
                         desc->flags);
    for (int p = 0; p < TERN_PLANE_COUNT; p++) {
        const void *src = planes ? planes[p] : NULL;
        if (sizes[p] > 0 && !src)
            return tern_fail(err, TERN_ERR_INVALID_ARG, "tensor '%s': plane %d (%llu bytes) is NULL",
                             name, p, (unsigned long long)sizes[p]);
        if (sizes[p] == 0 && src)
            return tern_fail(err, TERN_ERR_INVALID_ARG,
                             "tensor '%s': plane %d is absent for this description but not NULL", name, p);
        if (sizes[p] > SIZE_MAX)
            return tern_fail(err, TERN_ERR_INVALID_ARG, "tensor '%s': plane %d is too large", name, p);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        if (tern_wname_eq(w->tensors[i].name, w->tensors[i].name_length, name, nlen))
            return tern_fail(err, TERN_ERR_INVALID_ARG, "tensor '%s' is added twice", name);
    }
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        tern_wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for tensor '%s'", name);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    tern_wtensor t;
    memset(&t, 0, sizeof t);
    t.name = malloc(nlen + 1);
    if (!t.name) return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for tensor '%s'", name);
    memcpy(t.name, name, nlen + 1);
    t.name_length = nlen;
    t.rec.name_length = (uint32_t)nlen;
    t.rec.encoding = (uint16_t)desc->encoding;
    t.rec.layout = (uint16_t)desc->layout;
    t.rec.ndim = desc->ndim;
    for (int i = 0; i < 4; i++) t.rec.dims[i] = desc->dims[i];
    t.rec.group_size = desc->group_size;
    t.rec.sparse_n = desc->sparse_n;
    t.rec.sparse_m = desc->sparse_m;
    t.rec.flags = desc->flags;
    t.rec.tile_rows = desc->tile_rows;
    for (int p = 0; p < TERN_PLANE_COUNT && st == TERN_OK; p++) {
        if (sizes[p] == 0) continue;
        st = tern_writer_pad(w, TERN_FILE_ALIGN, 1, err);
        t.rec.planes[p].offset = w->pos;
        t.rec.planes[p].size = sizes[p];
        if (st == TERN_OK) st = tern_writer_write(w, planes[p], (size_t)sizes[p], 1, err);
    }
    if (st != TERN_OK) {
        free(t.name);
        return tern_fail_context(err, st, "tensor '%s'", name);
    }
    w->tensors[w->n_tensors++] = t;
    return TERN_OK;
}

static int tern_wcmp(const char *a, size_t alen, const char *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

static int tern_wmeta_cmp(const void *a, const void *b) {
    const tern_wmeta *x = a, *y = b;
    return tern_wcmp(x->key, x->key_length, y->key, y->key_length);
}

static int tern_wtensor_cmp(const void *a, const void *b) {
    const tern_wtensor *x = a, *y = b;
    return tern_wcmp(x->name, x->name_length, y->name, y->name_length);
}

/* Appends bytes to STRINGS and returns their offset, which must fit a u32:
 * -2 when it does not, -1 when out of memory. */
static int tern_strings_add(tern_buf *s, const void *p, size_t n, uint32_t *off) {
    if (s->n > UINT32_MAX || n > UINT32_MAX - s->n) return -2;
    *off = (uint32_t)s->n;
    return tern_buf_append(s, p, n);
}

/* Builds STRINGS, METADATA, BLOB and TENSORS in memory, in sorted order. */
static tern_status tern_writer_build_tables(tern_writer *w, tern_buf *strings, tern_buf *meta,
                                            tern_buf *blob, tern_buf *tensors, tern_error *err) {
    if (w->n_meta > 1) qsort(w->meta, w->n_meta, sizeof *w->meta, tern_wmeta_cmp);
    if (w->n_tensors > 1) qsort(w->tensors, w->n_tensors, sizeof *w->tensors, tern_wtensor_cmp);
    if (w->n_meta > UINT32_MAX || w->n_tensors > UINT32_MAX)
        return tern_fail(err, TERN_ERR_INVALID_ARG, "too many metadata entries or tensors");
    uint32_t head[2] = {(uint32_t)w->n_meta, 0};
    int rc;
    if (tern_buf_append(meta, head, sizeof head) != 0) goto no_memory;
    for (size_t i = 0; i < w->n_meta; i++) {
        tern_wmeta *m = &w->meta[i];
        tern_meta_entry e;
        memset(&e, 0, sizeof e);
        e.key_length = (uint32_t)m->key_length;
        e.type = m->type;
        e.count = m->count;
        e.value = m->value;
        if ((rc = tern_strings_add(strings, m->key, m->key_length, &e.key_offset)) != 0) goto strings_failed;
        if (m->type == TERN_META_STRING) {
            uint32_t off;
            if ((rc = tern_strings_add(strings, m->data, m->data_size, &off)) != 0) goto strings_failed;
            e.value = off;
        } else if (m->type == TERN_META_ARR_STRING) {
            if (tern_buf_pad(blob, 8) != 0) goto no_memory;
            e.value = blob->n;
            size_t at = 0;
            for (uint32_t k = 0; k < m->count; k++) {
                uint32_t pair[2];
                const uint8_t *src = m->str_lengths[k] ? m->data + at : NULL;
                if ((rc = tern_strings_add(strings, src, m->str_lengths[k], &pair[0])) != 0) goto strings_failed;
                pair[1] = m->str_lengths[k];
                at += m->str_lengths[k];
                if (tern_buf_append(blob, pair, sizeof pair) != 0) goto no_memory;
            }
        } else if (m->type >= TERN_META_ARR_U32) {
            if (tern_buf_pad(blob, 8) != 0) goto no_memory;
            e.value = blob->n;
            if (tern_buf_append(blob, m->data, m->data_size) != 0) goto no_memory;
        }
        if (tern_buf_append(meta, &e, sizeof e) != 0) goto no_memory;
    }
    head[0] = (uint32_t)w->n_tensors;
    if (tern_buf_append(tensors, head, sizeof head) != 0) goto no_memory;
    for (size_t i = 0; i < w->n_tensors; i++) {
        tern_wtensor *t = &w->tensors[i];
        if ((rc = tern_strings_add(strings, t->name, t->name_length, &t->rec.name_offset)) != 0) goto strings_failed;
        if (tern_buf_append(tensors, &t->rec, sizeof t->rec) != 0) goto no_memory;
    }
    /* Sections are padded to 8 bytes so the next one starts aligned. */
    if (tern_buf_pad(strings, 8) != 0 || tern_buf_pad(blob, 8) != 0) goto no_memory;
    return TERN_OK;
strings_failed:
    if (rc == -2) goto too_big;
no_memory:
    return tern_fail(err, TERN_ERR_NO_MEMORY, "no memory for the file's tables");
too_big:
    return tern_fail(err, TERN_ERR_INVALID_ARG, "STRINGS would exceed 4 GiB");
}

/* fsync of the folder that holds path, so the rename survives a crash. */
static tern_status tern_sync_parent(const char *path, tern_error *err) {
    /* No allocation: this runs after the rename, when failing for want of
     * memory would report an error for a file already in place. */
    char dir[PATH_MAX];
    if (tern_parent_dir(path, dir, sizeof dir) != 0)
        return tern_fail(err, TERN_ERR_IO, "%s: folder name too long to sync", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    tern_status st = TERN_OK;
    if (fd < 0) {
        st = tern_fail(err, TERN_ERR_IO, "%s: cannot open folder to sync: %s", dir, strerror(errno));
    } else {
        /* Some file systems cannot sync folders (EINVAL); the rename is still done. */
        if (fsync(fd) != 0 && errno != EINVAL)
            st = tern_fail(err, TERN_ERR_IO, "%s: fsync of folder failed: %s", dir, strerror(errno));
        close(fd);
    }
    return st;
}

tern_status tern_writer_finish(tern_writer *w, tern_error *err) {
    if (!w) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_writer_finish: writer is NULL");
    tern_status st = w->failed;
    if (st != TERN_OK) {
        tern_fail(err, st, "%s: an earlier write failed", w->tmp_path);
        tern_writer_discard(w);
        return st;
    }
    tern_buf strings = {0}, meta = {0}, blob = {0}, tensors = {0};
    tern_section_entry table[5];
    uint32_t n_sections = 0;
    memset(table, 0, sizeof table);

    /* DATA: from the end of the header to the last plane, padded to 8. */
    st = tern_writer_pad(w, 8, 1, err);
    if (st == TERN_OK) {
        table[n_sections++] = (tern_section_entry){TERN_SECTION_DATA, 0, TERN_FILE_HEADER_SIZE,
                                                   w->pos - TERN_FILE_HEADER_SIZE,
                                                   XXH64_digest(w->data_hash)};
        st = tern_writer_build_tables(w, &strings, &meta, &blob, &tensors, err);
    }
    const struct {
        uint32_t kind;
        const tern_buf *buf;
    } order[] = {{TERN_SECTION_STRINGS, &strings},
                 {TERN_SECTION_METADATA, &meta},
                 {TERN_SECTION_BLOB, &blob},
                 {TERN_SECTION_TENSORS, &tensors}};
    for (size_t i = 0; i < 4 && st == TERN_OK; i++) {
        const tern_buf *b = order[i].buf;
        if (order[i].kind == TERN_SECTION_BLOB && b->n == 0) continue; /* BLOB is optional */
        table[n_sections++] = (tern_section_entry){order[i].kind, 0, w->pos, b->n,
                                                   XXH64(b->p, b->n, 0)};
        st = tern_writer_write(w, b->p, b->n, 0, err);
    }
    free(strings.p);
    free(meta.p);
    free(blob.p);
    free(tensors.p);

    tern_file_header h;
    memset(&h, 0, sizeof h);
    if (st == TERN_OK) {
        memcpy(h.magic, TERN_FILE_MAGIC, 8);
        h.version_major = TERN_FILE_VERSION_MAJOR;
        h.version_minor = TERN_FILE_VERSION_MINOR;
        h.header_size = TERN_FILE_HEADER_SIZE;
        h.section_count = n_sections;
        h.section_table_offset = w->pos;
        h.section_table_xxh64 = XXH64(table, n_sections * sizeof table[0], 0);
        st = tern_writer_write(w, table, n_sections * sizeof table[0], 0, err);
    }
    if (st == TERN_OK) {
        h.file_size = w->pos;
        h.header_xxh64 = XXH64(&h, offsetof(tern_file_header, header_xxh64), 0);
        const uint8_t *p = (const uint8_t *)&h;
        size_t done = 0;
        while (done < sizeof h) {
            ssize_t n = pwrite(w->fd, p + done, sizeof h - done, (off_t)done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                st = tern_fail(err, TERN_ERR_IO, "%s: writing the header failed: %s", w->tmp_path,
                               strerror(n < 0 ? errno : ENOSPC));
                break;
            }
            done += (size_t)n;
        }
    }
    if (st == TERN_OK && fsync(w->fd) != 0)
        st = tern_fail(err, TERN_ERR_IO, "%s: fsync failed: %s", w->tmp_path, strerror(errno));
    if (st == TERN_OK) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc != 0) st = tern_fail(err, TERN_ERR_IO, "%s: close failed: %s", w->tmp_path, strerror(errno));
    }
    if (st == TERN_OK && rename(w->tmp_path, w->dst_path) != 0)
        st = tern_fail(err, TERN_ERR_IO, "cannot rename %s to %s: %s", w->tmp_path, w->dst_path,
                       strerror(errno));
    if (st != TERN_OK) {
        tern_writer_discard(w);
        return st;
    }
    if (w->lock_fd >= 0) close(w->lock_fd);
    st = tern_sync_parent(w->dst_path, err);
    tern_writer_free(w);
    return st;
}

void tern_writer_abort(tern_writer *w) {
    if (w) tern_writer_discard(w);
}
