load "pipeline/style.gp"
set output out
set logscale x
set yrange [0:1]
set xlabel "training step"
set ylabel "fraction of hidden units dead on every training example"
set title sprintf("%s recipe, seed %s: dead ReLU units (output zero on the whole training set)", recipe, seed) font ",10"
plot for [d in depths] run(d)."/hessian.tsv" skip 1 using ($1 > 0 ? $1 : NaN):5 with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d)
