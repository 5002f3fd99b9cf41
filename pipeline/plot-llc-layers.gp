# One layer's LLC through training (llc-estimate --restrict layers.L, the
# other layers held at w*), one panel per run in files, one line per layer;
# open circles are flagged (not healthy).
load "pipeline/style.gp"
set output out
n = words(files)
set multiplot layout 1, n title sprintf("%s recipe, seed 0: the LLC of each layer alone (the rest held at w*) at each checkpoint; ○ flagged", recipe) font ",10"
set logscale xy
set xlabel "training step"
set ylabel "λ̂ of one layer (mean ± sd over chains)"
set key inside top left
do for [i=1:n] {
	f = word(files, i)
	stats f skip 1 using 1 nooutput
	nl = int(STATS_max) + 1
	set title f font ",9"
	plot for [l=0:nl-1] f skip 1 using ($1 == l && $2 > 0 ? $2 : NaN):3:4 with yerrorlines lt (l + 1) pt 7 ps 0.6 title sprintf("layers.%d", l), \
	     for [l=0:nl-1] f skip 1 using ($1 == l && $2 > 0 && $5 > 0 ? $2 : NaN):3 with points lt (l + 1) pt 6 ps 2 notitle
}
unset multiplot
