#!/usr/bin/env bash
# Issue 6's end-to-end check: 2:4 sparse against dense on the same random
# weights, Q8 and Q4 (g32), all layers in the converter's 16-row tiles. From
# the cached F16 GGUF of a model shape (../shared/tools/make_random_gguf.py,
# as bench/compare_llamacpp.sh makes it) `tern convert` writes, per encoding E,
#   MODEL-E-dense.tern   --weights E --group 32
#   MODEL-E-2of4.tern    --weights E --group 32 --sparsity 2:4   (magnitude)
# then `tern bench` runs prefill (ppP) and decode (tgN) at each thread count,
# dense and sparse alternating invocation by invocation, ROUNDS times over, so
# that drift of a shared machine hits both alike. It prints the median tok/s
# of each and the sparse / dense ratio next to issue 6's targets (decode: Q8
# >= 1.4x, Q4 >= 1.2x; prefill Q8 >= 1.0x).
#
#   bench/sparse_e2e.sh [-m tinyllama-1.1b] [-e q8,q4] [-t 1,2] [-p 128] [-n 64] [-r 2] [-k 3]
#
#   -m  model shape (make_random_gguf.py's names)   -e  encodings
#   -t  thread counts   -p  prompt tokens (prefill)  -n  generated tokens (decode)
#   -r  repetitions per tern bench invocation        -k  rounds of invocations
#
# Needs a release build of tern: TERN_BIN (default build/bench/cli/tern, made
# here when missing) and python3 with numpy when the GGUF must be written.
# Files live in TERN_CACHE/bench (default ~/.cache/tern/bench); a .tern older
# than the tern binary is converted again. With the defaults on the 2-core VM:
# about 4 minutes of conversion, then 24 tern bench invocations (roughly
# 10-15 minutes for TinyLlama).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${TERN_CACHE:-$HOME/.cache/tern}
WORK=$CACHE/bench
MODEL=tinyllama-1.1b ENCS=q8,q4 THREADS=1,2 NP=128 NG=64 REPS=2 ROUNDS=3
while [ $# -gt 0 ]; do
    case $1 in
        -m) MODEL=$2; shift 2 ;;
        -e) ENCS=$2; shift 2 ;;
        -t) THREADS=$2; shift 2 ;;
        -p) NP=$2; shift 2 ;;
        -n) NG=$2; shift 2 ;;
        -r) REPS=$2; shift 2 ;;
        -k) ROUNDS=$2; shift 2 ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
    esac
done
mkdir -p "$WORK"
log() { echo "== $*" >&2; }

if [ -z "${TERN_BIN:-}" ]; then
    if [ ! -d build/bench ]; then meson setup build/bench --buildtype=release -Dtests=false >/dev/null; fi
    ninja -C build/bench cli/tern >/dev/null
    TERN_BIN=$ROOT/build/bench/cli/tern
fi

f16=$WORK/$MODEL-f16.gguf
if [ ! -f "$f16" ]; then
    log "writing $f16"
    python3 "${TERN_SHARED_DIR:-$ROOT/../shared}/tools/make_random_gguf.py" "$MODEL" "$f16"
fi
for e in ${ENCS//,/ }; do
    for v in dense 2of4; do
        t=$WORK/$MODEL-$e-$v.tern
        if [ ! -f "$t" ] || [ "$TERN_BIN" -nt "$t" ]; then
            log "converting $t"
            extra=()
            [ $v = 2of4 ] && extra=(--sparsity 2:4)
            "$TERN_BIN" convert "$f16" -o "$t" --weights "$e" --group 32 "${extra[@]}" >/dev/null
        fi
    done
done

OUT=$WORK/sparse-e2e-$(date +%Y%m%d-%H%M%S).jsonl
: > "$OUT"
for k in $(seq 1 "$ROUNDS"); do
    for t in ${THREADS//,/ }; do
        for e in ${ENCS//,/ }; do
            for v in dense 2of4; do
                log "round $k/$ROUNDS: $MODEL $e $v, $t thread(s)"
                "$TERN_BIN" bench "$WORK/$MODEL-$e-$v.tern" -p "$NP" -n "$NG" -t "$t" -r "$REPS" --json |
                    python3 -c 'import json,sys; [print(json.dumps(dict(o, enc=sys.argv[1], variant=sys.argv[2], round=int(sys.argv[3])))) for o in json.load(sys.stdin)]' \
                        "$e" "$v" "$k" >> "$OUT"
            done
        done
    done
done

python3 - "$OUT" "$MODEL" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for o in rows:
    by.setdefault((o["enc"], o["threads"], o["test"], o["variant"]), []).append(o["tokens_per_s"])
target = {("q8", "tg"): 1.4, ("q4", "tg"): 1.2, ("q8", "pp"): 1.0}
print("%s, %d invocation(s) per cell (median of their medians)\n" % (sys.argv[2], max(len(v) for v in by.values())))
print("| weights | threads | test | dense tok/s | 2:4 tok/s | 2:4 / dense | target |")
print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
ok = True
for (e, t, test, v) in sorted(by):
    if v != "dense" or (e, t, test, "2of4") not in by:
        continue
    d = statistics.median(by[(e, t, test, "dense")])
    s = statistics.median(by[(e, t, test, "2of4")])
    goal = target.get((e, test[:2]))
    met = "" if goal is None else (">= %.1fx %s" % (goal, "met" if s / d >= goal else "MISSED"))
    ok = ok and (goal is None or s / d >= goal)
    print("| %s g32 | %d | %s | %.2f | %.2f | %.2fx | %s |" % (e, t, test, d, s, s / d, met))
print("\nall targets met" if ok else "\nsome targets missed")
print("raw results: " + sys.argv[1])
PYEOF
