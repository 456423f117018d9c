#!/usr/bin/env python3
"""The sparsity quality table of docs/sparsity.md: N:M pruning by magnitude,
Wanda and SparseGPT x {2:4, 4:8} x kept values {f16, q8 g32, q4 g32}, with
the dense rows of the same encodings for reference, on stories260K,
vit-tiny-in1k and SmolLM2-135M-Instruct, against the float model.

Per conversion: KL(base || model) and top-1 agreement with the base model
(`tern perplexity --kl-base`, `tern classify --base`), perplexity on the
evaluation text, for the ViT the labelled top-1 over the ImageNet images,
bits per weight of the block matrices and the conversion time. Calibration
data differ from the evaluation data (bench/quality.py's split: text
bench/text/calib.txt vs eval.txt or GPL-3; the unlabelled images vs the
labelled ones). Results go to WORK/results.json as they come, so a run cut
short still gives a table (--table-only rebuilds it).

Usage: bench/sparsity_quality.py [--tern build/native/cli/tern] [--models stories,vit,smollm2]
                                 [--work DIR] [--threads N] [--update-doc docs/sparsity.md]
                                 [--smollm2-calib-tokens 1024] [--vit-calib-tokens 394]
                                 [--patterns 2:4,4:8] [--prunes magnitude,wanda,sparsegpt]
                                 [--values "f16,q8 g32,q4 g32"]
"""
import argparse
import json
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402  (helpers only; its behaviour is unchanged)

ROOT = quality.ROOT
VALUES = [("f16", "f16"), ("q8 g32", "q8"), ("q4 g32", "q4")]
BEGIN, END = "<!-- sparsity-table:begin -->", "<!-- sparsity-table:end -->"
log = quality.log


def vit_labels(model_dir):
    """Sorted image name -> ImageNet class index (only the labelled ones), from
    reference.safetensors' `labels` (int32, -1 where unknown) and reference.json's order."""
    ref = json.load(open(os.path.join(model_dir, "reference.json")))
    with open(os.path.join(model_dir, "reference.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header["labels"]
        a, b = meta["data_offsets"]
        f.seek(8 + n + a)
        raw = f.read(b - a)
    labels = struct.unpack(f"<{len(raw) // 4}i", raw)
    return {name: lab for name, lab in zip(ref["images"], labels) if lab >= 0}


def convert(tern, m, out, weights, pattern, prune, calib_tokens):
    """Converts m's source into out; returns (seconds, None) or (None, error)."""
    if os.path.exists(out):
        return 0.0, None
    cmd = [tern, "convert", m["src"], "-o", out] + m["extra"] + ["--weights", weights]
    if weights in ("q8", "q4"):
        cmd += ["--group", "32"]
    if pattern:
        cmd += ["--sparsity", pattern, "--prune", prune]
        if prune != "magnitude":
            cmd += ["--calib", m["calib"]] + (["--calib-tokens", str(calib_tokens)] if calib_tokens else [])
    t0 = time.time()
    code, out_text, err_text = quality.run(cmd, check=False)
    if code != 0:
        return None, quality.first_error(err_text or out_text)
    return time.time() - t0, None


def measure(tern, m, path, base, threads, labels):
    bpw_lin, _, _ = quality.info(tern, path)
    row = dict(bpw_lin=bpw_lin)
    if m["kind"] == "text":
        q = quality.text_quality(tern, path, base, m["eval"], m["ctx"], m["stride"], threads)
        row.update(kl=q.get("kl", 0.0), top1=q.get("top1_agreement", 1.0), ppl=q["ppl"])
    else:
        q = quality.vision_quality(tern, path, base if base != path else None, m["eval"], threads)
        right = sum(1 for im in q["images"] if labels.get(os.path.basename(im["path"])) == im["top1"])
        row.update(kl=q.get("kl", 0.0), top1=q.get("top1_agreement", 1.0), agree=q.get("agree", q["n"]),
                   n=q["n"], labelled=right, n_labelled=sum(1 for i in m["eval"] if os.path.basename(i) in labels))
    return row


def table(m, rows, note):
    text = m["kind"] == "text"
    out = [f"### {m['title']}", "", note, "",
           "| pruning | pattern | values | bits/w (blocks) | KL | top-1 agreement | "
           + ("perplexity" if text else "labelled top-1") + " | conversion |",
           "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        head = f"| {r['prune']} | {r['pattern']} | {r['values']} |"
        if "error" in r:
            out.append(f"{head} n/a | | | | {r['error']} |")
            continue
        third = quality.fmt(r.get("ppl"), ".3f") if text else f"{r['labelled']} of {r['n_labelled']}"
        secs = r.get("seconds")
        out.append(f"{head} {quality.fmt(r['bpw_lin'], '.3f')} | {r['kl']:.4f} | {r['top1']:.4f} | {third} | "
                   f"{'–' if secs is None else f'{secs:.0f} s'} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tern", default=os.path.join(ROOT, "build", "native", "cli", "tern"))
    ap.add_argument("--models", default="stories,vit,smollm2")
    ap.add_argument("--patterns", default="2:4,4:8")
    ap.add_argument("--prunes", default="magnitude,wanda,sparsegpt")
    ap.add_argument("--values", default="f16,q8 g32,q4 g32", help="kept-value encodings to run, of " +
                    ", ".join(v for v, _ in VALUES))
    ap.add_argument("--work", default="/tmp/tern-sparsity")
    ap.add_argument("--threads", type=int, default=2, help="threads of the quality runs")
    ap.add_argument("--smollm2-calib-tokens", type=int, default=1024)
    ap.add_argument("--vit-calib-tokens", type=int, default=394, help="2 images (x calib.c's views)")
    ap.add_argument("--update-doc", default=None)
    ap.add_argument("--table-only", action="store_true", help="rebuild the table from WORK/results.json")
    a = ap.parse_args()
    tern = os.path.abspath(a.tern)
    os.makedirs(a.work, exist_ok=True)
    ms = quality.models(a.work)
    results_path = os.path.join(a.work, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    calib_tokens = {"stories": 0, "vit": a.vit_calib_tokens, "smollm2": a.smollm2_calib_tokens}
    labels = vit_labels(ms["vit"]["src"])

    def save():
        with open(results_path + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(results_path + ".tmp", results_path)

    for key in a.models.split(","):
        if a.table_only:
            break
        m = ms[key]
        if key == "smollm2":
            m["src"] = quality.smollm2_gguf()
        log(f"{m['title']}:")
        rows = results.setdefault(key, {})
        base = os.path.join(a.work, f"{key}.base.tern")
        convert(tern, m, base, m["base_weights"], None, None, 0)
        values = [v for v in VALUES if v[0] in a.values.split(",")]
        plan = [("dense", "–", v) for v in values]
        for pattern in a.patterns.split(","):
            for prune in a.prunes.split(","):
                plan += [(prune, pattern, v) for v in values]
        for prune, pattern, (vname, weights) in plan:
            rid = f"{prune}/{pattern}/{vname}"
            if rid in rows:
                continue
            path = os.path.join(a.work, f"{key}.{prune}.{pattern.replace(':', 'of')}.{weights}.tern")
            secs, error = convert(tern, m, path, weights, None if prune == "dense" else pattern, prune,
                                  calib_tokens[key])
            row = dict(prune=prune, pattern=pattern, values=vname)
            if error:
                row["error"] = error.replace("|", "/")
                log(f"  {rid}: n/a: {error}")
            else:
                row.update(measure(tern, m, path, base, a.threads, labels))
                row["seconds"] = secs
                log(f"  {rid}: converted in {secs:.0f} s, KL {row['kl']:.4f}, top-1 {row['top1']:.4f}")
                os.remove(path)  # SmolLM2's files add up; every figure is in results.json
            rows[rid] = row
            save()

    doc = [f"Measured by `nice -n 5 bench/sparsity_quality.py {' '.join(sys.argv[1:])}` on "
           f"{time.strftime('%Y-%m-%d')}. KL: mean KL(base || model) of the next-token (class) "
           "distributions; top-1 agreement: the fraction of positions (images) where both argmaxes agree; "
           "bits/w over the matrices of the blocks. \"conversion\": wall time of `tern convert` on the "
           "loaded 2-core VM (calibration included).", ""]
    for key in ["stories", "vit", "smollm2"]:
        if key not in results:
            continue
        m = ms[key]
        order = [f"dense/–/{v}" for v, _ in VALUES] + [
            f"{p}/{pat}/{v}" for pat in ["2:4", "4:8"] for p in ["magnitude", "wanda", "sparsegpt"]
            for v, _ in VALUES]
        rows = [results[key][r] for r in order if r in results[key]]
        ct = calib_tokens[key]
        note = (f"Base: {m['base_note']}. Evaluation: {m['eval_note']}. Calibration (Wanda, SparseGPT): "
                + {"stories": "bench/text/calib.txt, 2048 tokens",
                   "vit": f"the first {max(1, (ct + 196) // 197)} unlabelled images (apple, armadillo) and "
                          "calib.c's views of them",
                   "smollm2": f"bench/text/calib.txt, {ct} tokens"}[key] + ".")
        doc.append(table(m, rows, note))
    body = "\n".join(doc)
    print(body)
    if a.update_doc:
        quality.update_doc(a.update_doc, body, BEGIN, END, heading=None)


if __name__ == "__main__":
    main()
