# hess-eig records -> TSV: step, the top three eigenvalues (largest first;
# NaN where --top asked for fewer), the fraction of hidden units dead (ReLU
# output zero) on every training example; then, NaN where the record lacks
# them: the Hutchinson trace, the fraction of |gradient|^2 in the top
# eigenvector's direction and in the top-3 span (--alignment), and the
# stability view (--precond): the sharpness the optimiser's stability
# depends on (Adam: lambda_max(P^-1 H); SGD: lambda_1), its threshold
# (38/lr for Adam at beta1 = 0.9, (2 + 2 momentum)/lr for SGD) and their ratio.
# New columns go last: plots read the others by number.
"step\tlambda1\tlambda2\tlambda3\tdead_frac\ttrace\talign1\talign3\tprecond_lambda\tprecond_threshold\tprecond_ratio",
(inputs | select(.record == "hessian")
 | [.step] + ((.eigenvalues + [null, null, null])[0:3])
   + [if .dead_units == null or .depth == 0 then null else (.dead_units | add) / (.depth * .width) end]
   + [.trace.mean, (.alignment // [])[0], (.alignment // [])[2],
      .precond.lambda_max, .precond.threshold, .precond.ratio]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
