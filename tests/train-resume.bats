#!/usr/bin/env bats
# train-mlp --resume: extending a run to more steps or epochs, and what is
# refused (anything that would change the trajectory).

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 23 -o d.st
	train-mlp --data d.st --steps 10 --width 16 --out w.st > /dev/null
}

# metrics STEP0 LOG: the metrics records after step STEP0, without the wall-clock field.
metrics_after() {
	jq -c --argjson s "$1" 'select(.record == "metrics" and .step > $s) | del(.elapsed)' "$2"
}

@test "train-mlp --resume with a larger --steps equals a straight run of the new length, byte for byte" {
	args=(--data d.st --batch 50 --width 16 --log-every 20)
	train-mlp "${args[@]}" --steps 60 --init w.st --state s.st > first.log
	run train-mlp "${args[@]}" --steps 100 --resume s.st --state s.st --out extended.st
	assert_success
	echo "$output" > second.log
	train-mlp "${args[@]}" --steps 100 --init w.st --out straight.st > straight.log
	cmp extended.st straight.st
	assert_equal "$(head -1 second.log | jq -c '[.resumed_from_step, .extended_from_steps]')" "[60,60]"
	# the log points after the resume point are the 100-step run's, with its numbers
	assert_equal "$(metrics_after 60 second.log | jq -s -c 'map(.step)')" "[80,100]"
	assert_equal "$(metrics_after 60 second.log)" "$(metrics_after 60 straight.log)"
	assert_equal "$(tail -1 second.log | jq -c '[.status, .steps]')" '["ok",100]'
}

@test "train-mlp --resume: log-spaced log and checkpoint points after the resume point follow the new length" {
	args=(--data d.st --width 16 --log-points 12 --ckpt-points 5)
	train-mlp "${args[@]}" --steps 40 --state s.st --ckpt-dir a > /dev/null
	train-mlp "${args[@]}" --steps 300 --resume s.st --ckpt-dir a > second.log
	train-mlp "${args[@]}" --steps 300 --ckpt-dir b > straight.log
	assert_equal "$(metrics_after 40 second.log)" "$(metrics_after 40 straight.log)"
	n=0
	for f in b/*; do
		step=$(basename "$f" .safetensors)
		step=$((10#${step#step-}))
		if [ "$step" -gt 40 ]; then
			cmp "$f" "a/$(basename "$f")"
			n=$((n + 1))
		fi
	done
	# 300 steps, 5 log-spaced checkpoint points: 1, 4, 17, 73, 300, with 0; past 40, two
	assert_equal "$n" 2
}

@test "train-mlp --resume with a larger --epochs extends the run too" {
	args=(--data d.st --batch 64 --width 16 --log-every 4)
	train-mlp "${args[@]}" --epochs 2 --state s.st > /dev/null
	run train-mlp "${args[@]}" --epochs 5 --resume s.st --out extended.st
	assert_success
	train-mlp "${args[@]}" --epochs 5 --out straight.st > /dev/null
	cmp extended.st straight.st
}

@test "train-mlp --resume refuses a changed learning rate, showing the difference" {
	train-mlp --data d.st --steps 30 --width 16 --state s.st > /dev/null
	run train-mlp --data d.st --steps 60 --width 16 --lr 0.01 --resume s.st
	assert_failure 1
	assert_line --index 0 "train-mlp: --resume: s.st: its configuration differs from this command's:"
	assert_line --index 1 "  optim.lr: 0.001 in the state, 0.01 in this command"
	assert_equal "${#lines[@]}" 2
}

@test "train-mlp --resume refuses a changed optimiser and a changed batch" {
	train-mlp --data d.st --steps 30 --width 16 --state s.st > /dev/null
	run train-mlp --data d.st --steps 60 --width 16 --optim adam --resume s.st
	assert_failure 1
	assert_line --index 1 '  optim.name: "adamw" in the state, "adam" in this command'
	run train-mlp --data d.st --steps 60 --width 16 --batch 32 --resume s.st
	assert_failure 1
	assert_line --partial '  batch: "full" in the state, 32 in this command'
}

@test "train-mlp --resume refuses other data, and --init beside it" {
	train-mlp --data d.st --steps 30 --width 16 --init w.st --state s.st > /dev/null
	gen-modadd -p 23 --seed 5 -o other.st
	run train-mlp --data other.st --steps 60 --width 16 --resume s.st
	assert_failure 1
	assert_output --partial "train-mlp: --resume: s.st: trained on data"
	# --init is the state's own: naming one is a usage error, not a silent switch
	run train-mlp --data d.st --steps 60 --width 16 --init w.st --resume s.st
	assert_failure 2
}

@test "train-mlp --resume refuses fewer steps than the state has taken" {
	train-mlp --data d.st --steps 30 --width 16 --state s.st > /dev/null
	run train-mlp --data d.st --steps 20 --width 16 --resume s.st
	assert_failure 1
	assert_output "train-mlp: --resume: s.st: the state is at step 30, past this command's 20 steps"
}
