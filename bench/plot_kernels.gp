# Latency against size for tern-bench-kernels --json results, one colour per
# tier, log-log. Called by bench/plot_kernels.sh, which turns the JSON into
# `datafile`: one block per tier (blocks apart by two blank lines, in the
# order of `tiers`), columns bytes moved, latency in us, kernel family.
#   gnuplot -e "datafile='k.tsv'; outfile='k.png'; tiers='ref avx2'" bench/plot_kernels.gp
if (!exists("datafile")) datafile = "kernels.tsv"
if (!exists("outfile")) outfile = "kernels.png"
if (!exists("tiers")) tiers = "ref"
if (!exists("title_text")) title_text = "tern kernels: latency against bytes moved (1 thread)"

set terminal pngcairo size 1400,900 enhanced font ",11"
set output outfile
set title title_text
set logscale xy
set xlabel "bytes read + written per call"
set ylabel "latency (us)"
set format x "10^{%L}"
set format y "10^{%L}"
set grid xtics ytics mxtics mytics
set key top left box opaque
plot for [i=1:words(tiers)] datafile index (i - 1) using 1:2 with points pt (5 + i) ps 1.3 \
     title word(tiers, i)
