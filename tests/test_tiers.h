// The kernel tiers a test binary runs on, shared by the kernel testers
// (test_kernels, test_kv, test_mamba, test_rwkv): every tier tern names, each
// built into its own table with tern_kernels_init and the tier's mask, and
// skipped where this CPU (or qemu's model) lacks it or where the tier fills
// none of the entries a suite tests (it would only repeat the tier below).
#ifndef TERN_TESTS_TEST_TIERS_H
#define TERN_TESTS_TEST_TIERS_H

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "tern.h"

namespace tern_test {

// All tiers tern knows, from the names table: a new tier needs no change here.
inline std::vector<tern_isa> AllTiers() {
    std::vector<tern_isa> tiers;
    for (int i = 0; i < 64; i++)
        if (std::strcmp(tern_isa_name((tern_isa)i), "unknown") != 0) tiers.push_back((tern_isa)i);
    return tiers;
}

inline std::string TierName(const ::testing::TestParamInfo<tern_isa> &info) {
    return tern_isa_name(info.param);
}

// Whether two tables hold the same entries for what a suite tests.
using SameEntriesFn = bool (*)(const tern_kernels &a, const tern_kernels &b);

// Fixture base: SetUpTier fills k_ with the parameter's tier, or skips.
class TierTest : public ::testing::TestWithParam<tern_isa> {
  protected:
    void SetUpTier(SameEntriesFn same, const char *what) {
        const tern_isa isa = GetParam();
        uint64_t mask = 0;
        ASSERT_EQ(tern_isa_mask_parse(tern_isa_name(isa), &mask), TERN_OK);
        if (tern_isa_best(mask) != isa) GTEST_SKIP() << "this CPU lacks " << tern_isa_name(isa);
        tern_kernels_init(&k_, mask);
        ASSERT_NE(mask & TERN_ISA_MASK(k_.isa), 0u) << "table tier outside its mask";
        if (isa == TERN_ISA_REF) return;
        tern_kernels lower;
        tern_kernels_init(&lower, mask & ~TERN_ISA_MASK(isa));
        if (same(k_, lower)) GTEST_SKIP() << tern_isa_name(isa) << " has no " << what << " of its own";
    }
    tern_kernels k_;
};

// Fixture base for suites that check every tier the CPU has against the ref
// table (k_ against ref_), a tier repeating the one below included.
class TierVsRefTest : public ::testing::TestWithParam<tern_isa> {
  protected:
    void SetUp() override {
        const tern_isa isa = GetParam();
        uint64_t mask = 0;
        ASSERT_EQ(tern_isa_mask_parse(tern_isa_name(isa), &mask), TERN_OK);
        if (tern_isa_best(mask) != isa) GTEST_SKIP() << "this CPU lacks " << tern_isa_name(isa);
        tern_kernels_init(&k_, mask);
        tern_kernels_init(&ref_, TERN_ISA_MASK(TERN_ISA_REF));
    }
    tern_kernels k_, ref_;
};

} // namespace tern_test

#define TERN_INSTANTIATE_TIERS(suite)                                                              \
    INSTANTIATE_TEST_SUITE_P(Tiers, suite, ::testing::ValuesIn(tern_test::AllTiers()),             \
                             tern_test::TierName)

#endif
