# Per-depth summaries over seeds (mean ± standard deviation) from
# summarize --group-by recipe,depth --tsv.
load "pipeline/style.gp"
set terminal pngcairo size 2000,550 enhanced font "DejaVu Sans,11"
set output out
set multiplot layout 1,4 title "Summaries over seeds: mean ± standard deviation (runs that reached the threshold)"
set xlabel "depth (hidden layers)"
set xrange [0.5:7.5]
# An invisible point keeps a panel drawable when no run reached a threshold.
set samples 2
anchor = "'+' using (1):(1) with points lc rgb \"#ffffffff\" notitle"
set key inside top left
set logscale y
set ylabel "training step"
set title "generalisation step (test accuracy ≥ 0.99)"
plot tsv skip 1 using (strcol(1) eq "grok" ? $2 : NaN):11:12 with yerrorlines lt 1 pt 7 title "grok", \
     tsv skip 1 using (strcol(1) eq "seed" ? $2 : NaN):11:12 with yerrorlines lt 2 pt 7 title "seed", @anchor
set title "grokking delay (generalisation − memorisation)"
plot tsv skip 1 using (strcol(1) eq "grok" ? $2 : NaN):15:16 with yerrorlines lt 1 pt 7 title "grok", \
     tsv skip 1 using (strcol(1) eq "seed" ? $2 : NaN):15:16 with yerrorlines lt 2 pt 7 title "seed", @anchor
set ylabel "λ_1"
set title "peak sharpness (largest top Hessian eigenvalue)"
plot tsv skip 1 using (strcol(1) eq "grok" ? $2 : NaN):31:32 with yerrorlines lt 1 pt 7 title "grok", \
     tsv skip 1 using (strcol(1) eq "seed" ? $2 : NaN):31:32 with yerrorlines lt 2 pt 7 title "seed", @anchor
unset logscale y
set ylabel "λ̂"
set title "LLC at the last checkpoint (flagged chains included: see grok-llc.png)"
plot tsv skip 1 using (strcol(1) eq "grok" ? $2 : NaN):51:52 with yerrorlines lt 1 pt 7 title "grok", \
     tsv skip 1 using (strcol(1) eq "seed" ? $2 : NaN):51:52 with yerrorlines lt 2 pt 7 title "seed", @anchor
unset multiplot
