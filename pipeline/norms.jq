# train-mlp log -> TSV of the per-example gradient statistics at each log
# point (read with `jq -nr -f`): step, the full-batch gradient norm |gbar|,
# the mean and largest per-example norm |g_i|, the mean of |g_i|^2 (the
# GOP's trace) and the noise scale tr(C)/|gbar|^2 (C the centred GOP).
# NaN where a family has no per-example norms (the fields are absent).
"step\tgrad_norm\texample_grad_norm_mean\texample_grad_norm_max\texample_grad_sq_mean\tnoise_scale",
(inputs | select(.record == "metrics")
 | [.step, .grad_norm, .example_grad_norm_mean, .example_grad_norm_max, .example_grad_sq_mean, .noise_scale]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
