# llc-estimate records of the calibration grid -> TSV rows: the depth ($depth),
# n beta, the margin and the step size epsilon auto chose from lambda_max,
# the estimate, flagged (1: not healthy) and why, and whether it is the
# study's own point ($chosen).
"depth\tnbeta\tmargin\tepsilon\tlambda_max\tllc\tllc_std\tflagged\tflags\tchosen",
(inputs | select(.record == "llc")
 | [($depth | tonumber), .settings.nbeta, .settings.epsilon_auto.margin, .settings.epsilon,
    .settings.epsilon_auto.lambda_max, .llc_mean, .llc_std, (if .healthy then 0 else 1 end),
    (if .flags == [] then "-" else .flags | join(",") end), ($chosen | tonumber)]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
