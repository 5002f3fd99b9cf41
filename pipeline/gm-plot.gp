# replicate-gm's plots from one experiment's curves.tsv (gm-curves.jq).
# The caller sets tsv, exp, what (loss, acc, specnorm, update), scale
# (linear, log) and out; what=pca draws tsv as embed-pca's table instead.
load "pipeline/style.gp"
set output out
set key inside right center
set xlabel "epoch"
if (scale eq "log") { set logscale x }
if (what eq "loss") {
	if (scale eq "log") { set logscale y }
	set ylabel "mean cross-entropy loss (nats)"
	set title sprintf("%s: train and validation loss (%s)", exp, scale)
	plot tsv skip 1 using ($1 > 0 ? $1 : NaN):3 with lines lt 1 title "train", \
	     tsv skip 1 using ($1 > 0 ? $1 : NaN):4 with lines lt 2 title "validation"
}
if (what eq "acc") {
	set ylabel "accuracy (%)"
	set yrange [0:100]
	set title sprintf("%s: train and validation accuracy (%s)", exp, scale)
	plot tsv skip 1 using ($1 > 0 ? $1 : NaN):5 with lines lt 1 title "train", \
	     tsv skip 1 using ($1 > 0 ? $1 : NaN):6 with lines lt 2 title "validation"
}
if (what eq "specnorm") {
	set ylabel "largest singular value of net.4.weight"
	set title sprintf("%s: the read-out layer's spectral norm", exp)
	plot tsv skip 1 using ($1 > 0 ? $1 : NaN):7 with lines lt 3 title "spectral norm"
}
if (what eq "update") {
	# the source's "speed of learning": how far the parameters move in an
	# epoch (its steps' updates summed as vectors), beside one step's
	set logscale y
	set ylabel "parameter change (L2 norm)"
	set title sprintf("%s: update size per epoch and per step", exp)
	plot tsv skip 1 using ($1 > 0 ? $1 : NaN):9 with lines lt 4 lw 2 title "epoch: ||{/Symbol q}_{end} - {/Symbol q}_{start}||", \
	     tsv skip 1 using ($1 > 0 ? $1 : NaN):8 with lines lt 5 lw 1 title "step: ||{/Symbol q}_t - {/Symbol q}_{t-1}||"
}
if (what eq "pca") {
	unset xlabel
	set xlabel "first principal component"
	set ylabel "second principal component"
	set size ratio -1
	set key off
	set title sprintf("%s: the residues' embeddings (net.0.weight rows 0..p-1), 2-D PCA at the last checkpoint", exp)
	plot tsv skip 2 using 2:3 with points pt 7 ps 0.8 lt 3, \
	     tsv skip 2 using 2:3:1 with labels offset 0.6,0.6 font ",8"
}
