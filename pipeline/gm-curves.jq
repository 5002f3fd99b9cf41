# replicate-gm: train-mlp log (mlp-embed) -> TSV per log point: epoch, the
# losses and accuracies (accuracy in %, as the source plots it), the
# read-out layer's spectral norm (the last of spectral_norms), the update
# size of the step before the log point, and the last whole epoch's
# ||theta_end - theta_start|| (epoch_update_norm; NaN before the first
# epoch).  Read with `jq -nr -f`.
"epoch\tstep\ttrain_loss\ttest_loss\ttrain_acc\ttest_acc\tlast_spectral_norm\tupdate_norm\tepoch_update_norm",
(inputs | select(.record == "metrics")
 | [.epoch, .step, .train_loss, .test_loss,
    (if .train_acc == null then null else .train_acc * 100 end),
    (if .test_acc == null then null else .test_acc * 100 end),
    (.spectral_norms // [] | last), .update_norm, .epoch_update_norm]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
