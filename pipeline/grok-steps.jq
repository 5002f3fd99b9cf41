# The first log points at which train and test accuracy reach 0.99, from a
# train-mlp log read with `jq -rs`.
map(select(.record == "metrics")) as $m
| "memorised (train acc >= 0.99) at step \($m | map(select(.train_acc >= 0.99)) | first | .step // "never"), "
  + "generalised (test acc >= 0.99) at step \($m | map(select(.test_acc >= 0.99)) | first | .step // "never")"
