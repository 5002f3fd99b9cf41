# hess-eig records -> TSV: step, the top eigenvalues (largest first), and the
# fraction of hidden units dead (ReLU output zero) on every training example.
"step\tlambda1\tlambda2\tlambda3\tdead_frac",
(inputs | select(.record == "hessian")
 | [.step] + .eigenvalues[0:3]
   + [if .dead_units == null or .depth == 0 then "NaN" else (.dead_units | add) / (.depth * .width) end]
 | map(tostring) | join("\t"))
