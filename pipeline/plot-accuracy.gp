load "pipeline/style.gp"
set output out
set logscale x
set xlabel "training step"
set ylabel "accuracy (fraction correct)"
set yrange [0:1.05]
set title sprintf("%s recipe, seed %s: train (dashed) and test (solid) accuracy; ▲ memorised, ● generalised (accuracy ≥ 0.99)", recipe, seed) font ",10"
plot for [d in depths] run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):4 with lines lt (d + 0) dt 2 notitle, \
     for [d in depths] run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):5 with lines lt (d + 0) title sprintf("%s %s", unit, d), \
     runs skip 1 using (ismine(strcol(1), $3) ? $7 : NaN):(0.99):2 with points pt 9 ps 1.6 lc variable notitle, \
     runs skip 1 using (ismine(strcol(1), $3) ? $8 : NaN):(0.99):2 with points pt 7 ps 1.6 lc variable notitle
