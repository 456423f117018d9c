/* Board profiles (boards/<board>/profile.txt): `key = value` lines; `#` starts
 * a comment, where each figure names its source. Unknown keys are errors, so
 * a misspelt key cannot silently leave a figure at zero. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/cpu_features.h"

#define PROFILE_MAX_BYTES (1u << 20)

static const struct {
    const char *name;
    uint64_t flags;
} tern_profile_isa_words[] = {
    {"neon", TERN_CPU_ARM_NEON},       {"vfpv4", TERN_CPU_ARM_VFPV4},
    {"fp16cvt", TERN_CPU_ARM_FP16CVT}, {"dotprod", TERN_CPU_ARM_DOTPROD},
    {"i8mm", TERN_CPU_ARM_I8MM},       {"avx2", TERN_CPU_X86_AVX2},
    {"fma3", TERN_CPU_X86_FMA3},       {"f16c", TERN_CPU_X86_F16C},
    {"avx512f", TERN_CPU_X86_AVX512F}, {"avx512bw", TERN_CPU_X86_AVX512BW},
    {"avx512vl", TERN_CPU_X86_AVX512VL}, {"avx512dq", TERN_CPU_X86_AVX512DQ},
    {"avx512vnni", TERN_CPU_X86_AVX512VNNI},
};

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = '\0';
    return s;
}

static int parse_u32(const char *v, uint32_t *out) {
    if (*v < '0' || *v > '9') return 0;
    errno = 0;
    char *end;
    const unsigned long x = strtoul(v, &end, 10);
    if (errno || *end || x > UINT32_MAX) return 0;
    *out = (uint32_t)x;
    return 1;
}

static int parse_gbs(const char *v, double *out) {
    if (*v < '0' || *v > '9') return 0;
    char *end;
    const double x = strtod(v, &end);
    if (*end || !(x >= 0 && x < 1e6)) return 0;
    *out = x;
    return 1;
}

static int copy_str(char *dst, size_t cap, const char *v) {
    const size_t n = strlen(v);
    if (n == 0 || n >= cap) return 0;
    memcpy(dst, v, n + 1);
    return 1;
}

static tern_status parse_isa(char *v, uint64_t *flags, tern_error *err, unsigned line) {
    *flags = 0;
    for (char *w = strtok(v, " \t"); w; w = strtok(NULL, " \t")) {
        size_t i = 0;
        while (i < sizeof tern_profile_isa_words / sizeof tern_profile_isa_words[0] &&
               strcmp(w, tern_profile_isa_words[i].name))
            i++;
        if (i == sizeof tern_profile_isa_words / sizeof tern_profile_isa_words[0])
            return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u: unknown ISA feature '%s'", line, w);
        *flags |= tern_profile_isa_words[i].flags;
    }
    return TERN_OK;
}

/* One `key = value`; 0 when the value does not fit the key. */
static tern_status parse_pair(tern_board *b, const char *key, char *v, uint32_t *max_cluster,
                              tern_error *err, unsigned line) {
    int ok = 1;
    if (!strcmp(key, "name")) ok = copy_str(b->name, sizeof b->name, v);
    else if (!strcmp(key, "soc")) ok = copy_str(b->soc, sizeof b->soc, v);
    else if (!strcmp(key, "arch")) {
        if (!strcmp(v, "aarch64")) b->cpu.arch = TERN_CPU_ARCH_AARCH64;
        else if (!strcmp(v, "arm32")) b->cpu.arch = TERN_CPU_ARCH_ARM32;
        else if (!strcmp(v, "x86_64")) b->cpu.arch = TERN_CPU_ARCH_X86_64;
        else ok = 0;
    } else if (!strcmp(key, "isa")) return parse_isa(v, &b->cpu.flags, err, line);
    else if (!strcmp(key, "l3_kib")) ok = parse_u32(v, &b->l3_kib);
    else if (!strcmp(key, "mem.type")) ok = copy_str(b->mem_type, sizeof b->mem_type, v);
    else if (!strcmp(key, "mem.bus_bits")) ok = parse_u32(v, &b->mem_bus_bits);
    else if (!strcmp(key, "mem.mts")) ok = parse_u32(v, &b->mem_mts);
    else if (!strcmp(key, "mem.peak_gbs")) ok = parse_gbs(v, &b->mem_peak_gbs);
    else if (!strcmp(key, "mem.gbs")) ok = parse_gbs(v, &b->mem_gbs);
    else if (!strcmp(key, "mem.core_gbs")) ok = parse_gbs(v, &b->mem_core_gbs);
    else if (!strncmp(key, "cluster.", 8) && key[8] >= '0' && key[8] <= '9' && key[9] == '.') {
        const uint32_t c = (uint32_t)(key[8] - '0');
        if (c >= TERN_CPU_MAX_CLUSTERS)
            return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u: cluster %u, at most %u clusters",
                             line, c, TERN_CPU_MAX_CLUSTERS);
        if (c + 1 > *max_cluster) *max_cluster = c + 1;
        tern_cpu_cluster *cl = &b->cpu.clusters[c];
        const char *field = key + 10;
        if (!strcmp(field, "cores")) ok = parse_u32(v, &cl->cores) && cl->cores > 0;
        else if (!strcmp(field, "uarch")) ok = copy_str(cl->uarch, sizeof cl->uarch, v);
        else if (!strcmp(field, "max_mhz")) ok = parse_u32(v, &cl->max_mhz);
        else if (!strcmp(field, "l1d_kib")) ok = parse_u32(v, &b->l1d_kib[c]);
        else if (!strcmp(field, "l2_kib")) ok = parse_u32(v, &b->l2_kib[c]);
        else return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u: unknown key '%s'", line, key);
    } else {
        return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u: unknown key '%s'", line, key);
    }
    if (!ok) return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u: bad value '%s' for %s", line, v, key);
    return TERN_OK;
}

tern_status tern_board_parse(const char *text, size_t len, tern_board *b, tern_error *err) {
    if (!text || !b) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_board_parse: NULL argument");
    memset(b, 0, sizeof *b);
    uint32_t n_clusters = 0;
    unsigned line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        const size_t end = nl ? (size_t)(nl - text) : len;
        char buf[512];
        line++;
        if (end - pos >= sizeof buf)
            return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u is longer than %zu bytes", line,
                             sizeof buf - 1);
        memcpy(buf, text + pos, end - pos);
        buf[end - pos] = '\0';
        if (strlen(buf) != end - pos)
            return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u holds a NUL byte", line);
        pos = end + 1;
        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        char *s = trim(buf);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) return tern_fail(err, TERN_ERR_FORMAT, "board profile line %u: expected key = value", line);
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        tern_status st = parse_pair(b, key, val, &n_clusters, err, line);
        if (st != TERN_OK) return st;
    }
    if (!b->name[0]) return tern_fail(err, TERN_ERR_FORMAT, "board profile: no name");
    if (b->cpu.arch == TERN_CPU_ARCH_OTHER)
        return tern_fail(err, TERN_ERR_FORMAT, "board profile %s: no arch (aarch64, arm32 or x86_64)", b->name);
    if (n_clusters == 0) return tern_fail(err, TERN_ERR_FORMAT, "board profile %s: no cluster.0.cores", b->name);
    for (uint32_t c = 0; c < n_clusters; c++)
        if (!b->cpu.clusters[c].cores)
            return tern_fail(err, TERN_ERR_FORMAT, "board profile %s: cluster %u has no cores", b->name, c);
    if (!(b->mem_gbs > 0))
        return tern_fail(err, TERN_ERR_FORMAT, "board profile %s: no mem.gbs (sustained bandwidth)", b->name);
    b->cpu.n_clusters = n_clusters;
    uint32_t cores = 0;
    for (uint32_t c = 0; c < n_clusters; c++) cores += b->cpu.clusters[c].cores;
    b->cpu.n_online = cores;
    return TERN_OK;
}

tern_status tern_board_load(const char *path, tern_board *b, tern_error *err) {
    if (!path || !b) return tern_fail(err, TERN_ERR_INVALID_ARG, "tern_board_load: NULL argument");
    FILE *fp = fopen(path, "rb");
    if (!fp) return tern_fail(err, TERN_ERR_IO, "cannot open board profile %s: %s", path, strerror(errno));
    char *text = malloc(PROFILE_MAX_BYTES);
    if (!text) {
        fclose(fp);
        return tern_fail(err, TERN_ERR_NO_MEMORY, "out of memory reading %s", path);
    }
    const size_t n = fread(text, 1, PROFILE_MAX_BYTES, fp);
    const int bad = ferror(fp) || (n == PROFILE_MAX_BYTES && fgetc(fp) != EOF);
    fclose(fp);
    tern_status st;
    if (bad) {
        st = tern_fail(err, TERN_ERR_IO, "cannot read board profile %s (or over 1 MiB)", path);
    } else {
        st = tern_board_parse(text, n, b, err);
        if (st != TERN_OK) tern_fail_context(err, st, "%s", path);
    }
    free(text);
    return st;
}

double tern_board_bandwidth_gbs(const tern_board *b, uint32_t threads) {
    if (!(b->mem_core_gbs > 0)) return b->mem_gbs;
    const double bw = b->mem_core_gbs * (threads ? threads : 1);
    return bw < b->mem_gbs ? bw : b->mem_gbs;
}
