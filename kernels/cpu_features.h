/* A CPU described by what the tier choice and the thread count depend on: its
 * architecture, ISA feature bits and clusters. The runtime fills one from the
 * machine it runs on (cpuinfo, HWCAP); tests and `tern bench --board` fill one
 * from a board profile (boards/<board>/profile.txt). tern_isa_select and
 * tern_default_threads are pure functions of it, so a board's tier and thread
 * count can be checked on any build machine. */
#ifndef TERN_KERNELS_CPU_FEATURES_H
#define TERN_KERNELS_CPU_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "tern.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tern_cpu_arch {
    TERN_CPU_ARCH_OTHER = 0,
    TERN_CPU_ARCH_X86_64 = 1,
    TERN_CPU_ARCH_ARM32 = 2, /* AArch32 user space (armhf), also on a 64-bit core */
    TERN_CPU_ARCH_AARCH64 = 3,
} tern_cpu_arch;

/* Feature bits (tern_cpu_features.flags). */
#define TERN_CPU_X86_AVX2 (UINT64_C(1) << 0)
#define TERN_CPU_X86_FMA3 (UINT64_C(1) << 1)
#define TERN_CPU_X86_F16C (UINT64_C(1) << 2)
#define TERN_CPU_X86_AVX512F (UINT64_C(1) << 3)
#define TERN_CPU_X86_AVX512BW (UINT64_C(1) << 4)
#define TERN_CPU_X86_AVX512VL (UINT64_C(1) << 5)
#define TERN_CPU_X86_AVX512DQ (UINT64_C(1) << 6)
#define TERN_CPU_X86_AVX512VNNI (UINT64_C(1) << 7)
#define TERN_CPU_ARM_NEON (UINT64_C(1) << 16)    /* AdvSIMD */
#define TERN_CPU_ARM_VFPV4 (UINT64_C(1) << 17)   /* fused multiply-add (implied on AArch64) */
#define TERN_CPU_ARM_FP16CVT (UINT64_C(1) << 18) /* half <-> float conversion (idem) */
#define TERN_CPU_ARM_DOTPROD (UINT64_C(1) << 19) /* sdot/udot (ARMv8.2 FEAT_DotProd) */
#define TERN_CPU_ARM_I8MM (UINT64_C(1) << 20)    /* smmla (ARMv8.6 FEAT_I8MM) */

#define TERN_CPU_MAX_CLUSTERS 8

/* Cores of one microarchitecture and clock. */
typedef struct tern_cpu_cluster {
    uint32_t cores;
    uint32_t max_mhz; /* 0: unknown */
    char uarch[24];   /* "cortex-a76", ...; "" when unknown */
} tern_cpu_cluster;

typedef struct tern_cpu_features {
    tern_cpu_arch arch;
    uint64_t flags;    /* TERN_CPU_* */
    uint32_t n_online; /* processors the OS offers; 0: unknown (the clusters' sum) */
    uint32_t n_clusters;
    tern_cpu_cluster clusters[TERN_CPU_MAX_CLUSTERS];
} tern_cpu_features;

/* The machine this runs on: cpuinfo for clusters and x86 flags, the auxiliary
 * vector (AT_HWCAP, AT_HWCAP2) for Arm flags on Linux. */
void tern_cpu_features_host(tern_cpu_features *f);

/* Fills f->arch and f->flags from Linux HWCAP words as getauxval returns them
 * for `arch` (TERN_CPU_ARCH_AARCH64 or TERN_CPU_ARCH_ARM32: the bit layouts
 * differ); leaves the clusters alone. */
void tern_cpu_features_from_hwcap(tern_cpu_features *f, tern_cpu_arch arch, uint64_t hwcap,
                                  uint64_t hwcap2);

/* Whether a CPU with features f can run every kernel of tier `isa` (a tier
 * needs the tiers below it on its architecture; dotprod and i8mm exist only
 * on AArch64, the 32-bit neon tier needs NEON + VFPv4 + half conversions). */
int tern_isa_supported(const tern_cpu_features *f, tern_isa isa);

/* The highest tier in `mask` that f supports, whether or not this build
 * carries its kernels (tern_isa_best answers for this build and machine). */
tern_isa tern_isa_select(const tern_cpu_features *f, uint64_t mask);

/* Name <-> known Arm core, and whether it is an in-order efficiency core
 * (Cortex-A5/A7/A32/A35/A53/A55/A510/A520). */
const char *tern_cpu_arm_part_name(uint32_t part); /* MIDR part number; NULL if unknown */
int tern_cpu_uarch_is_efficiency(const char *uarch);

/* Threads for a session when the caller gives none: one per performance core.
 * With clusters of both kinds, only the cores of clusters that are not
 * efficiency designs count (Snapdragon 8 Gen 3: 1 X4 + 5 A720, not the two
 * A520): decode is bound by memory bandwidth, which the big cores already
 * saturate, and a fork/join step waits for its slowest thread. With one kind
 * of core (all of them, or all efficiency cores as on a Pi Zero 2 W) every
 * online processor counts. Bounded by n_online when known; at least 1. */
uint32_t tern_default_threads(const tern_cpu_features *f);

/* A board profile (boards/<board>/profile.txt): `key = value` lines, `#`
 * starts a comment (sources of the figures). See boards/README.md. */
typedef struct tern_board {
    char name[32];
    char soc[64];
    tern_cpu_features cpu; /* arch, flags (from `isa`), clusters */
    uint32_t l1d_kib[TERN_CPU_MAX_CLUSTERS], l2_kib[TERN_CPU_MAX_CLUSTERS];
    uint32_t l3_kib;    /* 0: none */
    char mem_type[32];  /* "LPDDR4-3200" */
    uint32_t mem_bus_bits, mem_mts;
    double mem_peak_gbs; /* bus_bits / 8 * MT/s: the interface's peak */
    double mem_gbs;      /* sustained, all cores (STREAM-like) */
    double mem_core_gbs; /* sustained, one core; 0: unknown */
} tern_board;

tern_status tern_board_parse(const char *text, size_t len, tern_board *b, tern_error *err);
tern_status tern_board_load(const char *path, tern_board *b, tern_error *err);

/* Sustained bandwidth `threads` threads can draw on board b, GB/s: one
 * core's share times threads, capped by the whole; the whole when the
 * per-core figure is unknown. */
double tern_board_bandwidth_gbs(const tern_board *b, uint32_t threads);

#ifdef __cplusplus
}
#endif
#endif
