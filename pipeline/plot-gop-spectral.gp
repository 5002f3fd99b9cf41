load "pipeline/style.gp"
set output out
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "spectral norm of G = (1/n) Σ g_i g_i^T"
set title sprintf("%s recipe, seed %s: gradient outer product, largest eigenvalue", recipe, seed)
plot for [d in depths] run(d)."/gop.tsv" skip 1 using ($1 > 0 ? $1 : NaN):2 with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d)
