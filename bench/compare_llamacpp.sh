#!/usr/bin/env bash
# tern against llama.cpp on identical random weights (issue 7's side-by-side):
# ../shared/tools/make_random_gguf.py writes F16 GGUFs of the SmolLM2-135M and
# TinyLlama-1.1B shapes; llama-quantize makes its Q4_0 / Q8_0, `tern convert`
# makes q4 g32 / q8 g32 from the same F16 file. Both run pp128 and tg64 at 1
# and 2 threads, alternating configuration by configuration in one run
# (llama.cpp with -lm none: weights read into memory, repacked for its
# kernels, its faster setting, formerly -mmp 0). The streaming read
# bandwidth (tern-bench-bandwidth, 4 GiB) is measured in the same run; the
# "bw" column is tern's weight bytes per token x tokens/s over it.
#
#   bench/compare_llamacpp.sh [-r REPS] [-m smollm2-135m,tinyllama-1.1b] [-e q4,q8] [-t 1,2]
#
# Needs: a release build of tern in build/bench (made here), python3, cmake,
# g++. llama.cpp comes from the sdist of PyPI's llama-cpp-python (vendored
# there), built once into ~/.cache/tern/peer; nothing of it enters the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${TERN_CACHE:-$HOME/.cache/tern}
PEER=$CACHE/peer
WORK=$CACHE/bench
REPS=3 MODELS=smollm2-135m,tinyllama-1.1b ENCS=q4,q8 THREADS=1,2
while [ $# -gt 0 ]; do
    case $1 in
        -r) REPS=$2; shift 2 ;;
        -m) MODELS=$2; shift 2 ;;
        -e) ENCS=$2; shift 2 ;;
        -t) THREADS=$2; shift 2 ;;
        *) echo "usage: $0 [-r REPS] [-m MODELS] [-e q4,q8] [-t 1,2]" >&2; exit 2 ;;
    esac
done
mkdir -p "$PEER" "$WORK"
log() { echo "== $*" >&2; }

# ---- tern, release build
if [ ! -d build/bench ]; then meson setup build/bench --buildtype=release -Dtests=false >/dev/null; fi
ninja -C build/bench cli/tern bench/tern-bench-bandwidth >/dev/null
TERN=$ROOT/build/bench/cli/tern

# ---- llama.cpp peer
LB=$PEER/llama-build/bin
if [ ! -x "$LB/llama-bench" ] || [ ! -x "$LB/llama-quantize" ]; then
    log "building llama.cpp from the llama-cpp-python 0.3.36 sdist (once, ~15 min on 2 cores)"
    [ -x "$PEER/venv/bin/pip" ] || python3 -m venv "$PEER/venv"
    mkdir -p "$PEER/sdist" "$PEER/src"
    ls "$PEER"/sdist/llama_cpp_python-0.3.36.tar.gz >/dev/null 2>&1 || \
        "$PEER/venv/bin/pip" download --no-binary :all: --no-deps -d "$PEER/sdist" llama-cpp-python==0.3.36
    tar -xzf "$PEER"/sdist/llama_cpp_python-0.3.36.tar.gz -C "$PEER/src"
    # -DGGML_NATIVE=OFF: the native build picks AMX code that faults on these VMs
    cmake -S "$PEER"/src/llama_cpp_python-0.3.36/vendor/llama.cpp -B "$PEER/llama-build" \
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON \
        -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF >/dev/null
    make -C "$PEER/llama-build" -j"$(nproc)" llama-bench llama-quantize >/dev/null
fi
export LD_LIBRARY_PATH=$LB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# ---- weights
PY=python3
if ! $PY -c 'import numpy' 2>/dev/null; then
    [ -x "$PEER/venv/bin/python" ] || python3 -m venv "$PEER/venv"
    "$PEER/venv/bin/python" -c 'import numpy' 2>/dev/null || "$PEER/venv/bin/pip" install -q numpy
    PY=$PEER/venv/bin/python
fi
SHARED=${TERN_SHARED_DIR:-$ROOT/../shared}
for m in ${MODELS//,/ }; do
    f16=$WORK/$m-f16.gguf
    [ -f "$f16" ] || { log "writing $f16"; $PY "$SHARED/tools/make_random_gguf.py" "$m" "$f16"; }
    for e in ${ENCS//,/ }; do
        g=$WORK/$m-${e}_0.gguf t=$WORK/$m-$e.tern
        [ -f "$g" ] || "$LB/llama-quantize" "$f16" "$g" "${e^^}_0" >/dev/null 2>&1
        [ -f "$t" ] || "$TERN" convert "$f16" -o "$t" --weights "$e" --group 32 >/dev/null
    done
done

# ---- bandwidth, then the pairs
BW=$(build/bench/bench/tern-bench-bandwidth -t "$THREADS" --json 2>/dev/null)
OUT=$WORK/compare-$(date +%Y%m%d-%H%M%S).jsonl
: > "$OUT"
for m in ${MODELS//,/ }; do
    for e in ${ENCS//,/ }; do
        for t in ${THREADS//,/ }; do
            log "$m $e $t thread(s)"
            "$TERN" bench "$WORK/$m-$e.tern" -p 128 -n 64 -t "$t" -r "$REPS" --json 2>/dev/null |
                $PY -c 'import json,sys; [print(json.dumps(dict(o, runtime="tern", model_name=sys.argv[1], enc=sys.argv[2]))) for o in json.load(sys.stdin)]' "$m" "$e" >> "$OUT"
            "$LB/llama-bench" -m "$WORK/$m-${e}_0.gguf" -p 128 -n 64 -t "$t" -r "$REPS" -lm none -o json 2>/dev/null |
                $PY -c 'import json,sys; [print(json.dumps(dict(o, runtime="llama.cpp", model_name=sys.argv[1], enc=sys.argv[2]))) for o in json.load(sys.stdin)]' "$m" "$e" >> "$OUT"
        done
    done
done

# ---- table
$PY - "$OUT" "$BW" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bw = {o["threads"]: o["read_gbs"] for o in json.loads(sys.argv[2])}
print("streaming read bandwidth: " + ", ".join("%d thread%s %.2f GB/s" % (t, "s" if t > 1 else "", g) for t, g in sorted(bw.items())))
print()
print("| model | weights | threads | test | tern tok/s | llama.cpp tok/s | tern / llama.cpp | tern GB/s read | bw |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
def key(o):
    if o["runtime"] == "tern":
        return (o["model_name"], o["enc"], o["threads"], o["test"])
    test = "pp%d" % o["n_prompt"] if o["n_prompt"] else "tg%d" % o["n_gen"]
    return (o["model_name"], o["enc"], o["n_threads"], test)
tern = {key(o): o for o in rows if o["runtime"] == "tern"}
peer = {key(o): o for o in rows if o["runtime"] == "llama.cpp"}
for k in tern:
    a, b = tern[k], peer.get(k)
    ts = a["tokens_per_s"]
    lt = b["avg_ts"] if b else float("nan")
    gbs = a["weight_bytes"] * ts * 1e-9 if k[3].startswith("tg") else float("nan")
    frac = gbs / bw[k[2]] if k[3].startswith("tg") and k[2] in bw else float("nan")
    spread = "%.2f (%.2f-%.2f)" % (ts, a["min"], a["max"])
    print("| %s | %s g32 / %s_0 | %d | %s | %s | %.2f ± %.2f | %.2fx | %s | %s |" % (
        k[0], k[1], k[1].upper(), k[2], k[3], spread, lt, b["stddev_ts"] if b else 0, ts / lt,
        "%.2f" % gbs if gbs == gbs else "", "%.0f%%" % (100 * frac) if frac == frac else ""))
print()
print("raw results: " + sys.argv[1])
PYEOF
