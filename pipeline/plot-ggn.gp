# How much of the top curvature is the network's first derivatives: per
# depth (blocks, for a transformer), the Gauss-Newton matrix's top
# eigenvalue over the Hessian's (ggn.tsv) against step.  1: the top of the
# Hessian is all J^T H_out J; away from 1: the network's second
# derivative, weighted by the loss's gradient, adds (below 1) or takes
# away (above 1) curvature there.
# Set by the caller: dir, seed, suffix, depths, recipe, unit, runs, out.
load "pipeline/style.gp"
set output out
set logscale x
set xlabel "training step"
set ylabel "λ_1(GGN) / λ_1(Hessian)"
set title sprintf("%s recipe, seed %s: Gauss-Newton over Hessian top eigenvalue", recipe, seed) font ",10"
plot for [d in depths] run(d)."/ggn.tsv" skip 1 using ($1 > 0 ? $1 : NaN):4 with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d), \
     1 with lines lc rgb "#999999" dt 2 notitle
