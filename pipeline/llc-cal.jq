# llc-estimate records of the calibration grid -> TSV rows: the depth ($depth),
# n beta, the margin and the step size epsilon auto chose from lambda_max
# (times the column scale), the estimate, flagged (1: not
# healthy) and why, whether it is the study's own point ($chosen), and
# the smallest chain's same-minibatch MALA acceptance and R-hat.
"depth\tnbeta\tmargin\tepsilon\tlambda_max\tllc\tllc_std\tflagged\tflags\tchosen\tscale\tmala_min\trhat",
(inputs | select(.record == "llc")
 | [($depth | tonumber), .settings.nbeta, .settings.epsilon_auto.margin, .settings.epsilon,
    .settings.epsilon_auto.lambda_max, .llc_mean, .llc_std, (if .healthy then 0 else 1 end),
    (if .flags == [] then "-" else .flags | join(",") end), ($chosen | tonumber),
    .settings.epsilon_auto.scale, ([.chains[].mala_batch_mean] | min), .rhat]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
