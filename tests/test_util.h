// Helpers shared by the test programs: where the data is, temporary folders.
#ifndef TERN_TESTS_TEST_UTIL_H
#define TERN_TESTS_TEST_UTIL_H

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tern.h"

// ../shared (fixtures, models), as meson passes it, or beside the source tree.
inline std::string test_shared_path(const std::string &rel) {
    const char *dir = std::getenv("TERN_SHARED_DIR");
    const char *src = std::getenv("TERN_SOURCE_DIR");
    std::string base = dir ? dir : (src ? std::string(src) + "/../shared" : "../shared");
    return base + "/" + rel;
}

inline std::string test_source_path(const std::string &rel) {
    const char *src = std::getenv("TERN_SOURCE_DIR");
    return std::string(src ? src : ".") + "/" + rel;
}

inline std::string test_build_path(const std::string &rel) {
    const char *b = std::getenv("TERN_BUILD_DIR");
    return std::string(b ? b : ".") + "/" + rel;
}

// Shell command that runs a program of the build: cross builds (boards/README.md) run
// it under meson's exe_wrapper (qemu), which meson names in MESON_EXE_WRAPPER.
inline std::string test_program_command(const std::string &rel) {
    const char *wrapper = std::getenv("MESON_EXE_WRAPPER");
    return (wrapper && *wrapper ? std::string(wrapper) + " " : std::string()) + test_build_path(rel);
}

// True under an emulator (scripts/test sets QEMU_CPU for its qemu runs): the
// few end-to-end tests that take minutes there (calibration of whole models,
// whose arithmetic is the same on every ISA) run natively and under the
// sanitizers only.
// Built with ASan or TSan: those runs check memory and races, and the
// slowest quality tests run at a reduced scale there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TERN_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TERN_TEST_SANITIZED 1
#endif
#endif
#ifndef TERN_TEST_SANITIZED
#define TERN_TEST_SANITIZED 0
#endif

inline bool test_emulated() {
    const char *cpu = std::getenv("QEMU_CPU");
    return cpu && *cpu;
}

// Logits of every position of `tokens` fed at once to a fresh session of the
// model at `path` (n_vocab each), or empty after reporting a test failure.
inline std::vector<float> test_model_logits(const std::string &path, const tern_model_options &mo, int threads,
                                            const std::vector<int32_t> &tokens, uint32_t *n_vocab = nullptr) {
    tern_model *model = nullptr;
    tern_error err{};
    if (tern_model_open(path.c_str(), &mo, &model, &err) != TERN_OK) {
        ADD_FAILURE() << path << ": " << err.message;
        return {};
    }
    tern_model_info info;
    tern_model_get_info(model, &info);
    if (n_vocab) *n_vocab = info.n_vocab;
    tern_session_options so;
    tern_session_options_default(&so);
    so.n_threads = threads;
    tern_session *sess = nullptr;
    std::vector<float> logits;
    if (tern_session_create(model, &so, &sess, &err) == TERN_OK) {
        logits.assign(tokens.size() * info.n_vocab, 0.0f);
        if (tern_session_feed(sess, tokens.data(), tokens.size(), logits.data(), TERN_LOGITS_ALL, &err) != TERN_OK) {
            ADD_FAILURE() << err.message;
            logits.clear();
        }
        tern_session_destroy(sess);
    } else {
        ADD_FAILURE() << err.message;
    }
    tern_model_close(model);
    return logits;
}

// What a run of the `tern` CLI printed and how it ended.
struct TestCliRun {
    int exit_code = -1;  // -1: killed by a signal
    int signal = 0;
    std::string out;     // standard output (and standard error when asked)
};

// Runs `tern ARGS` of this build (under qemu for cross builds);
// stderr_too: capture standard error with standard output, else drop it.
inline TestCliRun test_run_tern(const std::string &args, bool stderr_too) {
    TestCliRun r;
    std::string cmd = test_program_command("cli/tern") + " " + args + (stderr_too ? " 2>&1" : " 2>/dev/null");
    FILE *p = popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = pclose(p);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    return r;
}

// A fresh folder under $TMPDIR, removed by test_remove_tree.
inline std::string test_temp_dir() {
    const char *t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t ? t : "/tmp") + "/tern-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) return "";
    return buf.data();
}

inline void test_remove_tree(const std::string &dir) {
    if (dir.empty()) return;
    nftw(dir.c_str(), [](const char *p, const struct stat *, int, struct FTW *) { return std::remove(p); },
         16, FTW_DEPTH | FTW_PHYS);
}

inline std::vector<unsigned char> test_read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

inline bool test_write_file(const std::string &path, const void *data, size_t size) {
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    bool ok = std::fwrite(data, 1, size, f) == size;
    return std::fclose(f) == 0 && ok;
}

#endif
