load "pipeline/style.gp"
set output out
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "‖∇L‖ of the full training loss"
set title sprintf("%s recipe, seed %s: gradient norm", recipe, seed)
plot for [d in depths] run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):6 with lines lt (d + 0) title sprintf("%s %s", unit, d)
