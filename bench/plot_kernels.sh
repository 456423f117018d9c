#!/usr/bin/env bash
# PNG of kernel latency against size from tern-bench-kernels --json output:
#   bench/plot_kernels.sh RESULTS.json [OUT.png] [FAMILY-REGEX]
# e.g. build/native/bench/tern-bench-kernels --json > k.json && bench/plot_kernels.sh k.json
# FAMILY-REGEX keeps only matching families ("attention|gelu"). Needs python3
# and gnuplot (Debian: gnuplot-nox).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 RESULTS.json [OUT.png] [FAMILY-REGEX]" >&2; exit 2; }
json=$1
out=${2:-${json%.json}.png}
filter=${3:-.}
here=$(cd "$(dirname "$0")" && pwd)
tsv=$(mktemp)
trap 'rm -f "$tsv"' EXIT
tiers=$(python3 - "$json" "$filter" "$tsv" <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1]))
keep = re.compile(sys.argv[2])
rows = {}
for r in doc["results"]:
    fam = r.get("family", "")
    if not keep.search(fam) or "ms" not in r:
        continue
    us = r["ms"] * 1e3
    # linear and sparse rows give GB/s over the weight bytes; the others say bytes
    size = r.get("bytes", r.get("gbs", 0.0) * r["ms"] * 1e6)
    if us <= 0 or size <= 0:
        continue
    rows.setdefault(r["tier"], []).append((size, us, fam))
with open(sys.argv[3], "w") as f:
    for tier, pts in rows.items():
        f.write("# %s\n" % tier)
        for size, us, fam in sorted(pts):
            f.write("%.0f\t%.4f\t%s\n" % (size, us, fam))
        f.write("\n\n")
print(" ".join(rows))
PY
)
[ -n "$tiers" ] || { echo "$0: no results in $json match '$filter'" >&2; exit 1; }
gnuplot -e "datafile='$tsv'; outfile='$out'; tiers='$tiers'" "$here/plot_kernels.gp"
echo "$out"
