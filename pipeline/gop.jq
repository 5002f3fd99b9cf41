# gop-spectrum records -> TSV: step and the GOP statistics plotted.
"step\tspectral\teffective_rank\ttrace\tstable_rank\tmean_grad_sq",
(inputs | select(.record == "gop")
 | [.step, .gop.spectral, .gop.effective_rank, .gop.trace, .gop.stable_rank, .mean_grad_sq]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
