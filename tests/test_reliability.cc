// Reliability under hostile conditions (issue #8, docs/reliability.md):
// `tern convert` killed with SIGKILL at random moments never leaves a partial
// file under the final name nor harms the previous one; the Nth allocation
// failing anywhere in the library gives a clean error, no leak and no crash;
// an address-space limit gives an "out of memory" message, not a signal;
// absurd image sizes and over-long prompts are refused by the CLI.
//
// This program is linked with -Wl,--wrap for the allocation functions
// (tests/meson.build): every malloc, calloc, realloc, strdup, strndup,
// posix_memalign, aligned_alloc and realpath of libtern.a goes through the wrappers
// below, which count calls and can fail one of them. Shared libraries
// (libc internals, json-c, libpng, libjpeg, XNNPACK, xxhash) keep their own
// allocator and are not failed.
#include <gtest/gtest.h>

#include <dirent.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "converter/hf_internal.h"
#include "formats/gguf.h"
#include "formats/tern_file.h"
#include "runtime/image.h"
#include "runtime/tokenizer.h"
#include "tern.h"
#include "tests/test_util.h"

// ---- The failing allocator ---------------------------------------------------------

namespace alloc_fail {
// Test code may hold globals; the library may not. Atomics: pool threads allocate too.
std::atomic<bool> armed{false};
std::atomic<long> calls{0};     // allocation calls while armed
std::atomic<long> fail_at{0};   // the call (1-based) that returns NULL; 0: none
std::atomic<long> failures{0};  // calls failed so far
std::atomic<long> live{0};      // blocks allocated and not yet freed (always counted)

bool should_fail() {
    if (!armed.load(std::memory_order_relaxed)) return false;
    long n = calls.fetch_add(1) + 1;
    if (n != fail_at.load()) return false;
    failures++;
    // TERN_ALLOC_TRACE=1: the call stack of each failed allocation (link with
    // -rdynamic or use addr2line for names), to find where a leak starts.
    if (std::getenv("TERN_ALLOC_TRACE")) {
        void *frames[32];
        int k = backtrace(frames, 32);
        std::fprintf(stderr, "[ alloc    ] failing allocation %ld:\n", n);
        backtrace_symbols_fd(frames, k, 2);
    }
    errno = ENOMEM;
    return true;
}

// Arms the counter for the library calls inside its scope only, so that the
// test's own checks never see a failed allocation.
struct Window {
    Window() { armed = true; }
    ~Window() { armed = false; }
};
}  // namespace alloc_fail

extern "C" {
void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **out, size_t align, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
char *__real_realpath(const char *path, char *resolved);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_posix_memalign(void **out, size_t align, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
char *__wrap_realpath(const char *path, char *resolved);

void *__wrap_malloc(size_t size) {
    if (alloc_fail::should_fail()) return nullptr;
    void *p = __real_malloc(size);
    if (p) alloc_fail::live++;
    return p;
}
void *__wrap_calloc(size_t n, size_t size) {
    if (alloc_fail::should_fail()) return nullptr;
    void *p = __real_calloc(n, size);
    if (p) alloc_fail::live++;
    return p;
}
void *__wrap_realloc(void *q, size_t size) {
    if (alloc_fail::should_fail()) return nullptr;
    void *p = __real_realloc(q, size);
    if (p && !q) alloc_fail::live++;
    if (!p && q && size == 0) alloc_fail::live--;  // glibc frees on realloc(p, 0)
    return p;
}
void __wrap_free(void *p) {
    if (p) alloc_fail::live--;
    __real_free(p);
}
char *__wrap_strdup(const char *s) {
    if (alloc_fail::should_fail()) return nullptr;
    char *p = __real_strdup(s);
    if (p) alloc_fail::live++;
    return p;
}
char *__wrap_strndup(const char *s, size_t n) {
    if (alloc_fail::should_fail()) return nullptr;
    char *p = __real_strndup(s, n);
    if (p) alloc_fail::live++;
    return p;
}
int __wrap_posix_memalign(void **out, size_t align, size_t size) {
    if (alloc_fail::should_fail()) return ENOMEM;
    int rc = __real_posix_memalign(out, align, size);
    if (rc == 0) alloc_fail::live++;
    return rc;
}
void *__wrap_aligned_alloc(size_t align, size_t size) {
    if (alloc_fail::should_fail()) return nullptr;
    void *p = __real_aligned_alloc(align, size);
    if (p) alloc_fail::live++;
    return p;
}
// realpath(path, NULL) allocates its result, which the library frees.
char *__wrap_realpath(const char *path, char *resolved) {
    if (!resolved && alloc_fail::should_fail()) return nullptr;
    char *p = __real_realpath(path, resolved);
    if (p && !resolved) alloc_fail::live++;
    return p;
}
}

namespace {

int count_open_fds() {
    int n = 0;
    if (DIR *d = opendir("/proc/self/fd")) {
        while (readdir(d)) n++;
        closedir(d);
    }
    return n;
}

struct FailureStats {
    long allocations = 0;  // in a clean run
    long tried = 0;        // runs in which the chosen allocation did fail
    long no_memory = 0;    // ... and the call returned TERN_ERR_NO_MEMORY
    long tolerated = 0;    // ... and the call still succeeded (a fallback)
};

// Under qemu (aarch64 cross runs) and the sanitizers every run is 5-20x
// slower: there, try at most this many allocation indices per operation,
// the first ones always, the others spread evenly.
#if defined(__aarch64__)
constexpr long kMaxTries = 48;
#elif TERN_TEST_SANITIZED
constexpr long kMaxTries = 160;
#else
constexpr long kMaxTries = 1000000;
#endif

// attempt(err) runs the operation with its library calls inside
// alloc_fail::Window scopes and frees what it made; it returns the status of
// the operation under test, and checks its results itself when that is
// TERN_OK. prepare (optional) runs before each attempt, outside the count;
// after (optional) checks the state an attempt left, given its status.
FailureStats fail_each_allocation(const std::string &what, const std::function<tern_status(tern_error *)> &attempt,
                                  const std::function<void()> &prepare = {},
                                  const std::function<void(tern_status)> &after = {}) {
    FailureStats s;
    tern_error err = {};
    if (prepare) prepare();
    long live0 = alloc_fail::live, fds0 = count_open_fds();
    alloc_fail::calls = 0;
    alloc_fail::fail_at = 0;
    tern_status st = attempt(&err);
    s.allocations = alloc_fail::calls;
    EXPECT_EQ(st, TERN_OK) << what << ": clean run failed: " << err.message;
    EXPECT_EQ(alloc_fail::live - live0, 0) << what << ": the clean run leaks blocks";
    if (after) after(st);
    if (st != TERN_OK || testing::Test::HasFailure()) return s;
    const long head = std::min(kMaxTries / 2, 64L);
    const long stride = s.allocations > kMaxTries ? (s.allocations - head) / (kMaxTries - head) + 1 : 1;
    for (long n = 1; n <= s.allocations; n += (n <= head ? 1 : stride)) {
        if (prepare) prepare();
        live0 = alloc_fail::live;
        fds0 = count_open_fds();
        err = {};
        alloc_fail::calls = 0;
        alloc_fail::failures = 0;
        alloc_fail::fail_at = n;
        st = attempt(&err);
        alloc_fail::fail_at = 0;
        if (alloc_fail::failures == 0) {
            // Fewer allocations on this run (a path that depends on timing): nothing failed.
            EXPECT_EQ(st, TERN_OK) << what << " #" << n << ": " << err.message;
            continue;
        }
        s.tried++;
        if (st == TERN_OK) {
            s.tolerated++;
            if (std::getenv("TERN_ALLOC_TRACE"))
                std::fprintf(stderr, "[ alloc    ] %s: allocation %ld tolerated\n", what.c_str(), n);
        } else {
            EXPECT_EQ(st, TERN_ERR_NO_MEMORY) << what << ": allocation " << n << " of " << s.allocations
                                              << " failed, and the error was: " << err.message;
            EXPECT_NE(err.message[0], '\0') << what << " #" << n << ": no message";
            if (st == TERN_ERR_NO_MEMORY) s.no_memory++;
        }
        EXPECT_EQ(alloc_fail::live - live0, 0) << what << ": allocation " << n << " failed: blocks leaked";
        EXPECT_EQ(count_open_fds(), fds0) << what << ": allocation " << n << " failed: descriptors leaked";
        if (after) after(st);
        if (testing::Test::HasFailure()) break;  // one report per operation is enough
    }
    std::printf("[ alloc    ] %-34s %5ld allocations, %5ld failed: %5ld NO_MEMORY, %4ld tolerated\n", what.c_str(),
                s.allocations, s.tried, s.no_memory, s.tolerated);
    return s;
}

// ---- Models converted once for the whole program -----------------------------------------

struct Converted {
    std::string tmp;
    std::string llama, qwen2, mamba, rwkv4, vit, stories, llama_q8;
};

Converted &converted() {
    static Converted c;
    return c;
}

tern_status convert_model(const std::string &src, const std::string &dst, tern_weight_type w,
                          const char *tokenizer = nullptr) {
    tern_convert_options o;
    tern_convert_options_default(&o);
    o.weights = w;
    o.tokenizer_path = tokenizer;
    tern_error err = {};
    tern_status st = tern_convert(src.c_str(), dst.c_str(), &o, &err);
    if (st != TERN_OK) ADD_FAILURE() << src << ": " << err.message;
    return st;
}

class Reliability : public testing::Environment {
  public:
    void SetUp() override {
        Converted &c = converted();
        c.tmp = test_temp_dir();
        ASSERT_FALSE(c.tmp.empty());
        c.llama = c.tmp + "/llama.tern";
        c.llama_q8 = c.tmp + "/llama-q8.tern";
        c.qwen2 = c.tmp + "/qwen2.tern";
        c.mamba = c.tmp + "/mamba.tern";
        c.rwkv4 = c.tmp + "/rwkv4.tern";
        c.vit = c.tmp + "/vit.tern";
        c.stories = c.tmp + "/stories.tern";
        convert_model(test_shared_path("fixtures/hf/llama"), c.llama, TERN_WEIGHTS_F32);
        convert_model(test_shared_path("fixtures/hf/llama"), c.llama_q8, TERN_WEIGHTS_Q8);
        convert_model(test_shared_path("fixtures/hf/qwen2"), c.qwen2, TERN_WEIGHTS_Q4);
        convert_model(test_shared_path("fixtures/hf/mamba"), c.mamba, TERN_WEIGHTS_F32);
        convert_model(test_shared_path("fixtures/hf/rwkv4"), c.rwkv4, TERN_WEIGHTS_F16);
        convert_model(test_shared_path("fixtures/hf/vit"), c.vit, TERN_WEIGHTS_Q8);
        convert_model(test_shared_path("models/stories260K/stories260K.bin"), c.stories, TERN_WEIGHTS_F32,
                      test_shared_path("models/stories260K/tok512.bin").c_str());
    }
    void TearDown() override { test_remove_tree(converted().tmp); }
};

testing::Environment *const reliability_env = testing::AddGlobalTestEnvironment(new Reliability);

std::vector<std::string> list_dir(const std::string &dir) {
    std::vector<std::string> names;
    if (DIR *d = opendir(dir.c_str())) {
        while (const dirent *e = readdir(d))
            if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
        closedir(d);
    }
    return names;
}

// The whole file (empty when missing), by fread: the files here reach 23 MB.
std::vector<unsigned char> read_all(const std::string &path) {
    std::vector<unsigned char> data;
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return data;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
    std::fclose(f);
    return data;
}

size_t count_temp_files(const std::string &dir, const std::string &base) {
    size_t n = 0;
    for (const std::string &name : list_dir(dir))
        if (name.rfind(base + ".tmp.", 0) == 0) n++;
    return n;
}

// ---- Allocation failures --------------------------------------------------------------

tern_session_options session_options(uint32_t threads) {
    tern_session_options o;
    tern_session_options_default(&o);
    o.n_threads = threads;
    return o;
}

TEST(AllocationFailure, ModelOpen) {
    const Converted &c = converted();
    for (const std::string *path : {&c.llama, &c.llama_q8, &c.qwen2, &c.mamba, &c.rwkv4, &c.vit, &c.stories}) {
        fail_each_allocation("model_open " + path->substr(c.tmp.size() + 1), [&](tern_error *err) {
            tern_model *m = nullptr;
            tern_status st;
            {
                alloc_fail::Window w;
                st = tern_model_open(path->c_str(), nullptr, &m, err);
            }
            if (st == TERN_OK) tern_model_close(m);
            else EXPECT_EQ(m, nullptr);
            return st;
        });
    }
}

TEST(AllocationFailure, SessionCreate) {
    const Converted &c = converted();
    for (const std::string *path : {&c.llama, &c.qwen2, &c.mamba, &c.rwkv4, &c.vit}) {
        tern_model *m = nullptr;
        tern_error err = {};
        ASSERT_EQ(tern_model_open(path->c_str(), nullptr, &m, &err), TERN_OK) << err.message;
        for (uint32_t threads : {1u, 2u}) {
            tern_session_options o = session_options(threads);
            fail_each_allocation("session_create " + path->substr(c.tmp.size() + 1) + " t" + std::to_string(threads),
                                 [&](tern_error *e) {
                                     tern_session *s = nullptr;
                                     tern_status st;
                                     {
                                         alloc_fail::Window w;
                                         st = tern_session_create(m, &o, &s, e);
                                     }
                                     if (st == TERN_OK) tern_session_destroy(s);
                                     return st;
                                 });
        }
        tern_model_close(m);
    }
}

// Feeds a prompt, then one token on top of it, with the Nth allocation of the
// feed failing; a failed feed must leave the position where it was, and the
// same feed repeated without failure must give the logits of an undisturbed session.
TEST(AllocationFailure, SessionFeed) {
    const Converted &c = converted();
    const std::vector<int32_t> prompt = {1, 37, 400, 12, 99, 7};
    const int32_t next = 250;
    for (const std::string *path : {&c.llama, &c.qwen2, &c.mamba, &c.rwkv4}) {
        tern_model *m = nullptr;
        tern_error err = {};
        ASSERT_EQ(tern_model_open(path->c_str(), nullptr, &m, &err), TERN_OK) << err.message;
        tern_model_info info;
        tern_model_get_info(m, &info);
        for (uint32_t threads : {1u, 2u}) {
            tern_session_options o = session_options(threads);
            tern_session *s = nullptr;
            ASSERT_EQ(tern_session_create(m, &o, &s, &err), TERN_OK) << err.message;
            // Reference logits from the same session before any failure.
            std::vector<float> ref_all(prompt.size() * info.n_vocab), ref_next(info.n_vocab);
            ASSERT_EQ(tern_session_feed(s, prompt.data(), prompt.size(), ref_all.data(), TERN_LOGITS_ALL, &err), TERN_OK)
                << err.message;
            ASSERT_EQ(tern_session_feed(s, &next, 1, ref_next.data(), TERN_LOGITS_LAST, &err), TERN_OK) << err.message;
            std::vector<float> got_all(ref_all.size()), got_next(ref_next.size());
            const std::string name = path->substr(c.tmp.size() + 1) + " t" + std::to_string(threads);
            auto clear = [&] {
                tern_error e = {};
                ASSERT_EQ(tern_session_truncate(s, 0, &e), TERN_OK) << e.message;
            };
            fail_each_allocation(
                "feed prompt " + name,
                [&](tern_error *e) {
                    tern_status st;
                    {
                        alloc_fail::Window w;
                        st = tern_session_feed(s, prompt.data(), prompt.size(), got_all.data(), TERN_LOGITS_ALL, e);
                    }
                    if (st == TERN_OK) {
                        EXPECT_EQ(got_all, ref_all) << name;
                    }
                    return st;
                },
                clear,
                [&](tern_status st) {
                    if (st == TERN_OK) return;
                    EXPECT_EQ(tern_session_position(s), 0u) << name;
                    tern_error e = {};
                    ASSERT_EQ(tern_session_feed(s, prompt.data(), prompt.size(), got_all.data(), TERN_LOGITS_ALL, &e),
                              TERN_OK)
                        << name << ": the session is not usable after a failed feed: " << e.message;
                    EXPECT_EQ(got_all, ref_all) << name;
                });
            fail_each_allocation(
                "feed next " + name,
                [&](tern_error *e) {
                    tern_status st;
                    {
                        alloc_fail::Window w;
                        st = tern_session_feed(s, &next, 1, got_next.data(), TERN_LOGITS_LAST, e);
                    }
                    if (st == TERN_OK) {
                        EXPECT_EQ(got_next, ref_next) << name;
                    }
                    return st;
                },
                [&] {
                    clear();
                    tern_error e = {};
                    ASSERT_EQ(tern_session_feed(s, prompt.data(), prompt.size(), nullptr, TERN_LOGITS_NONE, &e), TERN_OK)
                        << e.message;
                },
                [&](tern_status st) {
                    if (st == TERN_OK) return;
                    EXPECT_EQ(tern_session_position(s), prompt.size()) << name;
                    tern_error e = {};
                    ASSERT_EQ(tern_session_feed(s, &next, 1, got_next.data(), TERN_LOGITS_LAST, &e), TERN_OK)
                        << name << ": the session is not usable after a failed feed: " << e.message;
                    EXPECT_EQ(got_next, ref_next) << name;
                });
            tern_session_destroy(s);
        }
        tern_model_close(m);
    }
}

TEST(AllocationFailure, ClassifyAndImageDecode) {
    const Converted &c = converted();
    tern_model *m = nullptr;
    tern_error err = {};
    ASSERT_EQ(tern_model_open(c.vit.c_str(), nullptr, &m, &err), TERN_OK) << err.message;
    tern_model_info info;
    tern_model_get_info(m, &info);
    tern_image_config cfg;
    ASSERT_EQ(tern_model_image_config(m, &cfg), TERN_OK);
    const size_t n_images = 2, n_pixels = (size_t)cfg.channels * cfg.height * cfg.width;
    std::vector<float> pixels(n_images * n_pixels);
    std::mt19937 rng(8);
    std::normal_distribution<float> normal;
    for (float &v : pixels) v = normal(rng);
    for (uint32_t threads : {1u, 2u}) {
        tern_session_options o = session_options(threads);
        tern_session *s = nullptr;
        ASSERT_EQ(tern_session_create(m, &o, &s, &err), TERN_OK) << err.message;
        std::vector<float> ref(n_images * info.n_vocab), got(ref.size());
        ASSERT_EQ(tern_session_classify(s, pixels.data(), n_images, ref.data(), &err), TERN_OK) << err.message;
        fail_each_allocation(
            "classify t" + std::to_string(threads),
            [&](tern_error *e) {
                tern_status st;
                {
                    alloc_fail::Window w;
                    st = tern_session_classify(s, pixels.data(), n_images, got.data(), e);
                }
                if (st == TERN_OK) {
                    EXPECT_EQ(got, ref);
                }
                return st;
            },
            {},
            [&](tern_status st) {
                if (st == TERN_OK) return;
                tern_error e = {};
                ASSERT_EQ(tern_session_classify(s, pixels.data(), n_images, got.data(), &e), TERN_OK) << e.message;
                EXPECT_EQ(got, ref);
            });
        tern_session_destroy(s);
    }
    tern_model_close(m);

    // A JPEG photo through decode and preprocessing, as `tern classify` does.
    std::vector<unsigned char> jpg = read_all(test_shared_path("models/vit-tiny-in1k/images/kiwi.jpg"));
    ASSERT_FALSE(jpg.empty());
    std::vector<float> out(n_pixels);
    fail_each_allocation("image decode+preprocess", [&](tern_error *e) {
        tern_image img = {};
        tern_status st;
        {
            alloc_fail::Window w;
            st = tern_image_decode(jpg.data(), jpg.size(), &img, e);
            if (st == TERN_OK) st = tern_image_preprocess(&img, &cfg, out.data(), e);
        }
        if (img.rgb) tern_image_free(&img);
        return st;
    });
}

TEST(AllocationFailure, Tokenize) {
    const Converted &c = converted();
    tern_model *m = nullptr;
    tern_error err = {};
    ASSERT_EQ(tern_model_open(c.stories.c_str(), nullptr, &m, &err), TERN_OK) << err.message;
    ASSERT_TRUE(tern_model_has_tokenizer(m));
    const std::string text = "Once upon a time, a little girl named Lily found a shiny stone. \xc3\xa9t\xc3\xa9!";
    std::vector<int32_t> ref(256), got(256);
    size_t n_ref = 0, n_got = 0;
    ASSERT_EQ(tern_model_tokenize(m, text.data(), text.size(), 1, 0, ref.data(), ref.size(), &n_ref, &err), TERN_OK)
        << err.message;
    ref.resize(n_ref);
    fail_each_allocation("model_tokenize", [&](tern_error *e) {
        tern_status st;
        {
            alloc_fail::Window w;
            st = tern_model_tokenize(m, text.data(), text.size(), 1, 0, got.data(), 256, &n_got, e);
        }
        if (st == TERN_OK) {
            EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + n_got), ref);
        }
        return st;
    });
    fail_each_allocation("detokenize", [&](tern_error *e) {
        tern_detokenizer *d = nullptr;
        std::string out;
        char buf[1024];
        tern_status st;
        {
            alloc_fail::Window w;
            st = tern_detokenizer_create(m, 0, &d, e);
            for (size_t i = 0; st == TERN_OK && i < ref.size(); i++) {
                size_t n = 0;
                st = tern_detokenizer_feed(d, ref[i], buf, sizeof buf, &n, e);
                out.append(buf, n);
            }
        }
        if (d) tern_detokenizer_destroy(d);
        if (st == TERN_OK) {
            EXPECT_NE(out.find("Lily found a shiny stone"), std::string::npos) << out;
        }
        return st;
    });
    tern_model_close(m);

    // A Hugging Face tokenizer.json, loaded, built and used.
    std::string dir = test_temp_dir();
    std::vector<unsigned char> json = read_all(test_source_path("tests/fuzz/corpus/tokenizer_json/bytelevel_bpe.json"));
    ASSERT_FALSE(json.empty());
    ASSERT_TRUE(test_write_file(dir + "/tokenizer.json", json.data(), json.size()));
    const char hello[] = "Hello world, it's 2026!";
    std::vector<int32_t> hf_ref;
    {
        tern_hf_tokenizer t;
        tern_tokenizer *tok = nullptr;
        int32_t ids[256];
        size_t n = 0;
        ASSERT_EQ(tern_hf_tokenizer_load(dir.c_str(), nullptr, 0, &t, &err), TERN_OK) << err.message;
        ASSERT_TRUE(t.found);
        ASSERT_EQ(tern_tokenizer_create(&t.desc, &tok, &err), TERN_OK) << err.message;
        ASSERT_EQ(tern_tokenizer_encode(tok, hello, sizeof hello - 1, 1, 0, ids, 256, &n, &err), TERN_OK);
        hf_ref.assign(ids, ids + n);
        ASSERT_GT(n, 4u);
        tern_tokenizer_destroy(tok);
        tern_hf_tokenizer_free(&t);
    }
    fail_each_allocation("hf tokenizer.json load+encode", [&](tern_error *e) {
        tern_hf_tokenizer t;
        tern_tokenizer *tok = nullptr;
        int32_t ids[256];
        size_t n = 0;
        tern_status st;
        bool loaded = false;
        {
            alloc_fail::Window w;
            st = tern_hf_tokenizer_load(dir.c_str(), nullptr, 0, &t, e);
            loaded = st == TERN_OK;  // freed by the loader on failure
            if (loaded) {
                if (t.found) st = tern_tokenizer_create(&t.desc, &tok, e);
                if (st == TERN_OK && tok) st = tern_tokenizer_encode(tok, hello, sizeof hello - 1, 1, 0, ids, 256, &n, e);
            }
        }
        if (st == TERN_OK) {
            EXPECT_EQ(std::vector<int32_t>(ids, ids + n), hf_ref);
        }
        if (tok) tern_tokenizer_destroy(tok);
        if (loaded) {
            EXPECT_TRUE(t.found);
            tern_hf_tokenizer_free(&t);
        }
        return st;
    });
    test_remove_tree(dir);

    // A GGUF vocabulary (llama.cpp's SPM and GPT-2 test files): open, tokenizer, encode.
    for (const char *vocab : {"models/tokenizers/ggml-vocab-llama-spm.gguf", "models/tokenizers/ggml-vocab-gpt-2.gguf"}) {
        const std::string path = test_shared_path(vocab);
        std::vector<int32_t> gg_ref;
        auto run = [&](tern_error *e, std::vector<int32_t> *ids_out) {
            tern_gguf g;
            tern_tokenizer_desc desc;
            tern_tokenizer *tok = nullptr;
            int32_t ids[256];
            size_t n = 0;
            bool opened = false, described = false;
            tern_status st;
            {
                alloc_fail::Window w;
                st = tern_gguf_open(path.c_str(), &g, e);
                opened = st == TERN_OK;
                if (opened) {
                    st = tern_tokenizer_desc_from_gguf(&g, &desc, e);
                    described = st == TERN_OK;
                }
                if (described) st = tern_tokenizer_create(&desc, &tok, e);
                if (st == TERN_OK) st = tern_tokenizer_encode(tok, hello, sizeof hello - 1, 1, 0, ids, 256, &n, e);
            }
            if (tok) tern_tokenizer_destroy(tok);
            if (described) tern_tokenizer_desc_free(&desc);
            if (opened) tern_gguf_close(&g);
            if (st == TERN_OK) ids_out->assign(ids, ids + n);
            return st;
        };
        ASSERT_EQ(run(&err, &gg_ref), TERN_OK) << err.message;
        ASSERT_GT(gg_ref.size(), 4u);
        fail_each_allocation(std::string("gguf tokenizer ") + (std::strstr(vocab, "spm") ? "spm" : "gpt-2"),
                             [&](tern_error *e) {
                                 std::vector<int32_t> got_ids;
                                 tern_status st = run(e, &got_ids);
                                 if (st == TERN_OK) {
                                     EXPECT_EQ(got_ids, gg_ref);
                                 }
                                 return st;
                             });
    }
}

// A conversion whose Nth allocation fails must leave neither the output nor a
// temporary file, and must not touch a previous output.
TEST(AllocationFailure, Convert) {
    const Converted &c = converted();
    struct Case {
        std::string name, src;
        tern_weight_type w;
        std::string tokenizer;
    };
    const std::vector<Case> cases = {
        {"hf llama q4", test_shared_path("fixtures/hf/llama"), TERN_WEIGHTS_Q4, ""},
        {"hf vit f16", test_shared_path("fixtures/hf/vit"), TERN_WEIGHTS_F16, ""},
        {"llama2c + tokenizer q8", test_shared_path("models/stories260K/stories260K.bin"), TERN_WEIGHTS_Q8,
         test_shared_path("models/stories260K/tok512.bin")},
        {"hf mamba f32", test_shared_path("fixtures/hf/mamba"), TERN_WEIGHTS_F32, ""},
        {"hf rwkv4 q8", test_shared_path("fixtures/hf/rwkv4"), TERN_WEIGHTS_Q8, ""},
        {"rwkv.cpp f16", test_shared_path("models/rwkv-cpp/tiny-rwkv-4v0-660K-FP32.bin"), TERN_WEIGHTS_F16, ""},
    };
    std::string dir = test_temp_dir();
    const std::string dst = dir + "/out.tern";
    std::vector<unsigned char> previous = read_all(c.llama_q8);
    ASSERT_FALSE(previous.empty());
    for (const Case &k : cases) {
        fail_each_allocation(
            "convert " + k.name,
            [&](tern_error *e) {
                tern_convert_options o;
                tern_convert_options_default(&o);
                o.weights = k.w;
                o.tokenizer_path = k.tokenizer.empty() ? nullptr : k.tokenizer.c_str();
                tern_status st;
                {
                    alloc_fail::Window w;
                    st = tern_convert(k.src.c_str(), dst.c_str(), &o, e);
                }
                if (st == TERN_OK) {
                    tern_file f;
                    tern_error fe = {};
                    EXPECT_EQ(tern_file_open(dst.c_str(), 1, &f, &fe), TERN_OK) << fe.message;
                    if (!fe.message[0]) tern_file_close(&f);
                }
                return st;
            },
            [&] { ASSERT_TRUE(test_write_file(dst, previous.data(), previous.size())); },
            [&](tern_status st) {
                if (st != TERN_OK) {
                    EXPECT_TRUE(read_all(dst) == previous) << k.name << ": the previous output changed";
                }
                EXPECT_EQ(count_temp_files(dir, "out.tern"), 0u) << k.name << ": a temporary file was left";
            });
    }
    test_remove_tree(dir);
}

// ---- SIGKILL during `tern convert` --------------------------------------------------------

// Starts `tern ARGS` with its output thrown away; exec through the shell so
// that a cross build's exe wrapper (qemu-user runs the guest in its own
// process) is the process that gets the signal.
pid_t spawn_tern(const std::string &args) {
    std::string cmd = "exec " + test_program_command("cli/tern") + " " + args + " >/dev/null 2>&1";
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *)nullptr);
        _exit(127);
    }
    return pid;
}

double now_s() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

uint32_t test_seed() {
    const char *s = std::getenv("TERN_TEST_SEED");
    return s ? (uint32_t)std::strtoul(s, nullptr, 10) : 20261124u;
}

struct KillStats {
    int before_temp = 0, mid_write = 0, finished = 0, max_stale = 0;
};

// Converts src (tern convert ARGS) into DIR/out.tern `kills` times with a
// SIGKILL at a random moment in [0, 1.2 x the clean run's duration], half
// with no previous output, half over a previous good file (a different
// conversion). After each kill the final name holds nothing, the previous
// file or the complete new one, byte for byte; temporary files are counted.
void kill_convert_at_random(const std::string &what, const std::string &convert_args, int kills) {
    const Converted &c = converted();
    std::string dir = test_temp_dir();
    const std::string out = dir + "/out.tern";
    const std::string args = "convert " + convert_args + " -o " + out;
    std::vector<unsigned char> previous = read_all(c.llama_q8);
    ASSERT_FALSE(previous.empty());

    // The complete output, and how long it takes (median of 3 runs: the machine may be busy).
    pid_t pid;
    int status = 0;
    std::vector<double> times;
    for (int i = 0; i < 3; i++) {
        double t0 = now_s();
        pid = spawn_tern(args);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        times.push_back(now_s() - t0);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << args;
    }
    std::sort(times.begin(), times.end());
    const double duration = times[1];
    std::vector<unsigned char> complete = read_all(out);
    {
        tern_file f;
        tern_error err = {};
        ASSERT_EQ(tern_file_open(out.c_str(), 1, &f, &err), TERN_OK) << err.message;
        tern_file_close(&f);
    }
    ASSERT_NE(complete, previous);

    uint32_t seed = test_seed() ^ (uint32_t)std::hash<std::string>()(what);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> when(0.0, 1.2 * duration);
    KillStats ks;
    // Until `kills` are done and one of them landed mid-write (up to 4 x kills).
    int done = 0;
    for (int i = 0; i < 4 * kills && (i < kills || ks.mid_write == 0); i++, done++) {
        const bool with_previous = i % 2 == 1;
        unlink(out.c_str());
        if (with_previous) {
            ASSERT_TRUE(test_write_file(out, previous.data(), previous.size()));
        }
        double delay = when(rng);
        pid = spawn_tern(args);
        ASSERT_GT(pid, 0);
        timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, nullptr);
        kill(pid, SIGKILL);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        const bool killed = WIFSIGNALED(status);
        if (!killed) {
            ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "run " << i;
        }

        struct stat st;
        const bool exists = stat(out.c_str(), &st) == 0;
        std::string where = what + ", run " + std::to_string(i) + " (seed " + std::to_string(seed) + ", kill after " +
                            std::to_string(delay * 1e3) + " ms)";
        if (exists) {
            std::vector<unsigned char> got = read_all(out);
            bool is_complete = got == complete, is_previous = with_previous && got == previous;
            EXPECT_TRUE(is_complete || is_previous)
                << where << ": " << got.size() << " bytes under the final name are neither the previous file ("
                << previous.size() << ") nor the complete output (" << complete.size() << ")";
            if (is_complete) ks.finished++;
        } else {
            EXPECT_FALSE(with_previous) << where << ": the previous output was removed";
        }
        if (!killed) {
            EXPECT_TRUE(exists) << where << ": the conversion ended without its output";
        }
        int stale = (int)count_temp_files(dir, "out.tern");
        if (stale > 0) ks.mid_write++;
        else if (!exists || (with_previous && read_all(out) == previous)) ks.before_temp++;
        ks.max_stale = std::max(ks.max_stale, stale);
        if (testing::Test::HasFailure()) break;
    }
    // A conversion that runs to the end removes what killed ones left behind.
    unlink(out.c_str());
    pid = spawn_tern(args);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_TRUE(read_all(out) == complete) << what;
    EXPECT_EQ(count_temp_files(dir, "out.tern"), 0u) << what << ": stale temporary files were not cleaned";
    EXPECT_EQ(list_dir(dir).size(), 1u);
    std::printf("[ sigkill  ] %-22s %.0f ms per run, %d kills: %d before the temporary file, %d mid-write "
                "(at most %d stale), %d after the rename\n",
                what.c_str(), duration * 1e3, done, ks.before_temp, ks.mid_write, ks.max_stale, ks.finished);
    // At least one kill must land mid-write for the test to mean anything;
    // the window is most of the run for these conversions.
    EXPECT_GT(ks.mid_write, 0) << what;
    test_remove_tree(dir);
}

#if defined(__aarch64__)
constexpr int kKills = 8;  // under qemu each run takes 10-20x longer
#elif TERN_TEST_SANITIZED
constexpr int kKills = 12;
#else
constexpr int kKills = 32;  // 96 kills over the three conversions
#endif

TEST(SigkillDuringConvert, SmallModel) {
    kill_convert_at_random("llama f32 (1.2 MB)", test_shared_path("fixtures/hf/llama") + " --weights f32", kKills);
}

TEST(SigkillDuringConvert, LargeModelMidWrite) {
    kill_convert_at_random("vit-tiny f32 (23 MB)", test_shared_path("models/vit-tiny-in1k") + " --weights f32",
                           kKills);
}

TEST(SigkillDuringConvert, QuantisingModel) {
    kill_convert_at_random("vit-tiny q8 (6.3 MB)", test_shared_path("models/vit-tiny-in1k") + " --weights q8",
                           kKills);
}

// A temporary file that a live conversion holds is never removed by another.
TEST(SigkillDuringConvert, LiveTemporaryFilesAreKept) {
    std::string dir = test_temp_dir();
    const std::string out = dir + "/out.tern";
    tern_writer *w = nullptr;
    tern_error err = {};
    ASSERT_EQ(tern_writer_open(out.c_str(), &w, &err), TERN_OK) << err.message;
    ASSERT_EQ(count_temp_files(dir, "out.tern"), 1u);
    // A dead writer's leftover, and files that only look similar.
    ASSERT_TRUE(test_write_file(out + ".tmp.Ab12Cd", "x", 1));
    ASSERT_TRUE(test_write_file(out + ".tmp.short", "x", 1));
    ASSERT_TRUE(test_write_file(out + ".tmp.Ab12Cd.keep", "x", 1));
    ASSERT_TRUE(test_write_file(dir + "/other.tern.tmp.Ab12Cd", "x", 1));
    pid_t pid = spawn_tern("convert " + test_shared_path("fixtures/hf/llama") + " -o " + out);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    // The live writer's file stays (it still holds its lock); the dead one is gone.
    EXPECT_EQ(count_temp_files(dir, "out.tern"), 3u);  // live + ".tmp.short" + ".tmp.Ab12Cd.keep"
    struct stat st;
    EXPECT_NE(stat((out + ".tmp.Ab12Cd").c_str(), &st), 0);
    EXPECT_EQ(stat((dir + "/other.tern.tmp.Ab12Cd").c_str(), &st), 0);
    ASSERT_EQ(tern_writer_set_u32(w, "test.value", 7, &err), TERN_OK);
    EXPECT_EQ(tern_writer_finish(w, &err), TERN_OK) << err.message;  // its temporary file was still there
    EXPECT_EQ(count_temp_files(dir, "out.tern"), 2u);
    test_remove_tree(dir);
}

// A calibrated conversion killed while its float copy ("<out>.calib-PID.tern",
// or the writer's temporary file of it) exists leaves it behind; the next
// conversion of the same output removes it, and keeps the copies of live
// processes and look-alike names.
TEST(SigkillDuringConvert, CalibrationCopyIsCleanedByTheNextConversion) {
    if (test_emulated()) GTEST_SKIP() << "calibration under qemu is slow; the cleaning is not architecture-specific";
    std::string dir = test_temp_dir();
    const std::string out = dir + "/out.tern";
    const std::string s = test_shared_path("models/stories260K");
    // 16384 calibration tokens: the calibration, with the copy on disk, lasts long enough to be hit.
    std::string ids;
    for (int i = 0; i < 16384; i++) ids += std::to_string(3 + (i * 7919) % 509) + " ";
    ASSERT_TRUE(test_write_file(dir + "/calib.ids", ids.data(), ids.size()));
    const std::string args = "convert " + s + "/stories260K.bin --tokenizer " + s + "/tok512.bin -o " + out +
                             " --weights q8 --sparsity 2:4 --prune sparsegpt --calib " + dir +
                             "/calib.ids --calib-tokens 16384";
    auto calib_files = [&] {
        std::vector<std::string> v;
        for (const std::string &n : list_dir(dir))
            if (n.find(".calib-") != std::string::npos) v.push_back(n);
        return v;
    };
    pid_t pid = spawn_tern(args);
    ASSERT_GT(pid, 0);
    // Kill it once the float copy is there (calibration runs for most of the conversion).
    const double t0 = now_s();
    bool seen = false;
    while (!seen && now_s() - t0 < 60) {
        for (const std::string &n : calib_files())
            if (n.find(".tmp.") == std::string::npos) seen = true;
        if (!seen) usleep(2000);
    }
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(seen) << "the conversion never wrote its float copy";
    ASSERT_TRUE(WIFSIGNALED(status)) << "the conversion ended before the kill";
    ASSERT_EQ(calib_files().size(), 1u) << "the killed conversion left no float copy: nothing to test";
    // A dead process's writer temp of a copy, a live process's copy (this
    // test's own pid), and names that only look similar.
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    ASSERT_EQ(waitpid(dead, &status, 0), dead);
    const std::string dead_tmp = out + ".calib-" + std::to_string(dead) + ".tern.tmp.Ab12Cd";
    const std::string live = out + ".calib-" + std::to_string(getpid()) + ".tern";
    const std::string other = dir + "/other.tern.calib-" + std::to_string(dead) + ".tern";
    const std::string odd = out + ".calib-" + std::to_string(dead) + ".ternx";
    for (const std::string *f : {&dead_tmp, &live, &other, &odd}) ASSERT_TRUE(test_write_file(*f, "x", 1));

    pid = spawn_tern(args + " --calib-tokens 128"); // the last --calib-tokens counts: a quick one
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << args;
    struct stat st;
    EXPECT_EQ(stat(out.c_str(), &st), 0);
    std::vector<std::string> left = calib_files();
    std::sort(left.begin(), left.end());
    std::vector<std::string> expected = {"other.tern.calib-" + std::to_string(dead) + ".tern",
                                         "out.tern.calib-" + std::to_string(dead) + ".ternx",
                                         "out.tern.calib-" + std::to_string(getpid()) + ".tern"};
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(left, expected);
    EXPECT_EQ(count_temp_files(dir, "out.tern"), 0u);
    test_remove_tree(dir);
}

// ---- Address-space limit ------------------------------------------------------------------

struct ChildRun {
    int exit_code = -1;
    int signal = 0;
    std::string err;
};

std::string shell_quote(const std::string &a) {
    std::string q = "'";
    for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
}

// Runs tern with RLIMIT_AS = limit bytes, stderr captured: directly when
// limited (the limit is for tern, not for a shell or qemu), else through
// the shell and a cross build's exe wrapper.
ChildRun run_limited(const std::vector<std::string> &args, rlim_t limit) {
    ChildRun r;
    // Everything the child needs is built before fork.
    std::string bin = test_build_path("cli/tern");
    std::string cmd = "exec " + test_program_command("cli/tern");
    for (const std::string &a : args) cmd += " " + shell_quote(a);
    std::vector<char *> argv;
    argv.push_back(const_cast<char *>(bin.c_str()));
    for (const std::string &a : args) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    int pipefd[2];
    if (pipe(pipefd) != 0) return r;
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        if (limit == RLIM_INFINITY) {
            execl("/bin/sh", "sh", "-c", cmd.c_str(), (char *)nullptr);
        } else {
            rlimit rl = {limit, limit};
            setrlimit(RLIMIT_AS, &rl);
            execv(bin.c_str(), argv.data());
        }
        _exit(127);
    }
    close(pipefd[1]);
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0) r.err.append(buf, (size_t)n);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    return r;
}

TEST(AddressSpaceLimit, SessionTooLargeIsAnErrorNotACrash) {
    if (TERN_TEST_SANITIZED) GTEST_SKIP() << "ASan/TSan reserve terabytes of address space: RLIMIT_AS cannot be tested";
    const char *wrapper = std::getenv("MESON_EXE_WRAPPER");
    if (wrapper && *wrapper) GTEST_SKIP() << "under an exe wrapper (qemu) the limit would apply to the emulator";
    // The llama fixture with a context of 4M positions: its KV cache alone is 2 GiB.
    std::string dir = test_temp_dir();
    ASSERT_EQ(mkdir((dir + "/hf").c_str(), 0755), 0);
    std::vector<unsigned char> cfg = read_all(test_shared_path("fixtures/hf/llama/config.json"));
    std::string text(cfg.begin(), cfg.end());
    size_t at = text.find("\"max_position_embeddings\": 128");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 30, "\"max_position_embeddings\": 4194304");
    ASSERT_TRUE(test_write_file(dir + "/hf/config.json", text.data(), text.size()));
    ASSERT_EQ(symlink(test_shared_path("fixtures/hf/llama/model.safetensors").c_str(),
                      (dir + "/hf/model.safetensors").c_str()),
              0);
    const std::string model = dir + "/big.tern";
    ASSERT_EQ(convert_model(dir + "/hf", model, TERN_WEIGHTS_F32), TERN_OK);

    // The smallest limit (doubling from 64 MiB) at which a 128-position session runs.
    const std::vector<std::string> small = {"generate", model, "--tokens", "1,5,9", "-n", "2", "-t", "1", "--ctx", "128"};
    rlim_t limit = 0;
    for (rlim_t l = (rlim_t)64 << 20; l <= (rlim_t)1 << 30; l *= 2) {
        if (run_limited(small, l).exit_code == 0) {
            limit = l;
            break;
        }
    }
    ASSERT_NE(limit, 0u) << "tern does not start under 1 GiB of address space";
    std::vector<std::string> big = small;
    big.back() = "4194304";
    ChildRun r = run_limited(big, limit);
    EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << ": " << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("out of memory"), std::string::npos) << r.err;
    std::printf("[ rlimit   ] RLIMIT_AS %llu MiB: %s", (unsigned long long)(limit >> 20), r.err.c_str());
    // The same for logits, whose session asks for every position's logits too.
    big = {"logits", model, "--tokens", "1,5,9", "-o", dir + "/x.npy", "-t", "1", "--ctx", "4194304"};
    r = run_limited(big, limit);
    EXPECT_EQ(r.signal, 0) << r.err;
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("out of memory"), std::string::npos) << r.err;
    test_remove_tree(dir);
}

// ---- Absurd inputs through the CLI -----------------------------------------------------

uint32_t crc32(const unsigned char *p, size_t n, uint32_t crc = 0) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

void put_be32(std::vector<unsigned char> &v, uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back((unsigned char)(x >> s));
}

// A PNG whose IHDR (valid CRC) declares width x height, followed by a tiny IDAT and IEND.
std::vector<unsigned char> png_declaring(uint32_t width, uint32_t height) {
    std::vector<unsigned char> f = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    auto chunk = [&](const char *type, const std::vector<unsigned char> &data) {
        put_be32(f, (uint32_t)data.size());
        std::vector<unsigned char> body(type, type + 4);
        body.insert(body.end(), data.begin(), data.end());
        f.insert(f.end(), body.begin(), body.end());
        put_be32(f, crc32(body.data(), body.size()));
    };
    std::vector<unsigned char> ihdr;
    put_be32(ihdr, width);
    put_be32(ihdr, height);
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
    chunk("IHDR", ihdr);
    chunk("IDAT", {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01});
    chunk("IEND", {});
    return f;
}

ChildRun run_tern(const std::vector<std::string> &args) { return run_limited(args, RLIM_INFINITY); }

TEST(AbsurdInputs, ImagesDeclaringHugeSizesViaCli) {
    const Converted &c = converted();
    std::string dir = test_temp_dir();
    std::vector<std::string> files;
    for (auto [w, h] : {std::pair<uint32_t, uint32_t>{100000, 100000}, {100000, 1}, {1, 100000}, {0x7fffffff, 0x7fffffff}}) {
        std::string p = dir + "/png_" + std::to_string(w) + "x" + std::to_string(h) + ".png";
        std::vector<unsigned char> f = png_declaring(w, h);
        ASSERT_TRUE(test_write_file(p, f.data(), f.size()));
        files.push_back(p);
    }
    // JPEG's 16-bit fields cap a declared size at 65535 x 65535 (4.3 G pixels).
    std::vector<unsigned char> jpg = read_all(test_shared_path("models/vit-tiny-in1k/images/kiwi.jpg"));
    // 65535 is over libjpeg's own 65500 limit, 60000 only over tern's.
    size_t sof = 0;
    for (size_t i = 2; i + 9 < jpg.size() && !sof; i++)
        if (jpg[i] == 0xFF && (jpg[i + 1] == 0xC0 || jpg[i + 1] == 0xC1 || jpg[i + 1] == 0xC2)) sof = i;
    ASSERT_NE(sof, 0u);
    for (unsigned side : {65535u, 60000u}) {
        jpg[sof + 5] = jpg[sof + 7] = (unsigned char)(side >> 8);
        jpg[sof + 6] = jpg[sof + 8] = (unsigned char)side;
        std::string p = dir + "/jpeg_" + std::to_string(side) + ".jpg";
        ASSERT_TRUE(test_write_file(p, jpg.data(), jpg.size()));
        files.push_back(p);
    }
    for (const std::string &f : files) {
        ChildRun r = run_tern({"classify", c.vit, f});
        EXPECT_EQ(r.signal, 0) << f << ": " << r.err;
        EXPECT_EQ(r.exit_code, 1) << f << ": " << r.err;
        EXPECT_TRUE(r.err.find("outside the limits") != std::string::npos ||
                    r.err.find("Maximum supported image dimension") != std::string::npos)
            << f << ": " << r.err;
        EXPECT_NE(r.err.find(f.substr(dir.size() + 1)), std::string::npos) << "the message names the file: " << r.err;
    }
    test_remove_tree(dir);
}

TEST(AbsurdInputs, PromptsLongerThanTheContextViaCli) {
    const Converted &c = converted();
    std::string tokens;
    for (int i = 0; i < 1000; i++) tokens += (i ? "," : "") + std::to_string(3 + i % 500);  // ids < 512
    std::string text;
    while (text.size() < 8000) text += "Once upon a time there was a cat. ";  // ~2400 tokens
    const std::string npy = c.tmp + "/never.npy";
    const std::vector<std::vector<std::string>> runs = {
        {"generate", c.llama, "--tokens", tokens, "-n", "4"},
        {"logits", c.llama, "--tokens", tokens, "-o", npy},
        {"logits", c.mamba, "--tokens", tokens, "--ctx", "64", "-o", npy},
        {"generate", c.stories, "-p", text, "-n", "4"},
        {"generate", c.llama, "--tokens", "1", "-n", "100000"},
    };
    for (const auto &args : runs) {
        ChildRun r = run_tern(args);
        EXPECT_EQ(r.signal, 0) << args[0] << " " << args[1] << ": " << r.err;
        if (args.back() == "100000") {
            // Generating past the context stops there, or says it is full.
            EXPECT_TRUE(r.exit_code == 0 || (r.exit_code == 1 && r.err.find("positions are used") != std::string::npos))
                << r.err;
            continue;
        }
        EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << ": " << r.err;
        EXPECT_NE(r.err.find("do not fit"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("positions"), std::string::npos) << r.err;
    }
    struct stat st;
    EXPECT_NE(stat(npy.c_str(), &st), 0) << "a failed logits run wrote its output";
}

}  // namespace
