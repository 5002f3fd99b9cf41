# The epsilon x nbeta calibration, one panel per depth: lambda-hat against
# the step size epsilon auto chose times each scale, one line per nbeta; open
# circles are flagged (not healthy), the asterisk is the study's own point.
# Trust a point where the line is flat in epsilon and the chains healthy.
load "pipeline/style.gp"
set terminal pngcairo size 1400,900 enhanced font "DejaVu Sans,9"
set output out
nd = words(depths)
cols = nd > 4 ? 4 : nd
rows = (nd + cols - 1) / cols
set multiplot layout rows, cols title sprintf("%s recipe, last checkpoint of seed 0: λ̂ against the SGLD step ε (auto × scales), one line per nβ; ○ flagged, ✳ the study's point", recipe) font ",10"
set logscale xy
set format x "10^{%L}"
set xlabel "ε"
set ylabel "λ̂"
set key inside top left font ",8"
# the distinct nbeta values, in the order of the rows
nbs = ""
stats tsv skip 1 using (strstrt(nbs, sprintf("|%s|", strcol(2))) == 0 ? (nbs = nbs . sprintf("|%s|", strcol(2)), 0) : 0) nooutput
nb(i) = word(system(sprintf("echo '%s' | tr '|' ' '", nbs)), i)
nnb = words(system(sprintf("echo '%s' | tr '|' ' '", nbs)))
do for [d in depths] {
	set title sprintf("depth %s", d)
	plot for [i=1:nnb] tsv skip 1 using ($1 == d + 0 && strcol(2) eq nb(i) ? $4 : NaN):6:7 with yerrorlines lt i pt 7 ps 0.6 title sprintf("nβ = %.3g", nb(i) + 0), \
	     tsv skip 1 using ($1 == d + 0 && $8 > 0 ? $4 : NaN):6 with points lt 8 pt 6 ps 1.8 notitle, \
	     tsv skip 1 using ($1 == d + 0 && $10 > 0 ? $4 : NaN):6 with points lt 8 pt 3 ps 2.5 notitle
}
unset multiplot
