# What the study found, per recipe and depth, from
# summarize --group-by recipe,depth --tsv (columns read by name): test
# accuracy, how many seeds memorised and generalised, when they did (over
# the seeds that did, with how many next to the point), peak sharpness and
# the LLC at the last checkpoint.  Means ± standard deviation over seeds.
# Points are not joined by lines: a depth's value is its own, and one that
# is missing (no seed got there) must not look interpolated.  LLC estimates
# whose chains left the basin are not estimates: they are left out and the
# depth is marked "flagged".
# Set by the caller: tsv, out; recipes (default "grok seed").
load "pipeline/style.gp"
if (!exists("recipes")) recipes = "grok seed"
nrec = words(recipes)
set terminal pngcairo size 1800,1000 enhanced font "DejaVu Sans,11"
set output out

stats tsv using "depth" nooutput
dmin = STATS_min
dmax = STATS_max
stats tsv using "generalised" nooutput
any_generalised = STATS_max > 0
stats tsv using "memorised" nooutput
any_memorised = STATS_max > 0
# (NaN is the one value not equal to itself)
stats tsv using (column("llc_final_mean") == column("llc_final_mean") ? 1 : 0) nooutput
any_llc = STATS_max > 0

# one seed has no standard deviation (NaN): its point is drawn without a bar
nz(x) = x == x ? x : 0
# recipe r's points sit side by side around each depth
step = nrec > 4 ? 0.88 / nrec : 0.22
dx(i) = (i - (nrec + 1) / 2.0) * step
is(r) = strcol("recipe") eq r
set xrange [dmin - 0.6 : dmax + 0.6]
set xtics 1
set xlabel "depth (hidden layers of an MLP, blocks of a transformer)"
set key inside top left samplen 1.5
set bars small
set pointsize 1.3
# An invisible point keeps a panel drawable when it has nothing to show.
set samples 2
anchor = ", '+' using (dmin):(1) with points lc rgb \"#ffffffff\" notitle"
gen_anchor = any_generalised ? "" : anchor
mem_anchor = any_memorised ? "" : anchor

set multiplot layout 2,3 title "By depth: mean ± standard deviation over seeds" font ",14"

set title "test accuracy: final (●) and best (○ around it)"
set ylabel "accuracy"
set yrange [0:1.05]
# best first, larger: pngcairo fills an open circle with white, so the final
# value drawn over it shows as a dot in a ring (the two are often equal)
plot for [i=1:nrec] tsv using (is(word(recipes, i)) ? column("depth") + dx(i) : NaN):"best_test_acc_mean":(nz(column("best_test_acc_std"))) \
         with yerrorbars lt i pt 6 ps 2.2 notitle, \
     for [i=1:nrec] tsv using (is(word(recipes, i)) ? column("depth") + dx(i) : NaN):"final_test_acc_mean":(nz(column("final_test_acc_std"))) \
         with yerrorbars lt i pt 7 title word(recipes, i)

set title "seeds that memorised (open) and generalised (filled)"
set ylabel "fraction of seeds"
set yrange [0:1.1]
set style fill solid 0.7 border
set boxwidth 0.9 * step
plot for [i=1:nrec] tsv using (is(word(recipes, i)) ? column("depth") + dx(i) : NaN):(column("memorised") / column("runs")) \
         with boxes lt i fs empty notitle, \
     for [i=1:nrec] tsv using (is(word(recipes, i)) ? column("depth") + dx(i) : NaN):(column("generalised") / column("runs")) \
         with boxes lt i title word(recipes, i)

set logscale y
set yrange [*:*]
set ylabel "training step"
set title "generalisation step (test accuracy ≥ 0.99)"
if (!any_generalised) { set label 1 "no seed generalised" at graph 0.5, 0.5 center font ",13"; set yrange [1:10] }
plot for [i=1:nrec] tsv using (is(word(recipes, i)) && column("generalised") > 0 ? column("depth") + dx(i) : NaN):"generalisation_step_mean":(nz(column("generalisation_step_std"))) \
         with yerrorbars lt i pt 7 title word(recipes, i), \
     for [i=1:nrec] tsv using (is(word(recipes, i)) && column("generalised") > 0 ? column("depth") + dx(i) : NaN):"generalisation_step_mean":(sprintf("%d/%d", column("generalised"), column("runs"))) \
         with labels left offset 0.8, 0 tc lt i notitle @gen_anchor
unset label 1
set yrange [*:*]

set title "memorisation step (train accuracy ≥ 0.99)"
if (!any_memorised) { set label 1 "no seed memorised" at graph 0.5, 0.5 center font ",13"; set yrange [1:10] }
plot for [i=1:nrec] tsv using (is(word(recipes, i)) && column("memorised") > 0 ? column("depth") + dx(i) : NaN):"memorisation_step_mean":(nz(column("memorisation_step_std"))) \
         with yerrorbars lt i pt 7 title word(recipes, i), \
     for [i=1:nrec] tsv using (is(word(recipes, i)) && column("memorised") > 0 ? column("depth") + dx(i) : NaN):"memorisation_step_mean":(sprintf("%d/%d", column("memorised"), column("runs"))) \
         with labels left offset 0.8, 0 tc lt i notitle @mem_anchor
unset label 1
set yrange [*:*]

set ylabel "λ_1"
set format y "10^{%L}"
set title "peak sharpness (largest top Hessian eigenvalue)"
plot for [i=1:nrec] tsv using (is(word(recipes, i)) ? column("depth") + dx(i) : NaN):"peak_sharpness_mean":(nz(column("peak_sharpness_std"))) \
         with yerrorbars lt i pt 7 title word(recipes, i)
unset logscale y
set format y "%g"

set title "LLC at the last checkpoint (flagged runs left out)"
set ylabel "λ̂"
set yrange [0:*]
if (!any_llc) set label 1 "no LLC estimated" at graph 0.5, 0.5 center font ",13"
plot for [i=1:nrec] tsv using (is(word(recipes, i)) ? column("depth") + dx(i) : NaN):"llc_final_unflagged_mean":(nz(column("llc_final_unflagged_std"))) \
         with yerrorbars lt i pt 7 title word(recipes, i), \
     for [i=1:nrec] tsv using (is(word(recipes, i)) && column("llc_final_flagged") > 0 ? column("depth") + dx(i) : NaN):(0):(sprintf("✕ %d/%d\nflagged", column("llc_final_flagged"), column("runs"))) \
         with labels offset 0, 1.6 tc lt i notitle @anchor
unset multiplot
