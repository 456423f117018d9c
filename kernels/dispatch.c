/* Kernel dispatch: the CPU's features (cpuinfo, HWCAP), which tiers they
 * allow and how many threads they call for (pure functions of a
 * tern_cpu_features, so board profiles exercise them too), the names and
 * masks of the tiers, and the table fill, lowest tier first. Adding a tier is a line in
 * tern_kernel_tiers plus its init function; nothing here keeps mutable state
 * (cpuinfo_initialize is idempotent and thread-safe). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cpuinfo.h>

#if (defined(__aarch64__) || defined(__arm__)) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "kernels/cpu_features.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#if defined(__x86_64__)
#include "kernels/x86/x86.h"
#elif defined(__aarch64__) || defined(__arm__)
#include "kernels/arm/arm.h"
#endif

void tern_kernels_init_ref(tern_kernels *k) {
    k->linear[TERN_ENC_F32] = tern_f32_f32w_linear_ukernel__ref;
    k->linear[TERN_ENC_F16] = tern_f32_f16w_linear_ukernel__ref;
    k->linear[TERN_ENC_BF16] = tern_f32_bf16w_linear_ukernel__ref;
    k->linear[TERN_ENC_Q8] = tern_f32_q8w_linear_ukernel__ref;
    k->linear[TERN_ENC_Q4] = tern_f32_q4w_linear_ukernel__ref;
    k->linear_qa[TERN_ENC_Q8] = tern_qs8_q8w_linear_ukernel__ref;
    k->linear_qa[TERN_ENC_Q4] = tern_qs8_q4w_linear_ukernel__ref;
    k->quantize_rows = tern_f32_qs8_quantize_ukernel__ref;
    k->rmsnorm = tern_f32_rmsnorm_ukernel__ref;
    k->layernorm = tern_f32_layernorm_ukernel__ref;
    k->rope_half = tern_f32_rope_half_ukernel__ref;
    k->rope_interleaved = tern_f32_rope_interleaved_ukernel__ref;
    k->softmax = tern_f32_softmax_ukernel__ref;
    k->swiglu = tern_f32_swiglu_ukernel__ref;
    k->silu = tern_f32_silu_ukernel__ref;
    k->gelu = tern_f32_gelu_ukernel__ref;
    k->add = tern_f32_add_ukernel__ref;
    k->attention = tern_f32_attention_ukernel__ref;
    k->ssm_conv = tern_f32_ssm_conv_silu_ukernel__ref;
    k->ssm_scan = tern_f32_ssm_scan_ukernel__ref;
    k->rwkv_shift = tern_f32_rwkv_shift_ukernel__ref;
    k->wkv4 = tern_f32_wkv4_ukernel__ref;
    for (int e = TERN_ENC_F32; e <= TERN_ENC_BF16; e++) k->linear_nm[e] = tern_f32_nm_linear_ukernel__ref;
    k->linear_nm[TERN_ENC_Q8] = tern_f32_nm_linear_ukernel__ref;
    k->linear_nm[TERN_ENC_Q4] = tern_f32_nm_linear_ukernel__ref;
    k->linear_qa_nm[TERN_ENC_Q8] = tern_qs8_nm_linear_ukernel__ref;
    k->linear_qa_nm[TERN_ENC_Q4] = tern_qs8_nm_linear_ukernel__ref;
}

/* Every tier with kernels compiled into this build, lowest first. The ref
 * tier is always applied, whatever the mask. */
static const struct {
    tern_isa isa;
    void (*init)(tern_kernels *k);
} tern_kernel_tiers[] = {
    {TERN_ISA_REF, tern_kernels_init_ref},
#if defined(__x86_64__)
    {TERN_ISA_X86_AVX2, tern_kernels_init_avx2},
    {TERN_ISA_X86_AVX512, tern_kernels_init_avx512},
    {TERN_ISA_X86_AVX512VNNI, tern_kernels_init_avx512vnni},
#elif defined(__aarch64__)
    {TERN_ISA_ARM_NEON, tern_kernels_init_neon},
    {TERN_ISA_ARM_DOTPROD, tern_kernels_init_dotprod},
    {TERN_ISA_ARM_I8MM, tern_kernels_init_i8mm},
#elif defined(__arm__)
    {TERN_ISA_ARM_NEON, tern_kernels_init_neon}, /* ARMv7 NEON + VFPv4 */
#endif
};

/* ---- The CPU as features: filled from the host, from HWCAP words or from a
 * board profile (kernels/cpu_profile.c); the choices below read only it. */

void tern_cpu_features_from_hwcap(tern_cpu_features *f, tern_cpu_arch arch, uint64_t hwcap,
                                  uint64_t hwcap2) {
    f->arch = arch;
    f->flags = 0;
    if (arch == TERN_CPU_ARCH_AARCH64) {
        /* arch/arm64/include/uapi/asm/hwcap.h: ASIMD 1, ASIMDDP 20; HWCAP2_I8MM 13.
         * FMA and half conversions are part of AArch64's AdvSIMD. */
        if (hwcap & (UINT64_C(1) << 1))
            f->flags |= TERN_CPU_ARM_NEON | TERN_CPU_ARM_VFPV4 | TERN_CPU_ARM_FP16CVT;
        if (hwcap & (UINT64_C(1) << 20)) f->flags |= TERN_CPU_ARM_DOTPROD;
        if (hwcap2 & (UINT64_C(1) << 13)) f->flags |= TERN_CPU_ARM_I8MM;
    } else if (arch == TERN_CPU_ARCH_ARM32) {
        /* arch/arm/include/uapi/asm/hwcap.h: HALF 1, NEON 12, VFPv4 16,
         * ASIMDDP 24, I8MM 27 (HWCAP2 holds only crypto and crc32 there). */
        (void)hwcap2;
        if (hwcap & (UINT64_C(1) << 1)) f->flags |= TERN_CPU_ARM_FP16CVT;
        if (hwcap & (UINT64_C(1) << 12)) f->flags |= TERN_CPU_ARM_NEON;
        if (hwcap & (UINT64_C(1) << 16)) f->flags |= TERN_CPU_ARM_VFPV4;
        if (hwcap & (UINT64_C(1) << 24)) f->flags |= TERN_CPU_ARM_DOTPROD;
        if (hwcap & (UINT64_C(1) << 27)) f->flags |= TERN_CPU_ARM_I8MM;
    }
}

static const struct {
    uint16_t part;
    const char *name;
    int efficiency;
} tern_arm_parts[] = {
    /* MIDR_EL1.PartNum of Arm Ltd cores (implementer 0x41), from each core's TRM */
    {0xc05, "cortex-a5", 1},   {0xc07, "cortex-a7", 1},   {0xc09, "cortex-a9", 0},
    {0xc0f, "cortex-a15", 0},  {0xc0e, "cortex-a17", 0},  {0xd01, "cortex-a32", 1},
    {0xd03, "cortex-a53", 1},  {0xd04, "cortex-a35", 1},  {0xd05, "cortex-a55", 1},
    {0xd07, "cortex-a57", 0},  {0xd08, "cortex-a72", 0},  {0xd09, "cortex-a73", 0},
    {0xd0a, "cortex-a75", 0},  {0xd0b, "cortex-a76", 0},  {0xd0d, "cortex-a77", 0},
    {0xd41, "cortex-a78", 0},  {0xd44, "cortex-x1", 0},   {0xd46, "cortex-a510", 1},
    {0xd47, "cortex-a710", 0}, {0xd48, "cortex-x2", 0},   {0xd4d, "cortex-a715", 0},
    {0xd4e, "cortex-x3", 0},   {0xd80, "cortex-a520", 1}, {0xd81, "cortex-a720", 0},
    {0xd82, "cortex-x4", 0},   {0xd0c, "neoverse-n1", 0}, {0xd40, "neoverse-v1", 0},
    {0xd49, "neoverse-n2", 0},
};

#define TERN_ARM_PARTS_LEN (sizeof tern_arm_parts / sizeof tern_arm_parts[0])

const char *tern_cpu_arm_part_name(uint32_t part) {
    for (size_t i = 0; i < TERN_ARM_PARTS_LEN; i++)
        if (tern_arm_parts[i].part == part) return tern_arm_parts[i].name;
    return NULL;
}

int tern_cpu_uarch_is_efficiency(const char *uarch) {
    if (!uarch) return 0;
    for (size_t i = 0; i < TERN_ARM_PARTS_LEN; i++)
        if (!strcmp(tern_arm_parts[i].name, uarch)) return tern_arm_parts[i].efficiency;
    return 0;
}

void tern_cpu_features_host(tern_cpu_features *f) {
    memset(f, 0, sizeof *f);
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    f->n_online = online > 0 ? (uint32_t)online : 0;
    const int have_cpuinfo = cpuinfo_initialize();
#if defined(__x86_64__)
    f->arch = TERN_CPU_ARCH_X86_64;
    if (have_cpuinfo) {
        /* cpuinfo answers false on other architectures */
        const struct {
            int has;
            uint64_t flag;
        } x86[] = {
            {cpuinfo_has_x86_avx2(), TERN_CPU_X86_AVX2},
            {cpuinfo_has_x86_fma3(), TERN_CPU_X86_FMA3},
            {cpuinfo_has_x86_f16c(), TERN_CPU_X86_F16C},
            {cpuinfo_has_x86_avx512f(), TERN_CPU_X86_AVX512F},
            {cpuinfo_has_x86_avx512bw(), TERN_CPU_X86_AVX512BW},
            {cpuinfo_has_x86_avx512vl(), TERN_CPU_X86_AVX512VL},
            {cpuinfo_has_x86_avx512dq(), TERN_CPU_X86_AVX512DQ},
            {cpuinfo_has_x86_avx512vnni(), TERN_CPU_X86_AVX512VNNI},
        };
        for (size_t i = 0; i < sizeof x86 / sizeof x86[0]; i++)
            if (x86[i].has) f->flags |= x86[i].flag;
    }
#elif (defined(__aarch64__) || defined(__arm__)) && defined(__linux__)
    /* HWCAP rather than cpuinfo: Debian's cpuinfo has no i8mm query */
    tern_cpu_features_from_hwcap(f,
#if defined(__aarch64__)
                                 TERN_CPU_ARCH_AARCH64,
#else
                                 TERN_CPU_ARCH_ARM32,
#endif
                                 getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
#elif defined(__aarch64__)
    f->arch = TERN_CPU_ARCH_AARCH64;
    f->flags = TERN_CPU_ARM_NEON | TERN_CPU_ARM_VFPV4 | TERN_CPU_ARM_FP16CVT;
    if (have_cpuinfo && cpuinfo_has_arm_neon_dot()) f->flags |= TERN_CPU_ARM_DOTPROD;
#endif
    if (!have_cpuinfo) return;
    const uint32_t clusters = cpuinfo_get_clusters_count();
    for (uint32_t i = 0; i < clusters && f->n_clusters < TERN_CPU_MAX_CLUSTERS; i++) {
        const struct cpuinfo_cluster *c = cpuinfo_get_cluster(i);
        if (!c || !c->core_count) continue;
        tern_cpu_cluster *out = &f->clusters[f->n_clusters++];
        out->cores = c->core_count;
        out->max_mhz = (uint32_t)(c->frequency / 1000000u);
#if defined(__aarch64__) || defined(__arm__)
        const char *name = (c->midr >> 24) == 0x41 ? tern_cpu_arm_part_name((c->midr >> 4) & 0xfff) : NULL;
        if (name) snprintf(out->uarch, sizeof out->uarch, "%s", name);
#endif
    }
}

int tern_isa_supported(const tern_cpu_features *f, tern_isa isa) {
    const uint64_t fl = f->flags;
    switch (isa) {
    case TERN_ISA_REF:
        return 1;
    case TERN_ISA_X86_AVX2: {
        const uint64_t need = TERN_CPU_X86_AVX2 | TERN_CPU_X86_FMA3 | TERN_CPU_X86_F16C;
        return f->arch == TERN_CPU_ARCH_X86_64 && (fl & need) == need;
    }
    case TERN_ISA_X86_AVX512: {
        const uint64_t need =
            TERN_CPU_X86_AVX512F | TERN_CPU_X86_AVX512BW | TERN_CPU_X86_AVX512VL | TERN_CPU_X86_AVX512DQ;
        return tern_isa_supported(f, TERN_ISA_X86_AVX2) && (fl & need) == need;
    }
    case TERN_ISA_X86_AVX512VNNI:
        return tern_isa_supported(f, TERN_ISA_X86_AVX512) && (fl & TERN_CPU_X86_AVX512VNNI);
    case TERN_ISA_ARM_NEON: {
        const uint64_t need = TERN_CPU_ARM_NEON | TERN_CPU_ARM_VFPV4 | TERN_CPU_ARM_FP16CVT;
        return (f->arch == TERN_CPU_ARCH_AARCH64 || f->arch == TERN_CPU_ARCH_ARM32) && (fl & need) == need;
    }
    case TERN_ISA_ARM_DOTPROD:
        /* the sdot/smmla kernels are AArch64 code only */
        return f->arch == TERN_CPU_ARCH_AARCH64 && tern_isa_supported(f, TERN_ISA_ARM_NEON) &&
               (fl & TERN_CPU_ARM_DOTPROD);
    case TERN_ISA_ARM_I8MM:
        return tern_isa_supported(f, TERN_ISA_ARM_DOTPROD) && (fl & TERN_CPU_ARM_I8MM);
    }
    return 0;
}

uint32_t tern_default_threads(const tern_cpu_features *f) {
    uint32_t all = 0, perf = 0;
    for (uint32_t i = 0; i < f->n_clusters && i < TERN_CPU_MAX_CLUSTERS; i++) {
        all += f->clusters[i].cores;
        if (!tern_cpu_uarch_is_efficiency(f->clusters[i].uarch)) perf += f->clusters[i].cores;
    }
    uint32_t n;
    if (perf > 0 && perf < all) {
        n = perf; /* big.LITTLE: the performance clusters */
    } else {
        /* one kind of core: cpuinfo's core count is unreliable on some VMs
         * (one core for two processors), so the online count wins */
        n = f->n_online ? f->n_online : all;
    }
    if (f->n_online && n > f->n_online) n = f->n_online;
    return n ? n : 1;
}

/* Whether this build carries kernels for isa. */
static int tern_isa_compiled(tern_isa isa) {
    for (size_t i = 0; i < sizeof tern_kernel_tiers / sizeof tern_kernel_tiers[0]; i++)
        if (tern_kernel_tiers[i].isa == isa) return 1;
    return 0;
}

void tern_kernels_init(tern_kernels *k, uint64_t isa_mask) {
    memset(k, 0, sizeof *k);
    k->isa = TERN_ISA_REF;
    tern_cpu_features host;
    tern_cpu_features_host(&host);
    for (size_t i = 0; i < sizeof tern_kernel_tiers / sizeof tern_kernel_tiers[0]; i++) {
        const tern_isa isa = tern_kernel_tiers[i].isa;
        if (isa != TERN_ISA_REF && !((isa_mask & TERN_ISA_MASK(isa)) && tern_isa_supported(&host, isa)))
            continue;
        tern_kernel_tiers[i].init(k);
        k->isa = isa;
    }
}

/* Names and masks: each tier's mask holds it, every tier below it on its
 * architecture, and ref. */
static const struct {
    tern_isa isa;
    const char *name;
    uint64_t mask;
} tern_isa_table[] = {
    {TERN_ISA_REF, "ref", TERN_ISA_MASK(TERN_ISA_REF)},
    {TERN_ISA_X86_AVX2, "avx2", TERN_ISA_MASK(TERN_ISA_REF) | TERN_ISA_MASK(TERN_ISA_X86_AVX2)},
    {TERN_ISA_X86_AVX512, "avx512",
     TERN_ISA_MASK(TERN_ISA_REF) | TERN_ISA_MASK(TERN_ISA_X86_AVX2) |
         TERN_ISA_MASK(TERN_ISA_X86_AVX512)},
    {TERN_ISA_X86_AVX512VNNI, "avx512vnni",
     TERN_ISA_MASK(TERN_ISA_REF) | TERN_ISA_MASK(TERN_ISA_X86_AVX2) |
         TERN_ISA_MASK(TERN_ISA_X86_AVX512) | TERN_ISA_MASK(TERN_ISA_X86_AVX512VNNI)},
    {TERN_ISA_ARM_NEON, "neon", TERN_ISA_MASK(TERN_ISA_REF) | TERN_ISA_MASK(TERN_ISA_ARM_NEON)},
    {TERN_ISA_ARM_DOTPROD, "dotprod",
     TERN_ISA_MASK(TERN_ISA_REF) | TERN_ISA_MASK(TERN_ISA_ARM_NEON) |
         TERN_ISA_MASK(TERN_ISA_ARM_DOTPROD)},
    {TERN_ISA_ARM_I8MM, "i8mm",
     TERN_ISA_MASK(TERN_ISA_REF) | TERN_ISA_MASK(TERN_ISA_ARM_NEON) |
         TERN_ISA_MASK(TERN_ISA_ARM_DOTPROD) | TERN_ISA_MASK(TERN_ISA_ARM_I8MM)},
};

#define TERN_ISA_TABLE_LEN (sizeof tern_isa_table / sizeof tern_isa_table[0])

const char *tern_isa_name(tern_isa isa) {
    for (size_t i = 0; i < TERN_ISA_TABLE_LEN; i++)
        if (tern_isa_table[i].isa == isa) return tern_isa_table[i].name;
    return "unknown";
}

static char tern_ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality ("AVX2" from a command line), not locale-bound. */
static int tern_isa_name_equal(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tern_ascii_lower(*a) != tern_ascii_lower(*b)) return 0;
    return *a == *b;
}

tern_status tern_isa_mask_parse(const char *name, uint64_t *mask) {
    if (!name || !mask) return TERN_ERR_INVALID_ARG;
    for (size_t i = 0; i < TERN_ISA_TABLE_LEN; i++) {
        if (tern_isa_name_equal(name, tern_isa_table[i].name)) {
            *mask = tern_isa_table[i].mask;
            return TERN_OK;
        }
    }
    return TERN_ERR_INVALID_ARG;
}

tern_isa tern_isa_select(const tern_cpu_features *f, uint64_t mask) {
    /* the table is in ascending order within each architecture */
    tern_isa best = TERN_ISA_REF;
    for (size_t i = 0; i < TERN_ISA_TABLE_LEN; i++) {
        const tern_isa isa = tern_isa_table[i].isa;
        if ((mask & TERN_ISA_MASK(isa)) && tern_isa_supported(f, isa)) best = isa;
    }
    return best;
}

tern_isa tern_isa_best(uint64_t mask) {
    tern_cpu_features host;
    tern_cpu_features_host(&host);
    tern_isa best = TERN_ISA_REF;
    for (size_t i = 0; i < TERN_ISA_TABLE_LEN; i++) {
        const tern_isa isa = tern_isa_table[i].isa;
        if ((mask & TERN_ISA_MASK(isa)) && tern_isa_compiled(isa) && tern_isa_supported(&host, isa))
            best = isa;
    }
    return best;
}
