// Writing GGUF files in tests: the llama.cpp side of the GGUF importer's
// tests, written independently of tern's reader.
#ifndef TERN_TESTS_TEST_GGUF_H
#define TERN_TESTS_TEST_GGUF_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "formats/encoding.h"
#include "formats/safetensors.h"

namespace test_gguf {

struct GgufTensor {
    std::string name;
    std::vector<uint64_t> shape;  // row-major (outermost first)
    uint32_t type;
    std::vector<uint8_t> data;
};

inline void put_u32(std::vector<uint8_t> &b, uint32_t v) { b.insert(b.end(), (uint8_t *)&v, (uint8_t *)&v + 4); }
inline void put_u64(std::vector<uint8_t> &b, uint64_t v) { b.insert(b.end(), (uint8_t *)&v, (uint8_t *)&v + 8); }
inline void put_str(std::vector<uint8_t> &b, const std::string &s) {
    put_u64(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
}

// A GGUF v3 file of architecture "llama": u32 metadata, f32 metadata,
// tensors aligned to 32.
inline std::vector<uint8_t> gguf_file(const std::map<std::string, uint32_t> &ints, const std::map<std::string, float> &floats,
                               const std::vector<GgufTensor> &ts) {
    std::vector<uint8_t> b = {'G', 'G', 'U', 'F'};
    put_u32(b, 3);
    put_u64(b, ts.size());
    put_u64(b, ints.size() + floats.size() + 1);
    put_str(b, "general.architecture");
    put_u32(b, 8);
    put_str(b, "llama");
    for (auto &kv : ints) {
        put_str(b, kv.first);
        put_u32(b, 4);
        put_u32(b, kv.second);
    }
    for (auto &kv : floats) {
        put_str(b, kv.first);
        put_u32(b, 6);
        b.insert(b.end(), (uint8_t *)&kv.second, (uint8_t *)&kv.second + 4);
    }
    uint64_t off = 0;
    for (auto &t : ts) {
        put_str(b, t.name);
        put_u32(b, (uint32_t)t.shape.size());
        for (size_t i = t.shape.size(); i-- > 0;) put_u64(b, t.shape[i]);
        put_u32(b, t.type);
        put_u64(b, off);
        off += (t.data.size() + 31) / 32 * 32;
    }
    while (b.size() % 32) b.push_back(0);
    for (auto &t : ts) {
        b.insert(b.end(), t.data.begin(), t.data.end());
        while (b.size() % 32) b.push_back(0);
    }
    return b;
}

// ggml blocks of 32 (type 0 F32, 8 Q8_0, 2 Q4_0, 3 Q4_1), quantised as llama.cpp does
// (Q4_0: d = max / -8 with max the value of largest magnitude). Q8_0 block
// `plant` (if any) gets a -128 code, to check that tern reads it as ggml does.
inline std::vector<uint8_t> ggml_quantize(const std::vector<float> &x, uint32_t type, size_t plant = SIZE_MAX) {
    std::vector<uint8_t> out;
    auto put16 = [&](uint16_t h) { out.push_back(h & 0xff), out.push_back(h >> 8); };
    for (size_t b = 0; b < x.size(); b += 32) {
        float amax = 0, mx_signed = 0, mn = x[b], mx = x[b];
        for (int j = 0; j < 32; j++) {
            if (std::fabs(x[b + j]) > amax) amax = std::fabs(x[b + j]), mx_signed = x[b + j];
            mn = std::min(mn, x[b + j]);
            mx = std::max(mx, x[b + j]);
        }
        if (type == 0) {
            out.insert(out.end(), (const uint8_t *)&x[b], (const uint8_t *)&x[b] + 32 * sizeof(float));
        } else if (type == 8) {
            float d = amax / 127;
            put16(tern_f32_to_f16(d));
            for (int j = 0; j < 32; j++) out.push_back((uint8_t)(int8_t)std::lround(d ? x[b + j] / d : 0));
            if (b / 32 == plant) out[out.size() - 1] = 0x80;  // -128
        } else if (type == 2) {
            float d = mx_signed / -8;
            put16(tern_f32_to_f16(d));
            auto q = [&](float v) { return (uint8_t)std::min(15L, std::max(0L, std::lround(d ? v / d : 0) + 8)); };
            for (int j = 0; j < 16; j++) out.push_back(q(x[b + j]) | q(x[b + j + 16]) << 4);
        } else {
            float d = (mx - mn) / 15;
            put16(tern_f32_to_f16(d));
            put16(tern_f32_to_f16(mn));
            auto q = [&](float v) { return (uint8_t)std::min(15L, std::max(0L, std::lround(d ? (v - mn) / d : 0))); };
            for (int j = 0; j < 16; j++) out.push_back(q(x[b + j]) | q(x[b + j + 16]) << 4);
        }
    }
    return out;
}

// ggml's dequantisation (dequantize_row_q8_0 / q4_0 / q4_1), independent of tern.
inline std::vector<float> ggml_dequantize(const std::vector<uint8_t> &q, uint32_t type, size_t n) {
    std::vector<float> out(n);
    const size_t bs = type == 8 ? 34 : type == 2 ? 18 : 20;
    for (size_t b = 0; b < n / 32; b++) {
        const uint8_t *p = &q[b * bs];
        const float d = tern_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        if (type == 8) {
            for (int j = 0; j < 32; j++) out[b * 32 + j] = (float)(int8_t)p[2 + j] * d;
        } else if (type == 2) {
            for (int j = 0; j < 16; j++) {
                out[b * 32 + j] = (float)((p[2 + j] & 15) - 8) * d;
                out[b * 32 + j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
        } else {
            const float m = tern_f16_to_f32((uint16_t)(p[2] | p[3] << 8));
            for (int j = 0; j < 16; j++) {
                out[b * 32 + j] = (float)(p[4 + j] & 15) * d + m;
                out[b * 32 + j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
        }
    }
    return out;
}

// The llama fixture (fixtures/hf/llama: 2 layers, 6 heads, 2 KV heads of 16,
// embedding 96, FFN 256, vocabulary 512) as llama.cpp's converter writes it:
// q/k rows permuted into the interleaved RoPE order, the matrices for which
// `quantise` says so in ggml type `qtype` (vectors stay F32), `embd_plant`
// handed to ggml_quantize for the token embedding.
struct LlamaFixtureGguf {
    std::vector<uint8_t> file;
    std::map<std::string, std::vector<float>> values;  // ggml's value of every tensor
    std::map<std::string, bool> quantised;
};

inline bool llama_fixture_gguf(const std::string &dir, uint32_t qtype,
                               const std::function<bool(const std::string &)> &quantise, size_t embd_plant,
                               LlamaFixtureGguf *out) {
    tern_safetensors st;
    if (tern_safetensors_open((dir + "/model.safetensors").c_str(), &st, nullptr) != TERN_OK) return false;
    const int L = 2, H = 6, HKV = 2, HD = 16, E = 96, F = 256, V = 512;
    bool ok = true;
    auto get = [&](const std::string &n) {
        const tern_st_tensor *t = tern_safetensors_find(&st, n.c_str());
        std::vector<float> v(t ? t->n_elements : 0);
        if (!t || tern_st_to_f32(t, v.data(), nullptr) != TERN_OK) ok = false;
        return v;
    };
    auto permute = [&](const std::vector<float> &w, int heads) {
        std::vector<float> p(w.size());
        if (w.size() != (size_t)heads * HD * E) {
            ok = false;
            return p;
        }
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < 2; j++)
                for (int k = 0; k < HD / 2; k++)
                    std::copy_n(&w[((size_t)h * HD + j * HD / 2 + k) * E], E, &p[((size_t)h * HD + 2 * k + j) * E]);
        return p;
    };
    std::vector<GgufTensor> ts;
    auto add = [&](const std::string &name, std::vector<float> v, std::vector<uint64_t> shape) {
        const bool quant = qtype != 0 && shape.size() == 2 && quantise(name);
        GgufTensor t{name, shape, quant ? qtype : 0u, {}};
        if (quant) {
            t.data = ggml_quantize(v, qtype, name == "token_embd.weight" ? embd_plant : SIZE_MAX);
            out->values[name] = ggml_dequantize(t.data, qtype, v.size());
        } else {
            t.data.assign((const uint8_t *)v.data(), (const uint8_t *)(v.data() + v.size()));
            out->values[name] = v;
        }
        out->quantised[name] = quant;
        ts.push_back(std::move(t));
    };
    add("token_embd.weight", get("model.embed_tokens.weight"), {V, E});
    add("output_norm.weight", get("model.norm.weight"), {E});
    add("output.weight", get("lm_head.weight"), {V, E});
    for (int l = 0; l < L; l++) {
        std::string p = "model.layers." + std::to_string(l) + ".", b = "blk." + std::to_string(l) + ".";
        add(b + "attn_norm.weight", get(p + "input_layernorm.weight"), {E});
        add(b + "attn_q.weight", permute(get(p + "self_attn.q_proj.weight"), H), {H * HD, E});
        add(b + "attn_k.weight", permute(get(p + "self_attn.k_proj.weight"), HKV), {HKV * HD, E});
        add(b + "attn_v.weight", get(p + "self_attn.v_proj.weight"), {HKV * HD, E});
        add(b + "attn_output.weight", get(p + "self_attn.o_proj.weight"), {E, H * HD});
        add(b + "ffn_norm.weight", get(p + "post_attention_layernorm.weight"), {E});
        add(b + "ffn_gate.weight", get(p + "mlp.gate_proj.weight"), {F, E});
        add(b + "ffn_up.weight", get(p + "mlp.up_proj.weight"), {F, E});
        add(b + "ffn_down.weight", get(p + "mlp.down_proj.weight"), {E, F});
    }
    tern_safetensors_close(&st);
    out->file = gguf_file({{"llama.context_length", 128}, {"llama.embedding_length", E}, {"llama.block_count", L},
                           {"llama.feed_forward_length", F}, {"llama.attention.head_count", H},
                           {"llama.attention.head_count_kv", HKV}},
                          {{"llama.rope.freq_base", 10000.0f}, {"llama.attention.layer_norm_rms_epsilon", 1e-5f}}, ts);
    return ok;
}

}  // namespace test_gguf

#endif
