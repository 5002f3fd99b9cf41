# LLC against the SGLD step size on one checkpoint: trust the plateau.
load "pipeline/style.gp"
set output out
set logscale x
set xlabel "SGLD step size ε"
set ylabel "local learning coefficient λ̂ (mean ± sd over chains)"
set title sprintf("step-size calibration on the last checkpoint of %s; open circle: some chain left the basin", run) font ",10"
set key inside top left
plot tsv skip 1 using 1:2:3 with yerrorlines lt 1 pt 7 title "λ̂", \
     tsv skip 1 using ($4 > 0 ? $1 : NaN):2 with points lt 2 pt 6 ps 2.5 title "flagged"
