# llc-estimate records -> TSV: step, LLC mean and standard deviation over
# chains, the chains flagged (left the basin) and the step size; $e, when
# not empty, replaces the step column's header with "epsilon" rows.
(if $e == "" then "step" else "epsilon" end) + "\tllc\tllc_std\tflagged\tchains\tinit_loss",
(inputs | select(.record == "llc")
 | [(if $e == "" then .step else .settings.epsilon end), .llc_mean, .llc_std, .chains_flagged,
    .settings.chains, .init_loss]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
