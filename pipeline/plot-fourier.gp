# The Fourier spectrum of the x embedding (progress-measures: the norm
# fraction per frequency k over the p residues) at the first checkpoint,
# the one nearest memorisation and the last, per depth (or layer count).
# A spectrum that concentrates on a few k is the Fourier algorithm.
# Set by the caller: dir, seed, suffix, depths, recipe, unit, out.
load "pipeline/style.gp"
n = words(depths)
cols = n < 3 ? n : 3
rows = (n + cols - 1) / cols
set terminal pngcairo size 560 * cols + 160, 400 * rows + 60 enhanced font "DejaVu Sans,10"
set output out
set multiplot layout rows, cols title sprintf("%s recipe, seed %s: Fourier spectrum of the x embedding", recipe, seed) font ",12"
set xlabel "frequency k"
set ylabel "fraction of the embedding's norm²"
set key inside top right font ",9"
set style data linespoints
set yrange [0:*]
colour(w) = w eq "first" ? "#999999" : w eq "memorisation" ? "#d95f02" : "#000000"
do for [i = 1:n] {
	d = word(depths, i)
	f = run(d)."/fourier.tsv"
	when = system("head -1 '".f."' | tr '\\t' '\\n' | tail -n +2 | cut -d' ' -f1 | tr '\\n' ' '")
	stats f skip 1 using 1 nooutput
	if (STATS_max <= 20) { set xtics 1 } else { set xtics 5 }   # whole frequencies only
	set title sprintf("%s %s", unit, d)
	plot for [j = 1:words(when)] f using 1:(column(j + 1)) lw 2 pt 7 ps 0.5 lc rgb colour(word(when, j)) title columnheader(j + 1)
}
unset multiplot
