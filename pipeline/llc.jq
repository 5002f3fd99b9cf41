# llc-estimate records -> TSV: step, LLC mean and standard deviation over
# chains, flagged (1 when the record is not healthy by llc-estimate's
# health rule; for an older record without one, when a chain left the
# basin), the chains, L(w*), the rule's reasons (comma-separated, "-" for
# none), the step size, n beta and R-hat; $e, when not empty, replaces the
# step column's header with "epsilon" rows.
(if $e == "" then "step" else "epsilon" end) + "\tllc\tllc_std\tflagged\tchains\tinit_loss\tflags\tepsilon\tnbeta\trhat",
(inputs | select(.record == "llc")
 | [(if $e == "" then .step else .settings.epsilon end), .llc_mean, .llc_std,
    (if .healthy == null then (if .chains_flagged > 0 then 1 else 0 end) elif .healthy then 0 else 1 end),
    .settings.chains, .init_loss, (if (.flags // []) == [] then "-" else .flags | join(",") end),
    .settings.epsilon, .settings.nbeta, .rhat]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
