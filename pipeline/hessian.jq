# hess-eig records -> TSV: step, the top three eigenvalues (largest first;
# NaN where --top asked for fewer), and the fraction of hidden units dead
# (ReLU output zero) on every training example.
"step\tlambda1\tlambda2\tlambda3\tdead_frac",
(inputs | select(.record == "hessian")
 | [.step] + ((.eigenvalues + [null, null, null])[0:3])
   + [if .dead_units == null or .depth == 0 then null else (.dead_units | add) / (.depth * .width) end]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
