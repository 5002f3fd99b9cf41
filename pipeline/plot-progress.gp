# Nanda et al.'s figure with our curvature on it: per depth (or layer
# count), train and test loss (the training log) and restricted and
# excluded loss (progress-measures, at the checkpoints) against step, with
# vertical lines at the checkpoint of peak sharpness (hess-eig's λ_1) and,
# when llc = 1, of peak LLC (llc-estimate's mean over chains).
# Set by the caller: dir, seed, suffix, depths, recipe, unit, llc, out.
load "pipeline/style.gp"
n = words(depths)
cols = n < 3 ? n : 3
rows = (n + cols - 1) / cols
set terminal pngcairo size 560 * cols + 160, 430 * rows + 60 enhanced font "DejaVu Sans,10"
set output out
set multiplot layout rows, cols title sprintf("%s recipe, seed %s: loss and the Fourier circuit; | peak sharpness (red), peak LLC (blue)", recipe, seed) font ",12"
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "loss (nats)"
set key inside bottom left font ",9"
do for [i = 1:n] {
	d = word(depths, i)
	unset arrow
	stats run(d)."/hessian.tsv" skip 1 using 1:2 nooutput
	if (STATS_records > 0 && STATS_pos_max_y > 0) {
		set arrow 1 from STATS_pos_max_y, graph 0 to STATS_pos_max_y, graph 1 nohead lc rgb "#e31a1c" lw 2 dt 3
	}
	if (llc) {
		stats run(d)."/llc.tsv" skip 1 using 1:2 nooutput
		if (STATS_records > 0 && STATS_pos_max_y > 0) {
			set arrow 2 from STATS_pos_max_y, graph 0 to STATS_pos_max_y, graph 1 nohead lc rgb "#1f78b4" lw 2 dt 3
		}
	}
	set title sprintf("%s %s", unit, d)
	plot run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):($2 > 0 ? $2 : NaN) with lines lc rgb "#333333" dt 2 title "train", \
	     run(d)."/curves.tsv" skip 1 using ($1 > 0 ? $1 : NaN):($3 > 0 ? $3 : NaN) with lines lc rgb "#333333" title "test", \
	     run(d)."/progress.tsv" skip 1 using ($1 > 0 ? $1 : NaN):($4 > 0 ? $4 : NaN) with linespoints lc rgb "#1b9e77" pt 7 ps 0.6 title "restricted", \
	     run(d)."/progress.tsv" skip 1 using ($1 > 0 ? $1 : NaN):($5 > 0 ? $5 : NaN) with linespoints lc rgb "#d95f02" pt 5 ps 0.6 title "excluded"
}
unset multiplot
