# replicate-ap's four plots, under the names the "01-grokking-hessian"
# study gave them, and precond_vs_steps, ours.  The caller sets dir (the
# recipe's runs), recipe, depths, seeds, kind (the plot's name) and out.
# Every seed of every depth is drawn, one colour per depth, the first seed
# solid and the others thin.
load "pipeline/style.gp"
set output out
run(d, s) = sprintf("%s/d%s-s%s", dir, d, s)
first = word(seeds, 1)
lw(s) = (s eq first) ? 2 : 0.7
ttl(d, s) = (s eq first) ? sprintf("depth %s", d) : ""
set xlabel "training step"
if (strstrt("|hessian_vs_depth|loss_vs_steps|grad_norm_vs_steps|test_acc_vs_steps|precond_vs_steps|", "|".kind."|") == 0) {
	print sprintf("plot-ap.gp: no plot called %s", kind)
	exit status 1
}

if (kind eq "hessian_vs_depth") {
	set xlabel "depth (hidden layers)"
	set ylabel "top Hessian eigenvalue {/Symbol l}_1 of the training loss"
	set logscale y
	set xrange [0.5:*]
	set xtics 1
	set title sprintf("%s: sharpness at the last checkpoint and its maximum over training (seeds %s)", recipe, seeds)
	plot dir."/hessian-by-depth.tsv" skip 1 using ($1 - 0.08):3 with points pt 7 ps 1.3 lc rgb "#1b9e77" title "{/Symbol l}_1 at the last step", \
	     "" skip 1 using ($1 + 0.08):4 with points pt 9 ps 1.3 lc rgb "#d95f02" title "largest {/Symbol l}_1 over training"
}
if (kind eq "loss_vs_steps") {
	set logscale y
	set ylabel "cross-entropy (solid: train, dashed: test)"
	set title sprintf("%s: train and test loss (seeds %s)", recipe, seeds)
	plot for [d in depths] for [s in seeds] run(d, s)."/curves.tsv" skip 1 using 1:2 with lines lt (d + 0) lw lw(s) title ttl(d, s), \
	     for [d in depths] for [s in seeds] run(d, s)."/curves.tsv" skip 1 using 1:3 with lines lt (d + 0) lw lw(s) dt 2 notitle
}
if (kind eq "grad_norm_vs_steps") {
	set logscale y
	set format y "10^{%L}"
	set ylabel "‖∇L‖ of the full training loss"
	set title sprintf("%s: gradient norm (seeds %s)", recipe, seeds)
	plot for [d in depths] for [s in seeds] run(d, s)."/curves.tsv" skip 1 using 1:6 with lines lt (d + 0) lw lw(s) title ttl(d, s)
}
if (kind eq "test_acc_vs_steps") {
	set ylabel "test accuracy"
	set yrange [0:1.02]
	set title sprintf("%s: test accuracy (seeds %s; chance 1/p)", recipe, seeds)
	plot for [d in depths] for [s in seeds] run(d, s)."/curves.tsv" skip 1 using 1:5 with lines lt (d + 0) lw lw(s) title ttl(d, s)
}
if (kind eq "precond_vs_steps") {
	# hessian.tsv's columns 9-11: lambda_max(P^-1 H), Adam's threshold
	# 38/lr, their ratio (NaN at step 0: no preconditioner yet).
	set logscale y
	set ylabel "{/Symbol l}_{max}(P^{-1}H) lr / 38  (Adam is stable below 1)"
	set title sprintf("%s: preconditioned sharpness over its stability threshold (seeds %s)", recipe, seeds)
	set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 3 lc rgb "#555555"
	plot for [d in depths] for [s in seeds] run(d, s)."/hessian.tsv" skip 1 using 1:11 with linespoints pt 7 ps 0.5 lt (d + 0) lw lw(s) title ttl(d, s)
}
