# replicate-g9: one (operator, optimiser), every weight decay, four panels:
# accuracy; the per-example gradient norms of the log (mean, max) beside
# the full-batch gradient's; the noise scale; the GOP's trace from the log
# (every log point, line) and from gop-spectrum (checkpoints, points) with
# its top eigenvalue.  The caller sets dir, op, optim, wds, seed, family
# (mlp, tfm), p and out.  The transformer's log has no per-example norms:
# its panels take the GOP's trace and noise scale from gop-spectrum alone.
load "pipeline/style.gp"
set terminal pngcairo size 1400,1000 enhanced font "DejaVu Sans,10"
set output out
run(w) = sprintf("%s/%s-wd%s-s%s", dir, optim, w, seed)
set key inside left top font ",9"
# The transformer's checkpoints are log-spaced (it memorises within 100
# steps): its x axis is logarithmic, drawn at step + 1 so step 0 has a place.
if (family eq "tfm") {
	xs(s) = s + 1
	set logscale x
	set autoscale xfix
	set xlabel "training step + 1"
} else {
	xs(s) = s
	set xlabel "training step"
}
set multiplot layout 2,2 title sprintf("x %s y mod %d, %s, %s, seed %s: weight decays %s", \
    op eq "add" ? "+" : "-", p, family eq "tfm" ? "transformer" : "MLP", optim, seed, wds)

set title "accuracy (solid: test, dashed: train)"
set yrange [0:1.02]
# Each panel's key where its curves are least often: the accuracy's at
# the middle right (training curves at 1 from early on, test curves at 0
# or 1 by the end); the gradient norms' and the GOP's at the bottom left
# (every curve starts high); the noise scale's at the bottom right (above
# 100 at the end of every run); opaque, so a curve that crosses it
# cannot hide it.
set key right center opaque
plot for [i = 1:words(wds)] run(word(wds, i))."/curves.tsv" skip 1 using (xs($1)):5 with lines lt i title sprintf("wd %s", word(wds, i)), \
     for [i = 1:words(wds)] run(word(wds, i))."/curves.tsv" skip 1 using (xs($1)):4 with lines lt i dt 2 notitle
set yrange [*:*]

if (family eq "tfm") {
	set title "full-batch gradient norm |mean g|"
	set key left bottom
	set logscale y
	set format y "10^{%L}"
	plot for [i = 1:words(wds)] run(word(wds, i))."/norms.tsv" skip 1 using (xs($1)):2 with lines lt i title sprintf("wd %s", word(wds, i))

	set title "noise scale tr(C) / |mean g|^2 (gop-spectrum, checkpoints)"
	set key right bottom
	plot for [i = 1:words(wds)] run(word(wds, i))."/gop.tsv" skip 1 using (xs($1)):(($4 - $6) / $6) with linespoints lt i pt 7 ps 0.8 title sprintf("wd %s", word(wds, i))

	set title "GOP (gop-spectrum): tr G (solid), {/Symbol l}_1 (dashed)"
	set key left bottom
	plot for [i = 1:words(wds)] run(word(wds, i))."/gop.tsv" skip 1 using (xs($1)):4 with linespoints lt i pt 7 ps 0.8 title sprintf("wd %s", word(wds, i)), \
	     for [i = 1:words(wds)] run(word(wds, i))."/gop.tsv" skip 1 using (xs($1)):2 with linespoints lt i dt 2 pt 6 ps 0.6 notitle
} else {
	set title "gradient norms: mean |g_i| (solid), max |g_i| (dashed), |mean g| (dotted)"
	set key left bottom
	set logscale y
	set format y "10^{%L}"
	plot for [i = 1:words(wds)] run(word(wds, i))."/norms.tsv" skip 1 using (xs($1)):3 with lines lt i title sprintf("wd %s", word(wds, i)), \
	     for [i = 1:words(wds)] run(word(wds, i))."/norms.tsv" skip 1 using (xs($1)):4 with lines lt i dt 2 notitle, \
	     for [i = 1:words(wds)] run(word(wds, i))."/norms.tsv" skip 1 using (xs($1)):2 with lines lt i dt 3 notitle

	set title "noise scale tr(C) / |mean g|^2 (C: the centred GOP, 1/n)"
	set key right bottom
	plot for [i = 1:words(wds)] run(word(wds, i))."/norms.tsv" skip 1 using (xs($1)):6 with lines lt i title sprintf("wd %s", word(wds, i))

	set title "GOP: tr G from the log (line) and gop-spectrum (points); {/Symbol l}_1 (dashed)"
	set key left bottom
	plot for [i = 1:words(wds)] run(word(wds, i))."/norms.tsv" skip 1 using (xs($1)):5 with lines lt i title sprintf("wd %s", word(wds, i)), \
	     for [i = 1:words(wds)] run(word(wds, i))."/gop.tsv" skip 1 using (xs($1)):4 with points lt i pt 7 ps 0.8 notitle, \
	     for [i = 1:words(wds)] run(word(wds, i))."/gop.tsv" skip 1 using (xs($1)):2 with linespoints lt i dt 2 pt 6 ps 0.6 notitle
}
unset multiplot
