// The `tern` command line, run as a user runs it: exit codes, outputs, and
// that bad input gives a message and a non-zero exit, never a crash.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "formats/npy.h"
#include "tests/test_reference.h"

namespace {

using CliRun = TestCliRun;

CliRun run_tern(const std::string &args, bool stderr_too = true) { return test_run_tern(args, stderr_too); }

class Cli : public testing::Test {
  protected:
    static void SetUpTestSuite() {
        tmp_ = test_temp_dir();
        model_ = tmp_ + "/llama.tern";
        CliRun r = run_tern("convert " + test_shared_path("fixtures/hf/llama") + " -o " + model_ + " --weights f32");
        ASSERT_EQ(r.exit_code, 0) << r.out;
    }
    static void TearDownTestSuite() { test_remove_tree(tmp_); }

    static std::string tmp_, model_;
};
std::string Cli::tmp_, Cli::model_;

TEST_F(Cli, NoArgumentsPrintsUsage) {
    CliRun r = run_tern("");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.out.find("usage"), std::string::npos);
    EXPECT_EQ(run_tern("frobnicate").exit_code, 2);
}

TEST_F(Cli, InfoPrintsTheTensorTable) {
    CliRun r = run_tern("info " + model_);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    for (const char *s : {"general.architecture", "\"llama\"", "blk.1.ffn_down.weight", "token_embd.weight",
                          "output.weight", "bits/w", "bytes per encoding", "f32"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s << " missing in:\n" << r.out;
    EXPECT_EQ(run_tern("info --verify " + model_).exit_code, 0);
}

TEST_F(Cli, LogitsPrefillAndStepwiseMatchReference) {
    TestReference ref = test_load_reference(test_shared_path("fixtures/hf/llama/reference.safetensors"));
    ASSERT_FALSE(ref.tokens.empty());
    std::string list;
    for (size_t i = 0; i < ref.tokens.size(); i++) list += (i ? "," : "") + std::to_string(ref.tokens[i]);
    for (const char *mode : {"", " --stepwise"}) {
        std::string out = tmp_ + "/logits.npy";
        CliRun r = run_tern("logits " + model_ + " --tokens " + list + mode + " -o " + out);
        ASSERT_EQ(r.exit_code, 0) << r.out;
        float *data;
        uint32_t ndim;
        uint64_t shape[4];
        tern_error err = {};
        ASSERT_EQ(tern_npy_read_f32(out.c_str(), &data, &ndim, shape, &err), TERN_OK) << err.message;
        ASSERT_EQ(ndim, 2u);
        ASSERT_EQ(shape[0], ref.tokens.size());
        ASSERT_EQ(shape[1], ref.vocab);
        EXPECT_LE(test_max_row_rel_error(data, ref.logits.data(), shape[0], shape[1]), 1e-4) << mode;
        free(data);
    }
}

TEST_F(Cli, GenerateIsDeterministic) {
    CliRun a = run_tern("generate " + model_ + " --tokens 5,9,13 -n 8", false);
    CliRun b = run_tern("generate " + model_ + " --tokens 5,9,13 -n 8 -t 2", false);
    ASSERT_EQ(a.exit_code, 0) << a.out;
    EXPECT_EQ(std::count(a.out.begin(), a.out.end(), ' '), 7) << a.out;
    EXPECT_NE(run_tern("generate " + model_ + " --tokens 5 -n 2").out.find("tokens/s"), std::string::npos);
    auto first_line = [](const std::string &s) { return s.substr(0, s.find('\n')); };
    EXPECT_EQ(first_line(a.out), first_line(b.out));
    CliRun c = run_tern("generate " + model_ + " --tokens 5,9,13 -n 8 --temp 0.8 --top-k 40 --top-p 0.9 --seed 7", false);
    CliRun d = run_tern("generate " + model_ + " --tokens 5,9,13 -n 8 --temp 0.8 --top-k 40 --top-p 0.9 --seed 7", false);
    ASSERT_EQ(c.exit_code, 0) << c.out;
    EXPECT_EQ(c.out, d.out);
    EXPECT_EQ(std::count(c.out.begin(), c.out.end(), ' '), 7) << c.out;
}

TEST_F(Cli, BadInputIsAnErrorNotACrash) {
    CliRun r = run_tern("generate " + model_ + " --tokens 5,100000 -n 2");
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.out.find("outside the vocabulary"), std::string::npos) << r.out;
    r = run_tern("logits " + model_ + " --tokens 1,x -o " + tmp_ + "/x.npy");
    EXPECT_EQ(r.exit_code, 2) << r.out;
    r = run_tern("generate " + model_ + " --tokens 1 -n 2 --ctx 100000");
    EXPECT_EQ(r.exit_code, 1) << r.out;
    r = run_tern("info " + tmp_ + "/does-not-exist.tern");
    EXPECT_EQ(r.exit_code, 1) << r.out;
    r = run_tern("convert " + tmp_ + "/no-such-folder -o " + tmp_ + "/never.tern");
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(access((tmp_ + "/never.tern").c_str(), F_OK), 0) << "a failed conversion left a file";
}

TEST_F(Cli, DamagedFilesAreRejected) {
    std::vector<unsigned char> good = test_read_file(model_);
    ASSERT_GT(good.size(), 1000u);
    std::string bad = tmp_ + "/bad.tern";
    // Cut at a spread of lengths (every length is covered in-process by test_format).
    for (size_t cut : {size_t(0), size_t(7), size_t(64), size_t(127), size_t(128), good.size() / 2,
                       good.size() - 200, good.size() - 33, good.size() - 1}) {
        ASSERT_TRUE(test_write_file(bad, good.data(), cut));
        CliRun r = run_tern("info " + bad);
        EXPECT_EQ(r.signal, 0) << "cut at " << cut;
        EXPECT_EQ(r.exit_code, 1) << "cut at " << cut << ": " << r.out;
        r = run_tern("logits " + bad + " --tokens 1 -o " + tmp_ + "/x.npy");
        EXPECT_EQ(r.exit_code, 1) << "cut at " << cut << ": " << r.out;
    }
    // Any single header byte flipped.
    for (size_t i = 0; i < 128; i += 3) {
        std::vector<unsigned char> copy = good;
        copy[i] ^= 0x5a;
        ASSERT_TRUE(test_write_file(bad, copy.data(), copy.size()));
        CliRun r = run_tern("info " + bad);
        EXPECT_EQ(r.exit_code, 1) << "byte " << i << ": " << r.out;
        EXPECT_EQ(r.signal, 0);
    }
}

}  // namespace

namespace {

// The values of `"key": ` in each object of a flat JSON array, in order.
std::vector<std::string> json_values(const std::string &s, const std::string &key) {
    std::vector<std::string> out;
    const std::string pat = "\"" + key + "\":";
    for (size_t at = s.find(pat); at != std::string::npos; at = s.find(pat, at + 1)) {
        size_t b = s.find_first_not_of(" ", at + pat.size());
        size_t e = s.find_first_of(",}", b);
        std::string v = s.substr(b, e - b);
        if (!v.empty() && v.front() == '"') v = v.substr(1, v.size() - 2);
        out.push_back(v);
    }
    return out;
}

}  // namespace

TEST_F(Cli, BenchReportsEveryTestAsJson) {
    CliRun r = run_tern("bench " + model_ + " -p 16 -n 8 -t 1,2 -r 2 --json", false);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    ASSERT_EQ(r.out.find_first_not_of(" \n"), r.out.find('[')) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '{'), 4) << r.out;
    const std::vector<std::string> tests = json_values(r.out, "test"), threads = json_values(r.out, "threads");
    EXPECT_EQ(tests, (std::vector<std::string>{"pp16", "tg8", "pp16", "tg8"})) << r.out;
    EXPECT_EQ(threads, (std::vector<std::string>{"1", "1", "2", "2"})) << r.out;
    const std::vector<std::string> rate = json_values(r.out, "tokens_per_s"), lo = json_values(r.out, "min"),
                                   hi = json_values(r.out, "max"), bytes = json_values(r.out, "weight_bytes");
    ASSERT_EQ(rate.size(), 4u);
    ASSERT_EQ(lo.size(), 4u);
    ASSERT_EQ(hi.size(), 4u);
    ASSERT_EQ(bytes.size(), 4u);
    for (size_t i = 0; i < 4; i++) {
        const double t = std::atof(rate[i].c_str());
        EXPECT_GT(t, 0.0) << r.out;
        EXPECT_LE(std::atof(lo[i].c_str()), t) << r.out;
        EXPECT_LE(t, std::atof(hi[i].c_str())) << r.out;
        EXPECT_GT(std::atof(bytes[i].c_str()), 0.0) << r.out;
    }
    // -n 0 skips the generation test; the table form names the model's tests.
    r = run_tern("bench " + model_ + " -p 4 -n 0 -t 1 -r 1", false);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("pp4"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("tg"), std::string::npos) << r.out;
    EXPECT_EQ(run_tern("bench " + model_ + " --frobnicate").exit_code, 2);
    EXPECT_EQ(run_tern("bench " + model_ + " -t 0").exit_code, 2);
    EXPECT_EQ(run_tern("bench " + model_ + " -r").exit_code, 2);
}
