# Nanda et al.'s three phases of grokking (memorisation, circuit formation,
# clean-up), located in one training log read with `jq -rs`, with the
# progress-measures records of its checkpoints in $pm (`--slurpfile pm
# FILE`; /dev/null when there are none).  One TSV row ("never" where the
# run never got there, "-" where the log or $pm lacks the measure; the
# header line first with `--arg header 1`):
#
#   memorised       first log point with training accuracy >= 0.99
#   test_peak       the log point of the highest test loss (and the loss):
#                   memorisation ends where test loss stops rising
#   below_chance    first log point after the peak with test loss < ln p:
#                   the test loss's fall has begun, circuit formation is
#                   over and clean-up under way
#   test_half       first log point with test accuracy >= 0.5
#   test_1e-3       first log point after the peak with test loss < 1e-3:
#                   clean-up done (test accuracy is 1; what follows is
#                   the slow tail)
#   excl_min        checkpoint of the lowest excluded loss up to the test
#                   peak (memorisation ends where it turns up), from $pm
#   excl_max        checkpoint of the highest excluded loss (clean-up
#                   removes the memorising part after it), from $pm
#
# The paper gives its phases as what the measures do (memorisation: train
# and excluded loss fall; circuit formation: excluded loss rises,
# restricted loss falls, test loss stays high; clean-up: test loss and the
# weights' norm fall sharply), not as thresholds: these are the thresholds
# this repository uses, and the same thresholds applied to the loss curve
# the paper's own code saved (tests/numbers/nanda-sweep.py) put that run's
# test-loss peak at step 1,420, the paper's 1.4k.
def first(f): (map(select(f)) | first | .step) // "never";
def measured(k; f): if map(select(.[k] != null)) == [] then "-" else f end;
(map(select(.record == "header")) | first | .config.model.p) as $p
| map(select(.record == "metrics" and .test_loss != null)) as $m
| ($m | max_by(.test_loss)) as $peak
| ($m | map(select(.step > $peak.step))) as $after
| ($pm | map(select(.record == "progress"))) as $c
| ($c | map(select(.step <= $peak.step))) as $early
| (if $ARGS.named.header then "tag\tseed\tmemorised\ttest_peak\ttest_peak_loss\tbelow_chance\ttest_half\ttest_1e-3\texcl_min\texcl_max\tlast_step" else empty end),
  ([(map(select(.record == "header")) | first | .config.tag // "-"),
    (map(select(.record == "header")) | first | .seed // "-"),
    ($m | measured("train_acc"; first(.train_acc >= 0.99))),
    $peak.step, ($peak.test_loss * 1000 | round / 1000),
    ($after | first(.test_loss < ($p | log))),
    ($m | measured("test_acc"; first(.test_acc >= 0.5))),
    ($after | first(.test_loss < 1e-3)),
    (if $early == [] then "-" else ($early | min_by(.excluded_loss) | .step) end),
    (if $c == [] then "-" else ($c | max_by(.excluded_loss) | .step) end),
    ($m | last | .step)]
   | map(tostring) | join("\t"))
