load "pipeline/style.gp"
set output out
set logscale x
set xlabel "training step"
set ylabel "effective rank of G (exp of the spectral entropy)"
set title sprintf("%s recipe, seed %s: gradient outer product, effective rank", recipe, seed)
plot for [d in depths] run(d)."/gop.tsv" skip 1 using ($1 > 0 ? $1 : NaN):3 with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d)
