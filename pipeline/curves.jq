# train-mlp log -> TSV: step, train_loss, test_loss, train_acc, test_acc,
# grad_norm, weight_norm, softmax_collapse (read with `jq -nr -f`: the header once).
"step\ttrain_loss\ttest_loss\ttrain_acc\ttest_acc\tgrad_norm\tweight_norm\tsoftmax_collapse",
(inputs | select(.record == "metrics")
 | [.step, .train_loss, .test_loss, .train_acc, .test_acc, .grad_norm, .weight_norm, .softmax_collapse]
 | map(if . == null then "NaN" else tostring end) | join("\t"))
