// Board profiles (boards/<board>/) and the choices made from a CPU's features:
//  - every profile loads, and gives the tier and default thread count that the
//    board's documentation calls for (the table below, written by hand);
//  - ISA masks cap the tier on every board;
//  - each board's HWCAP words, decoded by the runtime's HWCAP reader, give
//    the profile's features and tier; the words agree with the Features line
//    of its cpuinfo.txt decoded here with the kernel's bit tables, and the
//    cpuinfo's CPU parts match the profile's clusters core for core;
//  - the thread rule on made-up machines, the parser's errors, and
//    `tern bench --board` (the roofline is bytes per token / bandwidth).
#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "tern.h"
#include "tests/test_util.h"

namespace {

std::string BoardsDir() {
    return test_source_path("boards");
}

struct Expected {
    const char *board;
    tern_isa isa;      // on a 64-bit OS
    uint32_t threads;  // performance cores
};

// From the boards' documentation: Pi 4 and Zero 2 W are ARMv8.0 (NEON only),
// the Pi 5's A76 has dot product, the Snapdragons' Armv9 cores have i8mm; the
// Snapdragons' performance cores are 1 X3 + 2 A715 + 2 A710 and 1 X4 + 5 A720.
const Expected kExpected[] = {
    {"rpi4", TERN_ISA_ARM_NEON, 4},
    {"rpi5", TERN_ISA_ARM_DOTPROD, 4},
    {"rpi-zero2w", TERN_ISA_ARM_NEON, 4},
    {"snapdragon-8gen2", TERN_ISA_ARM_I8MM, 5},
    {"snapdragon-8gen3", TERN_ISA_ARM_I8MM, 6},
};

std::vector<std::string> BoardNames() {
    std::vector<std::string> names;
    DIR *d = opendir(BoardsDir().c_str());
    if (!d) return names;
    while (dirent *e = readdir(d)) {
        const std::string name = e->d_name;
        if (name[0] == '.') continue;
        if (std::ifstream(BoardsDir() + "/" + name + "/profile.txt").good()) names.push_back(name);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    return names;
}

const Expected *FindExpected(const std::string &name) {
    for (const Expected &e : kExpected)
        if (name == e.board) return &e;
    return nullptr;
}

std::string ReadText(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// `key = value` lines of hwcap.txt (comments dropped).
std::map<std::string, uint64_t> ReadHwcaps(const std::string &path) {
    std::map<std::string, uint64_t> out;
    std::istringstream in(ReadText(path));
    std::string line;
    while (std::getline(in, line)) {
        line = line.substr(0, line.find('#'));
        const size_t eq = line.find('=');
        if (eq == std::string::npos) continue;
        std::string key = line.substr(0, eq);
        key.erase(std::remove(key.begin(), key.end(), ' '), key.end());
        out[key] = std::strtoull(line.c_str() + eq + 1, nullptr, 0);
    }
    return out;
}

// The kernel's hwcap_str tables, in bit order: arch/arm64/kernel/cpuinfo.c
// (HWCAP then HWCAP2 names) and arch/arm/kernel/setup.c.
const char *const kA64Hwcap[] = {"fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32",
                                 "atomics", "fphp", "asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma",
                                 "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512", "sve",
                                 "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca",
                                 "pacg"};
const char *const kA64Hwcap2[] = {"dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3",
                                  "svesm4", "flagm2", "frint", "svei8mm", "svef32mm", "svef64mm",
                                  "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte", "ecv",
                                  "afp", "rpres"};
const char *const kA32Hwcap[] = {"swp", "half", "thumb", "26bit", "fastmult", "fpa", "vfp", "edsp",
                                 "java", "iwmmxt", "crunch", "thumbee", "neon", "vfpv3", "vfpv3d16",
                                 "tls", "vfpv4", "idiva", "idivt", "vfpd32", "lpae", "evtstrm",
                                 "fphp", "asimdhp", "asimddp", "asimdfhm", "asimdbf16", "i8mm"};
const char *const kA32Hwcap2[] = {"aes", "pmull", "sha1", "sha2", "crc32", "sb", "ssbs"};

template <size_t N1, size_t N2>
bool FeaturesToHwcap(const std::string &features, const char *const (&t1)[N1], const char *const (&t2)[N2],
                     uint64_t *h1, uint64_t *h2) {
    *h1 = *h2 = 0;
    std::istringstream in(features);
    std::string w;
    while (in >> w) {
        bool found = false;
        for (size_t i = 0; i < N1 && !found; i++)
            if (w == t1[i]) *h1 |= uint64_t{1} << i, found = true;
        for (size_t i = 0; i < N2 && !found; i++)
            if (w == t2[i]) *h2 |= uint64_t{1} << i, found = true;
        if (!found) return false;
    }
    return true;
}

// One processor block of a /proc/cpuinfo text.
struct CpuinfoCore {
    std::string features;
    unsigned part = 0, implementer = 0;
};

std::vector<CpuinfoCore> ParseCpuinfo(const std::string &text) {
    std::vector<CpuinfoCore> cores;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string key = line.substr(0, colon);
        while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
        const std::string val = line.substr(colon + 1 + (colon + 1 < line.size() && line[colon + 1] == ' '));
        if (key == "processor") cores.emplace_back();
        if (cores.empty()) continue;
        if (key == "Features") cores.back().features = val;
        if (key == "CPU part") cores.back().part = (unsigned)std::strtoul(val.c_str(), nullptr, 0);
        if (key == "CPU implementer") cores.back().implementer = (unsigned)std::strtoul(val.c_str(), nullptr, 0);
    }
    return cores;
}

// MIDR part numbers from each core's Technical Reference Manual.
std::string PartName(unsigned part) {
    switch (part) {
    case 0xd03: return "cortex-a53";
    case 0xd08: return "cortex-a72";
    case 0xd0b: return "cortex-a76";
    case 0xd46: return "cortex-a510";
    case 0xd47: return "cortex-a710";
    case 0xd4d: return "cortex-a715";
    case 0xd4e: return "cortex-x3";
    case 0xd80: return "cortex-a520";
    case 0xd81: return "cortex-a720";
    case 0xd82: return "cortex-x4";
    }
    return "?";
}

tern_board LoadBoard(const std::string &name) {
    tern_board b{};
    tern_error err{};
    EXPECT_EQ(tern_board_load((BoardsDir() + "/" + name + "/profile.txt").c_str(), &b, &err), TERN_OK)
        << name << ": " << err.message;
    return b;
}

TEST(Boards, EveryExpectedBoardHasAProfileAndEveryProfileIsExpected) {
    const std::vector<std::string> names = BoardNames();
    for (const Expected &e : kExpected)
        EXPECT_NE(std::find(names.begin(), names.end(), e.board), names.end()) << e.board << " missing";
    for (const std::string &n : names) EXPECT_NE(FindExpected(n), nullptr) << n << " has no expectation here";
}

TEST(Boards, ProfileGivesTierAndThreads) {
    for (const std::string &name : BoardNames()) {
        SCOPED_TRACE(name);
        const Expected *e = FindExpected(name);
        if (!e) continue;
        const tern_board b = LoadBoard(name);
        EXPECT_EQ(std::string(b.name), name);
        EXPECT_EQ(b.cpu.arch, TERN_CPU_ARCH_AARCH64);
        EXPECT_EQ(tern_isa_select(&b.cpu, TERN_ISA_MASK_ALL), e->isa) << tern_isa_name(tern_isa_select(&b.cpu, TERN_ISA_MASK_ALL));
        EXPECT_EQ(tern_default_threads(&b.cpu), e->threads);
        // the figures hang together: peak = bus width x transfer rate, sustained <= peak
        ASSERT_GT(b.mem_bus_bits, 0u);
        ASSERT_GT(b.mem_mts, 0u);
        EXPECT_NEAR(b.mem_peak_gbs, b.mem_bus_bits / 8.0 * b.mem_mts / 1000.0, 0.01);
        EXPECT_GT(b.mem_gbs, 0.0);
        EXPECT_LE(b.mem_gbs, b.mem_peak_gbs);
        EXPECT_LE(b.mem_core_gbs, b.mem_gbs);
        for (uint32_t c = 0; c < b.cpu.n_clusters; c++) {
            EXPECT_GT(b.cpu.clusters[c].max_mhz, 0u);
            EXPECT_GT(b.l1d_kib[c], 0u);
            EXPECT_GT(b.l2_kib[c], 0u);
        }
    }
}

TEST(Boards, MasksCapTheTier) {
    const tern_isa arm[] = {TERN_ISA_REF, TERN_ISA_ARM_NEON, TERN_ISA_ARM_DOTPROD, TERN_ISA_ARM_I8MM};
    for (const std::string &name : BoardNames()) {
        SCOPED_TRACE(name);
        const Expected *e = FindExpected(name);
        if (!e) continue;
        const tern_board b = LoadBoard(name);
        for (tern_isa cap : arm) {
            uint64_t mask = 0;
            ASSERT_EQ(tern_isa_mask_parse(tern_isa_name(cap), &mask), TERN_OK);
            const tern_isa want = (int)cap < (int)e->isa ? cap : e->isa;
            EXPECT_EQ(tern_isa_select(&b.cpu, mask), want) << "mask " << tern_isa_name(cap);
        }
        // x86 tiers never apply to an Arm board; a mask without the tier drops it
        uint64_t avx512 = 0;
        ASSERT_EQ(tern_isa_mask_parse("avx512vnni", &avx512), TERN_OK);
        EXPECT_EQ(tern_isa_select(&b.cpu, avx512), TERN_ISA_REF);
        EXPECT_EQ(tern_isa_select(&b.cpu, 0), TERN_ISA_REF);
        if (e->isa != TERN_ISA_ARM_NEON) {
            EXPECT_LT((int)tern_isa_select(&b.cpu, TERN_ISA_MASK_ALL & ~TERN_ISA_MASK(e->isa)), (int)e->isa);
        }
    }
}

TEST(Boards, HwcapWordsGiveTheProfilesFeatures) {
    for (const std::string &name : BoardNames()) {
        SCOPED_TRACE(name);
        const Expected *e = FindExpected(name);
        if (!e) continue;
        const tern_board b = LoadBoard(name);
        const auto hw = ReadHwcaps(BoardsDir() + "/" + name + "/hwcap.txt");
        ASSERT_TRUE(hw.count("aarch64.hwcap") && hw.count("aarch64.hwcap2")) << "hwcap.txt incomplete";
        tern_cpu_features f{};
        tern_cpu_features_from_hwcap(&f, TERN_CPU_ARCH_AARCH64, hw.at("aarch64.hwcap"), hw.at("aarch64.hwcap2"));
        EXPECT_EQ(f.flags, b.cpu.flags);
        EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), e->isa);
        if (hw.count("arm32.hwcap")) {
            // the same board under a 32-bit OS: only the neon tier exists there
            tern_cpu_features f32{};
            tern_cpu_features_from_hwcap(&f32, TERN_CPU_ARCH_ARM32, hw.at("arm32.hwcap"), hw.at("arm32.hwcap2"));
            EXPECT_EQ(tern_isa_select(&f32, TERN_ISA_MASK_ALL), TERN_ISA_ARM_NEON);
            uint64_t ref = 0;
            ASSERT_EQ(tern_isa_mask_parse("ref", &ref), TERN_OK);
            EXPECT_EQ(tern_isa_select(&f32, ref), TERN_ISA_REF);
        }
    }
}

TEST(Boards, CpuinfoMatchesHwcapAndClusters) {
    for (const std::string &name : BoardNames()) {
        SCOPED_TRACE(name);
        if (!FindExpected(name)) continue;
        const tern_board b = LoadBoard(name);
        const auto hw = ReadHwcaps(BoardsDir() + "/" + name + "/hwcap.txt");
        for (const char *arch : {"aarch64", "arm32"}) {
            const std::string file = std::string(arch) == "aarch64" ? "cpuinfo.txt" : "cpuinfo-arm32.txt";
            const std::string key = std::string(arch) + ".hwcap";
            const bool has_text = std::ifstream(BoardsDir() + "/" + name + "/" + file).good();
            EXPECT_EQ(has_text, hw.count(key) == 1) << file << " and " << key << " go together";
            if (!has_text || !hw.count(key)) continue;
            const std::vector<CpuinfoCore> cores = ParseCpuinfo(ReadText(BoardsDir() + "/" + name + "/" + file));
            uint32_t total = 0;
            std::map<std::string, uint32_t> want;
            for (uint32_t c = 0; c < b.cpu.n_clusters; c++) {
                total += b.cpu.clusters[c].cores;
                want[b.cpu.clusters[c].uarch] += b.cpu.clusters[c].cores;
            }
            ASSERT_EQ(cores.size(), total) << file;
            std::map<std::string, uint32_t> got;
            for (const CpuinfoCore &c : cores) {
                EXPECT_EQ(c.implementer, 0x41u) << file;
                got[PartName(c.part)]++;
                uint64_t h1 = 0, h2 = 0;
                const bool known = std::string(arch) == "aarch64"
                                       ? FeaturesToHwcap(c.features, kA64Hwcap, kA64Hwcap2, &h1, &h2)
                                       : FeaturesToHwcap(c.features, kA32Hwcap, kA32Hwcap2, &h1, &h2);
                EXPECT_TRUE(known) << file << ": unknown feature in '" << c.features << "'";
                EXPECT_EQ(h1, hw.at(key)) << file;
                EXPECT_EQ(h2, hw.at(std::string(arch) + ".hwcap2")) << file;
            }
            EXPECT_EQ(got, want) << file;
        }
    }
}

// The rule on machines made up here.
tern_cpu_features Machine(std::vector<std::pair<uint32_t, const char *>> clusters, uint32_t online) {
    tern_cpu_features f{};
    f.arch = TERN_CPU_ARCH_AARCH64;
    f.n_online = online;
    for (const auto &c : clusters) {
        tern_cpu_cluster &cl = f.clusters[f.n_clusters++];
        cl.cores = c.first;
        std::snprintf(cl.uarch, sizeof cl.uarch, "%s", c.second);
    }
    return f;
}

TEST(Boards, DefaultThreadRule) {
    // big.LITTLE: performance clusters only, whichever order they are listed in
    tern_cpu_features f = Machine({{4, "cortex-a55"}, {3, "cortex-a78"}, {1, "cortex-x1"}}, 8);
    EXPECT_EQ(tern_default_threads(&f), 4u);
    // fewer processors online than performance cores (a cpuset, offline cores)
    f = Machine({{4, "cortex-a55"}, {4, "cortex-a76"}}, 3);
    EXPECT_EQ(tern_default_threads(&f), 3u);
    // one kind of core: the online processor count (cpuinfo may miscount cores)
    f = Machine({{1, ""}}, 2);
    EXPECT_EQ(tern_default_threads(&f), 2u);
    f = Machine({{4, "cortex-a53"}}, 0);
    EXPECT_EQ(tern_default_threads(&f), 4u);
    // unknown core names count as performance cores
    f = Machine({{2, "mystery"}, {2, "cortex-a510"}}, 4);
    EXPECT_EQ(tern_default_threads(&f), 2u);
    // nothing known at all: one thread
    f = Machine({}, 0);
    EXPECT_EQ(tern_default_threads(&f), 1u);
    EXPECT_TRUE(tern_cpu_uarch_is_efficiency("cortex-a520"));
    EXPECT_FALSE(tern_cpu_uarch_is_efficiency("cortex-a720"));
    EXPECT_STREQ(tern_cpu_arm_part_name(0xd82), "cortex-x4");
    EXPECT_EQ(tern_cpu_arm_part_name(0xfff), nullptr);
}

TEST(Boards, ArmTiersNeedTheirFeatures) {
    tern_cpu_features f{};
    // AArch32 NEON without VFPv4 (Cortex-A8/A9): no neon tier (it fuses multiply-adds)
    tern_cpu_features_from_hwcap(&f, TERN_CPU_ARCH_ARM32, (1u << 12) | (1u << 13) | (1u << 1), 0);
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_REF);
    tern_cpu_features_from_hwcap(&f, TERN_CPU_ARCH_ARM32, (1u << 12) | (1u << 16) | (1u << 1), 0);
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_ARM_NEON);
    // dot product under a 32-bit OS still runs the neon tier (no AArch32 sdot kernels)
    tern_cpu_features_from_hwcap(&f, TERN_CPU_ARCH_ARM32, (1u << 12) | (1u << 16) | (1u << 1) | (1u << 24), 0);
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_ARM_NEON);
    // AArch64: i8mm without dotprod is not the i8mm tier (it builds on sdot)
    tern_cpu_features_from_hwcap(&f, TERN_CPU_ARCH_AARCH64, 1u << 1, 1u << 13);
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_ARM_NEON);
    tern_cpu_features_from_hwcap(&f, TERN_CPU_ARCH_AARCH64, (1u << 1) | (1u << 20), 1u << 13);
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_ARM_I8MM);
    // x86 features
    f = tern_cpu_features{};
    f.arch = TERN_CPU_ARCH_X86_64;
    f.flags = TERN_CPU_X86_AVX2 | TERN_CPU_X86_FMA3 | TERN_CPU_X86_F16C | TERN_CPU_X86_AVX512F |
              TERN_CPU_X86_AVX512BW | TERN_CPU_X86_AVX512VL;
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_X86_AVX2);  // no DQ
    f.flags |= TERN_CPU_X86_AVX512DQ | TERN_CPU_X86_AVX512VNNI;
    EXPECT_EQ(tern_isa_select(&f, TERN_ISA_MASK_ALL), TERN_ISA_X86_AVX512VNNI);
}

// The machine the tests run on: the chosen tier is one this build carries.
TEST(Boards, HostSelectionAgreesWithBest) {
    tern_cpu_features host;
    tern_cpu_features_host(&host);
    const tern_isa best = tern_isa_best(TERN_ISA_MASK_ALL);
    EXPECT_TRUE(tern_isa_supported(&host, best));
    EXPECT_LE((int)best, (int)tern_isa_select(&host, TERN_ISA_MASK_ALL));
    EXPECT_GE(tern_default_threads(&host), 1u);
#if defined(__x86_64__)
    EXPECT_EQ(host.arch, TERN_CPU_ARCH_X86_64);
#elif defined(__aarch64__)
    EXPECT_EQ(host.arch, TERN_CPU_ARCH_AARCH64);
    EXPECT_GE((int)best, (int)TERN_ISA_ARM_NEON);
#elif defined(__arm__)
    EXPECT_EQ(host.arch, TERN_CPU_ARCH_ARM32);
#endif
}

TEST(Boards, ParserRejectsBrokenProfiles) {
    const std::string good =
        "name = t\narch = aarch64\nisa = neon vfpv4 fp16cvt\ncluster.0.cores = 2  # comment\nmem.gbs = 3.5\n";
    tern_board b;
    tern_error err{};
    ASSERT_EQ(tern_board_parse(good.data(), good.size(), &b, &err), TERN_OK) << err.message;
    EXPECT_EQ(b.cpu.n_clusters, 1u);
    EXPECT_EQ(b.cpu.n_online, 2u);
    EXPECT_DOUBLE_EQ(b.mem_gbs, 3.5);
    EXPECT_EQ(tern_isa_select(&b.cpu, TERN_ISA_MASK_ALL), TERN_ISA_ARM_NEON);
    const struct {
        std::string text, message;
    } bad[] = {
        {good + "cluster.0.cache = 3\n", "unknown key 'cluster.0.cache'"},
        {good + "colour = blue\n", "unknown key 'colour'"},
        {good + "isa = neon sve9\n", "unknown ISA feature 'sve9'"},
        {good + "mem.gbs = fast\n", "bad value 'fast' for mem.gbs"},
        {good + "cluster.0.cores = 0\n", "bad value '0'"},
        {good + "cluster.2.cores = 1\n", "cluster 1 has no cores"},
        {good + "arch = sparc\n", "bad value 'sparc' for arch"},
        {good + "just words\n", "line 6: expected key = value"},
        {"arch = aarch64\ncluster.0.cores = 1\nmem.gbs = 1\n", "no name"},
        {"name = t\narch = aarch64\ncluster.0.cores = 1\n", "no mem.gbs"},
        {"name = t\narch = aarch64\nmem.gbs = 1\n", "no cluster.0.cores"},
    };
    for (const auto &c : bad) {
        err = tern_error{};
        EXPECT_EQ(tern_board_parse(c.text.data(), c.text.size(), &b, &err), TERN_ERR_FORMAT) << c.text;
        EXPECT_NE(std::string(err.message).find(c.message), std::string::npos) << err.message;
    }
    err = tern_error{};
    EXPECT_EQ(tern_board_load("/nonexistent/profile.txt", &b, &err), TERN_ERR_IO);
    EXPECT_NE(std::string(err.message).find("/nonexistent/profile.txt"), std::string::npos);
}

TEST(Boards, BandwidthScalesPerCoreUpToTheWhole) {
    tern_board b{};
    b.mem_gbs = 10.0;
    b.mem_core_gbs = 4.0;
    EXPECT_DOUBLE_EQ(tern_board_bandwidth_gbs(&b, 1), 4.0);
    EXPECT_DOUBLE_EQ(tern_board_bandwidth_gbs(&b, 2), 8.0);
    EXPECT_DOUBLE_EQ(tern_board_bandwidth_gbs(&b, 4), 10.0);
    b.mem_core_gbs = 0;
    EXPECT_DOUBLE_EQ(tern_board_bandwidth_gbs(&b, 1), 10.0);
}

// ---- tern bench --board --------------------------------------------------------------------

std::string RunTern(const std::string &args, int *exit_code) {
    const std::string cmd = test_program_command("cli/tern") + " " + args + " 2>&1";
    FILE *p = popen(cmd.c_str(), "r");
    std::string out;
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
}

double JsonNumber(const std::string &json, const std::string &key) {
    const size_t at = json.find("\"" + key + "\": ");
    if (at == std::string::npos) return NAN;
    return std::atof(json.c_str() + at + key.size() + 4);
}

TEST(Boards, BenchPrintsTheRooflineOfTheBoard) {
    const std::string tmp = test_temp_dir();
    ASSERT_FALSE(tmp.empty());
    const std::string model = tmp + "/llama.tern";
    int rc = -1;
    std::string out = RunTern("convert " + test_shared_path("fixtures/hf/llama") + " -o " + model + " --weights q8", &rc);
    ASSERT_EQ(rc, 0) << out;
    // by name, found through TERN_BOARDS_DIR
    const std::string env = "TERN_BOARDS_DIR=" + BoardsDir() + " ";
    const std::string cmd = "bench " + model + " -p 0 -n 2 -t 1 -r 1 --json --board snapdragon-8gen3";
    {
        const std::string full = env + test_program_command("cli/tern") + " " + cmd + " 2>&1";
        FILE *p = popen(full.c_str(), "r");
        ASSERT_NE(p, nullptr);
        out.clear();
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        const int status = pclose(p);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
    }
    const double bytes = JsonNumber(out, "weight_bytes");
    ASSERT_GT(bytes, 0.0) << out;
    EXPECT_NE(out.find("\"board\": \"snapdragon-8gen3\""), std::string::npos) << out;
    EXPECT_NE(out.find("\"board_isa\": \"i8mm\""), std::string::npos) << out;
    EXPECT_EQ(JsonNumber(out, "board_threads"), 6.0) << out;
    // the profile's figures: 24 GB/s for one core, 48 GB/s sustained for all
    EXPECT_NEAR(JsonNumber(out, "board_gbs_1t"), 24.0, 1e-3) << out;
    EXPECT_NEAR(JsonNumber(out, "board_gbs"), 48.0, 1e-3) << out;
    EXPECT_NEAR(JsonNumber(out, "roofline_tokens_per_s_1t"), 24e9 / bytes, 24e9 / bytes * 1e-5) << out;
    EXPECT_NEAR(JsonNumber(out, "roofline_tokens_per_s"), 48e9 / bytes, 48e9 / bytes * 1e-5) << out;
    // by path, as a table: the existing table plus a roofline line
    out = RunTern("bench " + model + " -p 0 -n 2 -t 1 -r 1 --board " + BoardsDir() + "/rpi4", &rc);
    ASSERT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("| model"), std::string::npos) << out;
    EXPECT_NE(out.find("weights read per generated token"), std::string::npos) << out;
    EXPECT_NE(out.find("decode roofline on rpi4"), std::string::npos) << out;
    EXPECT_NE(out.find("with 4 threads (4.50 GB/s)"), std::string::npos) << out;
    // no --board: no board fields
    out = RunTern("bench " + model + " -p 0 -n 2 -t 1 -r 1 --json", &rc);
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(out.find("board"), std::string::npos) << out;
    // unknown boards and broken profiles fail with a message
    out = RunTern("bench " + model + " -n 2 -t 1 -r 1 --board no-such-board", &rc);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("no board 'no-such-board'"), std::string::npos) << out;
    const std::string broken = tmp + "/broken.txt";
    const char text[] = "name = x\narch = aarch64\n";
    ASSERT_TRUE(test_write_file(broken, text, sizeof text - 1));
    out = RunTern("bench " + model + " -n 2 -t 1 -r 1 --board " + broken, &rc);
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find("no cluster.0.cores"), std::string::npos) << out;
    test_remove_tree(tmp);
}

}  // namespace
