# Which layer gets sharp: per depth (blocks, for a transformer), the top
# eigenvalue of each tensor group's diagonal block of the Hessian
# (hess-eig --blocks; blocks.tsv) against step, with the whole Hessian's λ_1
# (black, dotted) above them and dashed lines at the plotted seed's
# memorisation (grey) and generalisation (black) steps.  A block's λ_1 is
# at most the whole one's; the gap is what the coupling between groups adds.
# Set by the caller: dir, seed, suffix, depths, recipe, unit, runs, out.
load "pipeline/style.gp"
n = words(depths)
cols = n < 3 ? n : 3
rows = (n + cols - 1) / cols
set terminal pngcairo size (n == 1 ? 1000 : 560 * cols + 160), 430 * rows + 60 enhanced font "DejaVu Sans,10"
set output out
set multiplot layout rows, cols title sprintf("%s, seed %s: λ_1 of each tensor group's Hessian block (whole λ_1 dotted); dashed: memorised (grey), generalised (black)", recipe, seed) font ",10"
set logscale xy
set format y "10^{%L}"
set xlabel "training step"
set ylabel "top eigenvalue of the block"
set key inside bottom left font ",8" noenhanced
# the steps of the plotted seed at depth d (-1: not reached)
at(d, c) = (strcol(1) eq recipe && column(2) == d + 0 && column(3) == seed + 0 && column(c) == column(c)) ? column(c) : -1
do for [i = 1:n] {
	d = word(depths, i)
	f = run(d)."/blocks.tsv"
	hdr = system("head -1 ".f)
	ng = (words(hdr) - 1) / 2
	unset arrow
	stats runs skip 1 using (at(d, 7)) nooutput
	if (STATS_max > 0) {
		set arrow 1 from STATS_max, graph 0 to STATS_max, graph 1 nohead lc rgb "#999999" lw 2 dt 2
	}
	stats runs skip 1 using (at(d, 8)) nooutput
	if (STATS_max > 0) {
		set arrow 2 from STATS_max, graph 0 to STATS_max, graph 1 nohead lc rgb "#000000" lw 2 dt 2
	}
	set title sprintf("%s %s", unit, d)
	# (without --blocks, ng = 0: the whole λ_1 alone)
	plot for [g = 1:ng] f skip 1 using ($1 > 0 ? $1 : NaN):(column(g + 1) > 0 ? column(g + 1) : NaN) \
	         with linespoints lt ((g - 1) % 8 + 1) pt 7 ps 0.5 title substr(word(hdr, g + 1), 3, 100), \
	     run(d)."/hessian.tsv" skip 1 using ($1 > 0 ? $1 : NaN):($2 > 0 ? $2 : NaN) with lines lc rgb "#000000" lw 2 dt 3 title "whole"
}
unset multiplot
