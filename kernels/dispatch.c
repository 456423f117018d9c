/* Kernel dispatch: which tiers this CPU has (cpuinfo), the names and masks of
 * the tiers, and the table fill, lowest tier first. Adding a tier is a line in
 * tern_kernel_tiers plus its init function; nothing here keeps mutable state
 * (cpuinfo_initialize is idempotent and thread-safe). */
#include <string.h>

#include <cpuinfo.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#if defined(__x86_64__)
#include "kernels/x86/x86.h"
#elif defined(__aarch64__)
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
#endif
};

/* Whether this CPU (and OS) can run `isa`. A tier also needs every tier below
 * it on its architecture, so its kernels may assume them. */
static int tern_isa_cpu_has(tern_isa isa) {
    if (isa == TERN_ISA_REF) return 1;
    if (!cpuinfo_initialize()) return 0;
    switch (isa) {
    case TERN_ISA_X86_AVX512VNNI:
        if (!cpuinfo_has_x86_avx512vnni()) return 0;
        /* fall through */
    case TERN_ISA_X86_AVX512:
        if (!(cpuinfo_has_x86_avx512f() && cpuinfo_has_x86_avx512bw() &&
              cpuinfo_has_x86_avx512vl() && cpuinfo_has_x86_avx512dq()))
            return 0;
        /* fall through */
    case TERN_ISA_X86_AVX2:
        /* cpuinfo answers false on other architectures */
        return cpuinfo_has_x86_avx2() && cpuinfo_has_x86_fma3() && cpuinfo_has_x86_f16c();
    case TERN_ISA_ARM_I8MM:
#if defined(__aarch64__) && defined(__linux__)
        /* HWCAP2_I8MM: Debian's cpuinfo has no cpuinfo_has_arm_i8mm */
        if (!(getauxval(AT_HWCAP2) & (1ul << 13))) return 0;
#else
        return 0;
#endif
        /* fall through */
    case TERN_ISA_ARM_DOTPROD:
        if (!cpuinfo_has_arm_neon_dot()) return 0;
        /* fall through */
    case TERN_ISA_ARM_NEON:
#if defined(__aarch64__)
        return 1; /* AdvSIMD is mandatory on AArch64 */
#else
        return 0;
#endif
    case TERN_ISA_REF:
        return 1;
    }
    return 0;
}

void tern_kernels_init(tern_kernels *k, uint64_t isa_mask) {
    memset(k, 0, sizeof *k);
    k->isa = TERN_ISA_REF;
    for (size_t i = 0; i < sizeof tern_kernel_tiers / sizeof tern_kernel_tiers[0]; i++) {
        const tern_isa isa = tern_kernel_tiers[i].isa;
        if (isa != TERN_ISA_REF && !((isa_mask & TERN_ISA_MASK(isa)) && tern_isa_cpu_has(isa)))
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

tern_isa tern_isa_best(uint64_t mask) {
    /* the table is in ascending order within each architecture */
    tern_isa best = TERN_ISA_REF;
    for (size_t i = 0; i < TERN_ISA_TABLE_LEN; i++) {
        const tern_isa isa = tern_isa_table[i].isa;
        if ((mask & TERN_ISA_MASK(isa)) && tern_isa_cpu_has(isa)) best = isa;
    }
    return best;
}
