# A run's embedding spectrum (the x embedding's norm fraction per frequency
# k = 1..p/2, from progress-measures) at the first checkpoint, the one
# nearest memorisation (train accuracy first >= 0.99 in the log, as
# summarize counts it; left out when never reached) and the last, as TSV
# columns headed "<moment> (step N)", or "memorisation at step N
# (checkpoint M)" where the nearest checkpoint is not the step itself.  Read with
# `jq -nr --slurpfile log LOG -f pipeline/fourier.jq progress.jsonl`.
([inputs | select(.record == "progress" and .embedding != null)] | sort_by(.step)) as $r
| ($log | map(select(.record == "metrics" and .train_acc >= 0.99)) | first | .step) as $mem
| if ($r | length) == 0 then error("no progress records with an embedding spectrum") else . end
| ([["first", $r[0]]]
   + (if $mem == null then [] else [["memorisation", ($r | min_by((.step - $mem) | fabs))]] end)
   + [["last", $r[-1]]]) as $cols
| (["k"] + ($cols | map(if .[0] == "memorisation" and .[1].step != $mem
                          then "memorisation at step \($mem) (checkpoint \(.[1].step))"
                          else "\(.[0]) (step \(.[1].step))" end)) | join("\t")),
  (range(0; $r[0].embedding.x.freq_frac | length) as $i
   | [$i + 1] + ($cols | map(.[1].embedding.x.freq_frac[$i])) | map(tostring) | join("\t"))
