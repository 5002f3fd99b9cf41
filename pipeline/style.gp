# Shared by every plot: PNG through cairo, one colour per depth everywhere.
set terminal pngcairo size 1000,700 enhanced font "DejaVu Sans,11"
set datafile missing "NaN"
set datafile separator "\t"
set grid lc rgb "#dddddd"
set key outside right top
set linetype 1 lc rgb "#1b9e77" lw 2
set linetype 2 lc rgb "#d95f02" lw 2
set linetype 3 lc rgb "#7570b3" lw 2
set linetype 4 lc rgb "#e7298a" lw 2
set linetype 5 lc rgb "#66a61e" lw 2
set linetype 6 lc rgb "#e6ab02" lw 2
set linetype 7 lc rgb "#a6761d" lw 2
set linetype 8 lc rgb "#666666" lw 2
# run(d): a run's directory; the caller sets dir, seed, depths, recipe, runs, out.
# suffix: the first swept variant's part of a run's name (_wd<wd>_f<frac>), if any
if (!exists("suffix")) suffix = ""
run(d) = sprintf("%s/d%s-s%s%s", dir, d, seed, suffix)
# memorisation (triangle) and generalisation (circle) steps of the plotted seed
ismine(r, s) = (r eq recipe && s == seed + 0)
# unit: what the lines are, "depth" (an MLP's hidden layers) or "layers" (transformer blocks)
if (!exists("unit")) unit = "depth"
