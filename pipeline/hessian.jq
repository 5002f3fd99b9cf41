# hess-eig records -> TSV: step, the top eigenvalues (largest first).
"step\tlambda1\tlambda2\tlambda3",
(select(.record == "hessian") | [.step] + .eigenvalues[0:3] | map(tostring) | join("\t"))
