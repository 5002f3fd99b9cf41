# Sharpness and the edge of stability.  Top: the top Hessian eigenvalue λ_1
# per depth (▲ memorised, ● generalised, at the nearest checkpoint's λ_1).
# Bottom (when hess-eig ran --precond): the sharpness the optimiser's
# stability depends on, against its threshold (black, dashed; it moves
# with the learning rate's schedule): for Adam(W), λ_max(P^-1 H) with P the
# preconditioner of the checkpoint's second moments, threshold
# (2 + 2β_1)/((1 - β_1) lr) = 38/lr at β_1 = 0.9 (Cohen et al. 2022); for
# SGD, λ_1 against (2 + 2 momentum)/lr (2/lr without momentum).
# Set by the caller: dir, seed, suffix, depths, recipe, unit, runs, out.
load "pipeline/style.gp"
d1 = word(depths, 1)
stats run(d1)."/hessian.tsv" skip 1 using (words(system("head -1 ".run(d1)."/hessian.tsv")) >= 10 && column(9) == column(9) ? 1 : 0) nooutput
stable = STATS_max > 0
set terminal pngcairo size 1000, (stable ? 1100 : 700) enhanced font "DejaVu Sans,11"
set output out
if (stable) { set multiplot layout 2, 1 }
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "top Hessian eigenvalue λ_1 of the training loss"
set title sprintf("%s recipe, seed %s: sharpness; ▲ memorised, ● generalised (at those steps, λ_1 of the nearest analysed checkpoint)", recipe, seed) font ",10"
plot for [d in depths] run(d)."/hessian.tsv" skip 1 using ($1 > 0 ? $1 : NaN):2 with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d), \
     runs skip 1 using (ismine(strcol(1), $3) ? $7 : NaN):(column(16) > 0 ? column(16) : NaN):2 with points pt 9 ps 1.6 lc variable notitle, \
     runs skip 1 using (ismine(strcol(1), $3) ? $8 : NaN):(column(17) > 0 ? column(17) : NaN):2 with points pt 7 ps 1.6 lc variable notitle
if (stable) {
	set ylabel "preconditioned sharpness (Adam: λ_{max}(P^{-1}H); SGD: λ_1)"
	set title "the edge of stability: training is unstable on a quadratic above the dashed threshold (38/lr for Adam at β_1 = 0.9; 2(1 + μ)/lr for SGD)" font ",10"
	plot for [d in depths] run(d)."/hessian.tsv" skip 1 using ($1 > 0 ? $1 : NaN):($9 > 0 ? $9 : NaN) with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d), \
	     run(d1)."/hessian.tsv" skip 1 using ($1 > 0 ? $1 : NaN):10 with lines lc rgb "#000000" lw 2 dt 2 title "threshold"
	unset multiplot
}
