#!/usr/bin/env bats
# pipeline/phases.jq (Nanda et al.'s phases located in a training log) on
# logs whose answers are known by construction, and tests/numbers/
# nanda-sweep.py on a file built like the paper's saved loss curves.

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
}

# A p = 5 log, a log point every 100 steps to 1,000: training accuracy 0.99
# from step 200, test loss rising to 9 at step 300 then halving each point
# (ln 5 = 1.61 is first undercut at step 600 (1.125), 1e-3 never, or at
# step 900 with FLOOR), test accuracy 0.5 from step 700.
write_log() {
	jq -nc --argjson floor "${1:-0}" '
	    {record: "header", seed: 7, config: {model: {p: 5}, tag: "t"}},
	    (range(0; 11) | (. * 100) as $s
	     | {record: "metrics", step: $s,
	        train_acc: (if $s >= 200 then 0.995 else 0.5 end),
	        test_acc: (if $s >= 700 then 0.6 else 0.1 end),
	        test_loss: (if $s <= 300 then 3 * ($s / 100)
	                    elif $floor > 0 and $s >= 900 then 1e-4
	                    else 9 / pow(2; ($s - 300) / 100) end)}),
	    {record: "final", step: 1000}' > log.jsonl
}

@test "phases.jq: each column at the log point its definition names" {
	write_log
	run jq -rs --slurpfile pm /dev/null --arg header 1 -f "$ROOT/pipeline/phases.jq" log.jsonl
	assert_success
	assert_line --index 0 "$(printf 'tag\tseed\tmemorised\ttest_peak\ttest_peak_loss\tbelow_chance\ttest_half\ttest_1e-3\texcl_min\texcl_max\tlast_step')"
	assert_line --index 1 "$(printf 't\t7\t200\t300\t9\t600\t700\tnever\t-\t-\t1000')"
	write_log 1
	run jq -rs --slurpfile pm /dev/null -f "$ROOT/pipeline/phases.jq" log.jsonl
	assert_output "$(printf 't\t7\t200\t300\t9\t600\t700\t900\t-\t-\t1000')"
}

@test "phases.jq: excluded loss's minimum up to the test peak, and its maximum, from the progress records" {
	write_log
	jq -nc '{record: "header"},
	    ([[0, 2], [100, 0.5], [200, 0.1], [300, 0.3], [400, 0.05], [500, 7], [600, 3]][]
	     | {record: "progress", step: .[0], excluded_loss: .[1]})' > pm.jsonl
	run jq -rs --slurpfile pm pm.jsonl -f "$ROOT/pipeline/phases.jq" log.jsonl
	assert_success
	# 0.05 at step 400 is lower but after the test peak (300): not memorisation's end
	assert_output "$(printf 't\t7\t200\t300\t9\t600\t700\tnever\t200\t500\t1000')"
}

@test "phases.jq: a log without accuracies says '-', not 'never'" {
	write_log
	jq -c 'del(.train_acc, .test_acc)' log.jsonl > bare.jsonl
	run jq -rs --slurpfile pm /dev/null -f "$ROOT/pipeline/phases.jq" bare.jsonl
	assert_success
	assert_output "$(printf 't\t7\t-\t300\t9\t600\t-\tnever\t-\t-\t1000')"
}

# A file laid out as the paper's saved_runs/mod_addition_frac_train_sweep.pth:
# a zip whose archive/data.pkl holds [fracs, [train_0, test_0, train_1, ...]].
write_sweep() {
	python3 - "$1" <<-'EOF'
	import pickle, sys, zipfile
	train = [5.0 / (k + 1) for k in range(250)]
	test = [float(k) for k in range(250)]
	obj = [[0.5, 0.3], [[1.0] * 10, [2.0] * 10, train, test]]
	if sys.argv[1] == "class":
	    obj = [[0.3], [zipfile.ZipFile, []]]
	with zipfile.ZipFile("sweep.pth", "w") as z:
	    z.writestr("archive/data.pkl", pickle.dumps(obj))
	EOF
}

@test "nanda-sweep.py: the run of the fraction asked, every EVERY steps and the last, as a log phases.jq reads" {
	write_sweep plain
	run "$ROOT/tests/numbers/nanda-sweep.py" sweep.pth 0.3 100
	assert_success
	assert_equal "$(jq -sc 'map(select(.record == "metrics") | .step)' <<< "$output")" "[0,100,200,249]"
	assert_equal "$(jq -sc 'map(select(.step == 100) | [.train_loss, .test_loss]) | .[0]' <<< "$output")" "[$(python3 -c 'print(5.0 / 101)'),100]"
	assert_equal "$(jq -r 'select(.record == "header") | .config.tag' <<< "$output")" "paper-frac0.3"
	run bash -c "'$ROOT/tests/numbers/nanda-sweep.py' sweep.pth 0.3 1 | jq -rs --slurpfile pm /dev/null -f '$ROOT/pipeline/phases.jq'"
	assert_success
	# test loss rises to the last step: the peak is there, nothing after it
	assert_output "$(printf 'paper-frac0.3\t-\t-\t249\t249\tnever\t-\tnever\t-\t-\t249')"
}

@test "nanda-sweep.py: a missing fraction, a pickle naming a class, bad arguments" {
	write_sweep plain
	run "$ROOT/tests/numbers/nanda-sweep.py" sweep.pth 0.4
	assert_failure 1
	assert_output --partial "no run at fraction 0.4"
	run "$ROOT/tests/numbers/nanda-sweep.py" sweep.pth 0.3 0
	assert_failure 2
	run "$ROOT/tests/numbers/nanda-sweep.py" sweep.pth x
	assert_failure 2
	run "$ROOT/tests/numbers/nanda-sweep.py"
	assert_failure 2
	assert_output --partial "usage:"
	write_sweep class
	run "$ROOT/tests/numbers/nanda-sweep.py" sweep.pth
	assert_failure 1
	assert_output --partial "not plain data"
	run "$ROOT/tests/numbers/nanda-sweep.py" "$ROOT/README.md"
	assert_failure 1
	assert_output --partial "nanda-sweep.py: "
}

@test "nanda-split.py: the paper's shuffled split, in gen-modadd's layout, read by train-transformer" {
	run "$ROOT/tests/numbers/nanda-split.py" d.st 13 0.3 5
	assert_success
	# int(0.3 * 169) = 50 training pairs, the first of random.shuffle's order
	run train-transformer --data d.st --steps 1 --quiet
	assert_success
	assert_equal "$(jq -r 'select(.record == "header") | [.data.n_train, .data.n_test] | @tsv' <<< "$output")" "$(printf '50\t119')"
	n=$(od -An -t u8 -N 8 d.st | tr -d ' ')
	assert_equal "$(od -An -v -t d4 -N 400 -j $((8 + n)) d.st | xargs)" \
	    "$(python3 -c 'import random; q = [(i, j, 13) for i in range(13) for j in range(13)]; random.seed(5); random.shuffle(q); print(*[v for r in q[:50] for v in r[:2]])')"
	# train.y follows train.x: (x + y) mod 13
	assert_equal "$(od -An -v -t d4 -N 200 -j $((8 + n + 400)) d.st | xargs)" \
	    "$(od -An -v -t d4 -N 400 -j $((8 + n)) d.st | xargs -n 2 | awk '{ printf "%s%d", (NR > 1 ? " " : ""), ($1 + $2) % 13 }')"
	run "$ROOT/tests/numbers/nanda-split.py" d.st 13 1.5
	assert_failure 2
	run "$ROOT/tests/numbers/nanda-split.py" /nonexistent/d.st
	assert_failure 1
}
