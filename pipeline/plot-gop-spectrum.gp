load "pipeline/style.gp"
set output out
set logscale y
set format y "10^{%L}"
set xlabel "eigenvalue index (largest first)"
set ylabel "eigenvalue of G"
set key autotitle columnhead
set title sprintf("%s recipe, depth 2, seed %s: GOP spectrum at the first, middle and last checkpoints", recipe, seed)
f = run("2")."/spectra.tsv"
plot f using 0:($1 > 0 ? $1 : NaN) with lines lw 2, '' using 0:($2 > 0 ? $2 : NaN) with lines lw 2, '' using 0:($3 > 0 ? $3 : NaN) with lines lw 2
