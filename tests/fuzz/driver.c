/* Replay driver: runs a fuzz target over files, so the targets build with any
 * compiler and their seed corpora run as ordinary tests. Arguments are files
 * or folders (every regular file directly inside, in name order); an argument
 * "@SHARED/rel/path" names a path under $TERN_SHARED_DIR and is skipped, with
 * a note, when that variable is unset or the path is missing. Exits 0 when
 * every input ran; a crash or sanitizer report ends the process as usual. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    size_t cap = 1 << 16, size = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        size += fread(buf + size, 1, cap - size, f);
        if (size < cap) break;
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    const int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    /* An exact-size copy, so that reads past the end reach the sanitizers. */
    uint8_t *exact = malloc(size ? size : 1);
    if (!exact) {
        free(buf);
        return 1;
    }
    memcpy(exact, buf, size);
    free(buf);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    printf("ok %s (%zu bytes)\n", path, size);
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open folder %s\n", dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int failed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                failed = 1;
                break;
            }
            names = grown;
        }
        const size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n]) {
            failed = 1;
            break;
        }
        snprintf(names[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat s;
        if (!failed && stat(names[i], &s) == 0 && S_ISREG(s.st_mode)) failed |= run_file(names[i]);
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv) {
    int failed = 0, ran = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char path[4096];
        if (strncmp(arg, "@SHARED/", 8) == 0) {
            const char *shared = getenv("TERN_SHARED_DIR");
            if (!shared || !*shared) {
                printf("skip %s: TERN_SHARED_DIR is not set\n", arg);
                continue;
            }
            snprintf(path, sizeof path, "%s/%s", shared, arg + 8);
            struct stat s;
            if (stat(path, &s) != 0) {
                printf("skip %s: not present\n", path);
                continue;
            }
            arg = path;
        }
        struct stat s;
        if (stat(arg, &s) != 0) {
            fprintf(stderr, "no such file or folder: %s\n", arg);
            failed = 1;
            continue;
        }
        failed |= S_ISDIR(s.st_mode) ? run_dir(arg) : run_file(arg);
        ran++;
    }
    if (!ran) fprintf(stderr, "usage: %s FILE|FOLDER|@SHARED/path...\n", argv[0]);
    return failed || !ran;
}
