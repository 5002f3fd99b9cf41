# The whole GOP spectrum of one run (depth sdepth: 2, or the one depth; the plotted seed) at the
# checkpoints nearest initialisation, memorisation, generalisation (those
# reached) and the end: pipeline/spectra's columns, headed by the moment and its step.
load "pipeline/style.gp"
set output out
set logscale y
set format y "10^{%L}"
set xlabel "eigenvalue index (largest first)"
set ylabel "eigenvalue of G"
set key inside top right
if (!exists("sdepth")) sdepth = "2"
set title sprintf("GOP spectrum through training: %s recipe, %s %s, seed %s", recipe, unit, sdepth, seed)
f = run(sdepth)."/spectra.tsv"
# the moments, as the header names them (one colour each, not a depth's)
when = system("head -1 '".f."' | tr '\\t' '\\n' | cut -d' ' -f1 | tr '\\n' ' '")
n = words(when)
colour(w) = w eq "initialisation" ? "#999999" : w eq "memorisation" ? "#d95f02" : \
            w eq "generalisation" ? "#1f78b4" : "#000000"
dash(w) = w eq "initialisation" ? 2 : 1
plot for [i=1:n] f using 0:(column(i) > 0 ? column(i) : NaN) with lines lw 2 \
     lc rgb colour(word(when, i)) dt dash(word(when, i)) title columnheader(i)
