/* Helpers shared by the fuzz targets whose readers take paths: a private
 * temporary folder per input, files written into it, and its removal. */
#ifndef TERN_TESTS_FUZZ_UTIL_H
#define TERN_TESTS_FUZZ_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Makes a fresh folder under $TMPDIR (or /tmp) into dir[cap]; 0 on success. */
static inline int fuzz_tmpdir(char *dir, size_t cap) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    if ((size_t)snprintf(dir, cap, "%s/tern-fuzz-XXXXXX", base) >= cap) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

/* Writes data to dir/name and its full path into path[cap]; 0 on success. */
static inline int fuzz_write(const char *dir, const char *name, const void *data, size_t size,
                             char *path, size_t cap) {
    if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const int ok = fwrite(data, 1, size, f) == size;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Removes every file in dir (which holds no sub-folders), then dir. */
static inline void fuzz_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < sizeof path) unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

#endif
