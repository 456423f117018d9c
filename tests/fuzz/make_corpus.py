#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/: small valid (and a
few cut) inputs of each reader, a few KB at most. Standard library only; the
.tern seeds go through the tern CLI (tern convert) when --tern names it, the
JPEGs through cjpeg (libjpeg-turbo-progs) when present. Real photos, GGUF
vocabularies and checkpoints are replayed from $TERN_SHARED_DIR at test time
(tests/fuzz/meson.build), not copied here.

usage: make_corpus.py OUT_DIR [--tern PATH_OF_tern_CLI]"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- llama2.c ---------------------------------------------------------------

def llama2c_checkpoint(v1=False, dim=8, ff=16, layers=1, heads=2, kv=2, vocab=8, seq=4, shared=True):
    hd = dim // heads
    n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * hd * dim + layers * dim * dim
         + layers * dim + 3 * layers * ff * dim + dim)
    if not shared:
        n += vocab * dim
    if v1:
        head = struct.pack("<Ii7iB", 0x616B3432, 1, dim, ff, layers, heads, kv, vocab, seq, int(shared))
        head += bytes(256 - len(head))
    else:
        n += seq * hd  # freq_cis, legacy only
        head = struct.pack("<7i", dim, ff, layers, heads, kv, vocab if shared else -vocab, seq)
    return head + b"".join(struct.pack("<f", ((i % 17) - 8) / 16.0) for i in range(n))


def llama2c_tokenizer(texts):
    out = struct.pack("<i", max(len(t) for t in texts))
    for i, t in enumerate(texts):
        out += struct.pack("<fi", -float(i), len(t)) + t
    return out


TINY_VOCAB = [b"<unk>", b"<s>", b"</s>", b" ", b"a", b"b", b" a", b"ab"]


# ---- safetensors --------------------------------------------------------------

def safetensors(tensors, meta=None):
    header, body = {}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


# ---- GGUF ---------------------------------------------------------------------

def gguf_str(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def gguf_kv(key, t, v):
    out = gguf_str(key) + struct.pack("<I", t)
    if t == 8:
        return out + gguf_str(v)
    if t == 9:
        et, items = v
        out += struct.pack("<IQ", et, len(items))
        fmt = {4: "<I", 5: "<i", 6: "<f", 7: "<B"}
        for it in items:
            out += gguf_str(it) if et == 8 else struct.pack(fmt[et], it)
        return out
    return out + struct.pack({4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q"}[t], v)


def gguf(kvs, tensors=()):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k in kvs:
        out += gguf_kv(*k)
    data, infos = b"", b""
    for name, dims, ggml_type, blob in tensors:
        data += bytes(-len(data) % 32)
        infos += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, len(data))
        data += blob
    out += infos
    out += bytes(-len(out) % 32)
    return out + data


def gpt2_alphabet():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


# ---- images -------------------------------------------------------------------

def png(width, height, color_type, bit_depth, rows, palette=None):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\0" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tern", help="the tern CLI, for the .tern seed")
    a = ap.parse_args()
    out = a.out

    # llama2.c checkpoints and tokenizers (fuzz_llama2c takes both).
    legacy = llama2c_checkpoint()
    tok = llama2c_tokenizer(TINY_VOCAB)
    put(out, "llama2c", "legacy_shared.bin", legacy)
    put(out, "llama2c", "legacy_unshared.bin", llama2c_checkpoint(shared=False))
    put(out, "llama2c", "v1_gqa.bin", llama2c_checkpoint(v1=True, heads=2, kv=1))
    put(out, "llama2c", "tokenizer.bin", tok)
    put(out, "llama2c", "legacy_cut.bin", legacy[:300])

    # .tern through the converter.
    if a.tern:
        with tempfile.TemporaryDirectory() as tmp:
            src, tp, dst = (os.path.join(tmp, n) for n in ("tiny.bin", "tok.bin", "tiny.tern"))
            open(src, "wb").write(legacy)
            open(tp, "wb").write(tok)
            for weights in ("f32", "q8"):
                subprocess.run([a.tern, "convert", src, "-o", dst, "--weights", weights, "--tokenizer", tp],
                               check=True, stdout=subprocess.DEVNULL)
                put(out, "tern", "tiny_%s.tern" % weights, open(dst, "rb").read())
            put(out, "tern", "header_only.tern", open(dst, "rb").read()[:128])

    # safetensors.
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, -7)
    put(out, "safetensors", "mixed.safetensors", safetensors({
        "a.weight": ("F32", [2, 3], f32),
        "b.half": ("F16", [4], struct.pack("<4e", 1, -0.5, 2, 65504)),
        "c.bf16": ("BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)),
        "d.int": ("I8", [3], bytes([1, 255, 127])),
        "e.i64": ("I64", [1], struct.pack("<q", -5)),
        "f.scalar": ("F32", [], struct.pack("<f", 2)),
        "g.empty": ("F32", [0, 4], b""),
    }, {"format": "pt"}))
    put(out, "safetensors", "cut.safetensors", safetensors({"a": ("F32", [2, 3], f32)})[:40])

    # GGUF: an SPM and a BPE vocabulary, and a tensor.
    spm_tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581", "a", "\u2581a", "b", "ab"]
    spm_types = [2, 3, 3] + [6] * 256 + [1] * 5
    put(out, "gguf", "spm.gguf", gguf([
        ("general.architecture", 8, "llama"),
        ("general.alignment", 4, 32),
        ("tokenizer.ggml.model", 8, "llama"),
        ("tokenizer.ggml.tokens", 9, (8, spm_tokens)),
        ("tokenizer.ggml.scores", 9, (6, [0.0] * 259 + [-1.0, -2.0, -3.0, -4.0, -5.0])),
        ("tokenizer.ggml.token_type", 9, (5, spm_types)),
        ("tokenizer.ggml.bos_token_id", 4, 1),
        ("tokenizer.ggml.eos_token_id", 4, 2),
        ("tokenizer.ggml.unknown_token_id", 4, 0),
        ("tokenizer.ggml.add_bos_token", 7, 1),
    ], [("token_embd.weight", [4, 2], 0, struct.pack("<8f", *range(8))),
        ("output_norm.weight", [4], 1, struct.pack("<4e", 1, 1, 1, 1))]))
    alpha = gpt2_alphabet()
    bpe_tokens = alpha + ["he", "ll", "hell", "\u0120t", "<|endoftext|>"]
    put(out, "gguf", "bpe.gguf", gguf([
        ("general.architecture", 8, "gpt2"),
        ("tokenizer.ggml.model", 8, "gpt2"),
        ("tokenizer.ggml.pre", 8, "gpt-2"),
        ("tokenizer.ggml.tokens", 9, (8, bpe_tokens)),
        ("tokenizer.ggml.token_type", 9, (5, [1] * 260 + [3])),
        ("tokenizer.ggml.merges", 9, (8, ["h e", "l l", "he ll", "\u0120 t"])),
        ("tokenizer.ggml.bos_token_id", 4, 260),
        ("tokenizer.ggml.eos_token_id", 4, 260),
    ]))
    put(out, "gguf", "cut.gguf", gguf([("general.architecture", 8, "llama"), ("a.b", 10, 7)])[:30])

    # Tokenizer inputs.
    for name, text in [("ascii", "Hello world, the 3 + 4 = 7\n"), ("spaces", "  two  spaces\tand\ttabs  "),
                       ("utf8", "\u00e9t\u00e9 \u4e2d\u6587 \U0001F600 \u0394"), ("special", "<s>hi</s> <|endoftext|><tool>"),
                       ("empty", "")]:
        put(out, "tokenizer", name + ".txt", text.encode())
    put(out, "tokenizer", "invalid.bin", b"ab\xff\xc3(\xe2\x82 z\xf0\x9f")

    # .npy.
    def npy(descr, shape, data):
        d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
        d += " " * (-(10 + len(d) + 1) % 64) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode() + data
    put(out, "npy", "f32_2x3.npy", npy("<f4", "(2, 3)", f32))
    put(out, "npy", "f32_vec.npy", npy("<f4", "(4,)", struct.pack("<4f", 1, 2, 3, 4)))
    put(out, "npy", "f32_4d.npy", npy("<f4", "(1, 2, 1, 2)", struct.pack("<4f", 1, 2, 3, 4)))
    put(out, "npy", "i4.npy", npy("<i4", "(2,)", struct.pack("<2i", 1, 2)))
    put(out, "npy", "cut.npy", npy("<f4", "(2, 3)", f32)[:70])

    # Images: PNGs of every colour type here, JPEGs shrunk from real photos.
    rgb = [bytes(v for x in range(4) for v in (x * 60, y * 80, 200)) for y in range(3)]
    put(out, "image", "rgb8.png", png(4, 3, 2, 8, rgb))
    put(out, "image", "gray8.png", png(4, 3, 0, 8, [bytes((x * 60 + y) for x in range(4)) for y in range(3)]))
    put(out, "image", "rgba8.png", png(2, 2, 6, 8, [bytes([255, 0, 0, 128, 0, 255, 0, 255])] * 2))
    put(out, "image", "rgb16.png", png(2, 2, 2, 16, [bytes(range(12)), bytes(range(12, 24))]))
    put(out, "image", "palette.png", png(2, 2, 3, 8, [b"\0\1", b"\1\0"], palette=b"\xff\0\0\0\0\xff"))
    put(out, "image", "gray_alpha.png", png(2, 1, 4, 8, [bytes([10, 255, 200, 0])]))
    if shutil.which("cjpeg"):  # libjpeg-turbo-progs
        w, h = 8, 6
        ppm = b"P6 %d %d 255\n" % (w, h) + bytes(v for y in range(h) for x in range(w)
                                              for v in (x * 30, y * 40, (x * y * 7) % 256))
        for name, args in [("baseline.jpg", []), ("progressive.jpg", ["-progressive"]),
                           ("gray.jpg", ["-grayscale"]), ("h1v1_q95.jpg", ["-sample", "1x1", "-quality", "95"]),
                           ("restart.jpg", ["-restart", "1B", "-optimize"])]:
            r = subprocess.run(["cjpeg", "-quality", "75"] + args, input=ppm, stdout=subprocess.PIPE, check=True)
            put(out, "image", name, r.stdout)

    # tokenizer.json.
    alpha_vocab = {c: i for i, c in enumerate(alpha)}
    vocab = dict(alpha_vocab, **{"he": 256, "ll": 257, "hell": 258})
    put(out, "tokenizer_json", "bytelevel_bpe.json", json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": 259, "content": "<|endoftext|>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "l l", "he ll"]},
    }, ensure_ascii=False).encode())
    spm_vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] +
                                                ["\u2581", "a", "\u2581a"])}
    put(out, "tokenizer_json", "spm_bpe.json", json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                         {"id": 2, "content": "</s>", "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                             {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                  {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [], "special_tokens": {}},
        "decoder": {"type": "Sequence", "decoders": []},
        "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": spm_vocab, "merges": ["\u2581 a"]},
    }, ensure_ascii=False).encode())
    put(out, "tokenizer_json", "merges_pairs.json",
        b'{"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"},'
        b'"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]}}')
    put(out, "tokenizer_json", "truncated.json", b'{"model":{"type":"BPE","vocab":{"a":0')


if __name__ == "__main__":
    sys.exit(main())
