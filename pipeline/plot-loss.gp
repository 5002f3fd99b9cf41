load "pipeline/style.gp"
set output out
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "mean cross-entropy loss (nats)"
set title sprintf("%s recipe, seed %s: train (dashed) and test (solid) loss", recipe, seed)
plot for [d in depths] run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):2 with lines lt (d + 0) dt 2 notitle, \
     for [d in depths] run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):3 with lines lt (d + 0) title sprintf("%s %s", unit, d)
