load "pipeline/style.gp"
set output out
set logscale xy
set xlabel "training step"
set ylabel "local learning coefficient λ̂ (mean ± sd over chains)"
set title sprintf("%s recipe, seed %s: LLC by SGLD at each checkpoint; flagged by the health rule, not an estimate (no line, no bar):\n× the posterior is not local (λ̂/nβ past ln p, flag nonlocal), ○ any other flag", recipe, seed) font ",10"
# The flags column (7) names the reasons; nonlocal is drawn apart because no sampler fixes it.
nonlocal(f) = strstrt(f, "nonlocal") > 0
plot for [d in depths] run(d)."/llc.tsv" skip 1 using ($1 > 0 && $4 == 0 ? $1 : NaN):2:3 with yerrorlines lt (d + 0) pt 7 ps 0.6 notitle, \
     for [d in depths] keyentry with linespoints lt (d + 0) pt 7 ps 0.6 title sprintf("%s %s", unit, d), \
     for [d in depths] run(d)."/llc.tsv" skip 1 using ($1 > 0 && $4 > 0 && !nonlocal(strcol(7)) ? $1 : NaN):2 with points lt (d + 0) pt 6 ps 2 notitle, \
     for [d in depths] run(d)."/llc.tsv" skip 1 using ($1 > 0 && $4 > 0 && nonlocal(strcol(7)) ? $1 : NaN):2 with points lt (d + 0) pt 2 ps 1.5 notitle
