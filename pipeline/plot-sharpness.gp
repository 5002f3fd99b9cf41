load "pipeline/style.gp"
set output out
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "top Hessian eigenvalue λ_1 of the training loss"
set title sprintf("%s recipe, seed %s: sharpness; ▲ memorised, ● generalised (at those steps, λ_1 of the nearest analysed checkpoint)", recipe, seed) font ",10"
plot for [d in depths] run(d)."/hessian.tsv" skip 1 using ($1 > 0 ? $1 : NaN):2 with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d), \
     runs skip 1 using (ismine(strcol(1), $3) ? $7 : NaN):(column(16) > 0 ? column(16) : NaN):2 with points pt 9 ps 1.6 lc variable notitle, \
     runs skip 1 using (ismine(strcol(1), $3) ? $8 : NaN):(column(17) > 0 ? column(17) : NaN):2 with points pt 7 ps 1.6 lc variable notitle
