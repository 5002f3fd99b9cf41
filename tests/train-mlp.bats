#!/usr/bin/env bats
# train-mlp: the log, checkpoints, determinism, resume, signals, divergence,
# and every bad option and bad input.

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d11.st
}

@test "train-mlp --help prints the synopsis to stdout and exits 0" {
	run train-mlp --help
	assert_success
	assert_line --index 0 --partial "usage: train-mlp [--data FILE]"
	assert_output --partial "3 diverged"
}

@test "train-mlp --version" {
	run train-mlp --version
	assert_success
	assert_output --regexp '^train-mlp [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "gen-modadd | train-mlp works as a pipe" {
	run bash -c 'gen-modadd -p 11 | train-mlp --steps 50 --width 16'
	assert_success
	assert_equal "$(jq -r .record <<<"${lines[0]}")" header
	assert_equal "$(jq -r '.record + " " + .status' <<<"${lines[-1]}")" "final ok"
	assert_equal "$(jq -r .steps <<<"${lines[-1]}")" 50
}

@test "train-mlp: depth 0 is a linear model; every analysis tool takes it" {
	train-mlp --data d11.st --depth 0 --steps 20 --log-every 20 --ckpt-dir ck > log
	assert_equal "$(head -1 log | jq -r .params)" $((22 * 11 + 11))
	c=ck/step-00000020.safetensors
	assert_equal "$(st_header "$c" | jq -c '[."layers.0.weight".shape, (keys | length)]')" '[[11,22],3]'
	assert_jq '.eigenvalues | map(num) | length == 2' <(hess-eig --data d11.st --top 2 "$c" | tail -1)
	assert_jq '.params == 253' <(gop-spectrum --data d11.st "$c" | tail -1)
	assert_jq '.chains_ok == 2' <(llc-estimate --data d11.st --draws 10 --chains 2 "$c" | tail -1)
}

@test "train-mlp: the header records the tool, config, data digest and parameter count" {
	train-mlp --data d11.st --steps 5 --width 16 --depth 3 > log
	h=$(head -1 log)
	assert_equal "$(jq -r .tool <<<"$h")" train-mlp
	assert_equal "$(jq -r .inputs.data <<<"$h")" "$(sha256sum d11.st | cut -d' ' -f1)"
	assert_equal "$(jq -c .config.model <<<"$h")" '{"p":11,"depth":3,"width":16,"encoding":"onehot","loss":"ce"}'
	assert_equal "$(jq -r .config.optim.name <<<"$h")" adamw
	assert_equal "$(jq -r .params <<<"$h")" $((22 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 11 + 11))
	assert_equal "$(jq -r .data.n_train <<<"$h")" 61   # round(0.5 * 121)
	assert_equal "$(jq -r .blas.threads <<<"$h")" 1
}

@test "every tool that uses BLAS records its kernel family (blas.core), and OPENBLAS_CORETYPE chooses it" {
	[ "$(uname -m)" = x86_64 ] || skip "the kernel family names checked here are x86-64's"
	train-mlp --data d11.st --steps 2 --log-every 2 --width 8 --ckpt-dir ck > log
	assert_regex "$(head -1 log | jq -r .blas.core)" '^[A-Za-z0-9]+$'
	c=ck/step-00000002.safetensors
	for cmd in "train-mlp --data d11.st --steps 1 --width 8" "hess-eig --data d11.st --top 1 $c" \
	    "gop-spectrum --data d11.st --top 1 $c" "llc-estimate --data d11.st --chains 1 --draws 2 $c"; do
		echo "# $cmd"
		# Prescott: the SSE3 kernels every x86-64 CPU runs
		assert_equal "$(OPENBLAS_CORETYPE=Prescott $cmd | head -1 | jq -r .blas.core)" Prescott
	done
}

@test "train-mlp: every metrics record has every field, with no update at step 0" {
	train-mlp --data d11.st --steps 20 --log-every 10 --width 16 > log
	run metrics log
	assert_equal "${#lines[@]}" 3
	assert_equal "$(jq -r '[.step, .lr, .update_norm] | @csv' <<<"${lines[0]}")" '0,,'
	for l in "${lines[@]}"; do
		assert_equal "$(jq -r 'keys | join(",")' <<<"$l")" "epoch,epoch_update_norm,example_grad_norm_max,example_grad_norm_mean,example_grad_sq_mean,grad_norm,layer_weight_norms,lr,noise_scale,record,softmax_collapse,step,test_acc,test_loss,train_acc,train_loss,update_norm,weight_norm"
	done
	assert_equal "$(jq -r '.layer_weight_norms | length' <<<"${lines[2]}")" 3
	assert_jq 'select(.record == "metrics" and .step == 20) | (.update_norm | num) > 0 and (.grad_norm | num) > 0 and (.train_acc | num) >= 0 and .train_acc <= 1' log
}

@test "train-mlp: default log points are logarithmic, from step 0 to the last" {
	train-mlp --data d11.st --steps 1000 --width 8 > log
	steps=$(jq -r 'select(.record == "metrics") | .step' log | tr '\n' ' ')
	assert_regex "$steps" '^0 1 2 3 .* 1000 $'
	n=$(jq -r 'select(.record == "metrics") | .step' log | wc -l)
	assert_between "$n" 101 201
	assert_jq -s '[.[] | select(.record == "metrics") | .step] | . == (sort | unique)' log
}

@test "train-mlp: --epochs with minibatches counts steps per epoch" {
	train-mlp --data d11.st --epochs 3 --batch 16 --width 8 > log
	assert_equal "$(tail -1 log | jq .steps)" 12   # 61 rows in batches of 16: 4 steps an epoch
	assert_equal "$(jq -c 'select(.record == "metrics" and .step == 12) | .epoch' log)" 3
}

@test "train-mlp --warmup: lr rises linearly over N steps; each plain SGD step is lr times the gradient" {
	train-mlp --data d11.st --steps 6 --warmup 4 --log-every 1 --optim sgd --wd 0 --lr 0.1 --width 8 > log
	# lr at step s is 0.1 * s / 4 up to step 4, then 0.1
	assert_jq -s 'map(select(.record == "metrics") | .lr) | .[0] == null and
	    ([.[1:][] | num] | . as $l | [0.025, 0.05, 0.075, 0.1, 0.1, 0.1] | to_entries | map(.value - $l[.key] | fabs < 1e-12) | all)' log
	# full batch, no momentum or decay: |update| = lr(s) |grad at the step before|, to float32 rounding
	assert_jq -s 'map(select(.record == "metrics")) | [range(1; length) as $i
	    | (.[$i].update_norm | num) / ((.[$i - 1].grad_norm | num) * .[$i].lr) - 1 | fabs < 1e-5] | all' log
}

@test "train-mlp: checkpoints at log points, named and shaped as PyTorch's" {
	train-mlp --data d11.st --steps 50 --log-every 25 --width 16 --ckpt-dir ck > log
	run ls ck
	assert_output "$(printf 'step-%08d.safetensors\n' 0 25 50)"
	h=$(st_header ck/step-00000025.safetensors)
	assert_equal "$(jq -r .__metadata__.step <<<"$h")" 25
	assert_equal "$(jq -r .__metadata__.format <<<"$h")" grokkit-ckpt-v1
	assert_equal "$(jq -r .__metadata__.data_sha256 <<<"$h")" "$(sha256sum d11.st | cut -d' ' -f1)"
	assert_equal "$(jq -c '.__metadata__.config | fromjson | .model' <<<"$h")" '{"p":11,"depth":2,"width":16,"encoding":"onehot","loss":"ce"}'
	assert_equal "$(jq -c 'del(.__metadata__) | to_entries | map(.key + ":" + (.value.shape | map(tostring) | join("x"))) | join(" ")' <<<"$h")" \
	  '"layers.0.weight:16x22 layers.0.bias:16 layers.1.weight:16x16 layers.1.bias:16 layers.2.weight:11x16 layers.2.bias:11"'
}

@test "train-mlp --ckpt-every writes every K steps and the last" {
	train-mlp --data d11.st --steps 25 --width 8 --ckpt-dir ck --ckpt-every 10 > log
	run ls ck
	assert_output "$(printf 'step-%08d.safetensors\n' 0 10 20 25)"
}

@test "train-mlp --ckpt-points: checkpoints at log-spaced steps" {
	train-mlp --data d11.st --steps 1000 --width 8 --ckpt-dir ck --ckpt-points 4 > log
	run ls ck
	assert_output "$(printf 'step-%08d.safetensors\n' 0 1 10 100 1000)"
}

@test "train-mlp: the same seed gives identical logs and parameters, another seed does not" {
	train-mlp --data d11.st --steps 40 --batch 16 --width 16 --seed 3 --out a.st > a.log
	train-mlp --data d11.st --steps 40 --batch 16 --width 16 --seed 3 --out b.st > b.log
	train-mlp --data d11.st --steps 40 --batch 16 --width 16 --seed 4 --out c.st > c.log
	cmp a.st b.st
	diff <(metrics a.log) <(metrics b.log)
	assert_files_differ a.st c.st
}

@test "train-mlp --init starts from given parameters" {
	train-mlp --data d11.st --steps 10 --width 16 --out a.st > /dev/null
	train-mlp --data d11.st --steps 0 --width 16 --init a.st > /dev/null 2>&1 || true
	train-mlp --data d11.st --steps 1 --log-every 1 --width 16 --init a.st --ckpt-dir ck > log
	cmp <(st_values a.st layers.0.weight f4) <(st_values ck/step-00000000.safetensors layers.0.weight f4)
	assert_equal "$(head -1 log | jq -r .inputs.init)" "$(sha256sum a.st | cut -d' ' -f1)"
}

@test "train-mlp: SIGTERM finishes the step, writes the state and exits 143" {
	gen-modadd -p 23 -o d23.st
	train-mlp --data d23.st --steps 1000000 --width 64 --state s.st > log &
	pid=$!
	sleep 1
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	assert_equal "$rc" 143
	assert_equal "$(tail -1 log | jq -r .status)" interrupted
	assert_equal "$(st_header s.st | jq -r .__metadata__.format)" grokkit-state-v1
	assert_equal "$(st_header s.st | jq -r .__metadata__.step)" "$(tail -1 log | jq -r .steps)"
}

@test "train-mlp: a run resumed from its state ends byte-identical to one never stopped" {
	gen-modadd -p 23 -o d23.st
	args=(--data d23.st --steps 6000 --batch 100 --width 128 --log-every 200 --optim sgd --lr 0.05 --momentum 0.9 --wd 0)
	train-mlp "${args[@]}" --out whole.st > whole.log
	train-mlp "${args[@]}" --out part.st --state s.st > first.log &
	pid=$!
	# interrupt once the run is well under way, whatever the machine's speed
	for _ in $(seq 600); do
		[ "$(jq -s 'map(select(.record == "metrics")) | length' first.log 2>/dev/null || echo 0)" -ge 4 ] && break
		sleep 0.05
	done
	kill -INT "$pid"
	rc=0
	wait "$pid" || rc=$?
	assert_equal "$rc" 130
	stopped=$(tail -1 first.log | jq .steps)
	assert_between "$stopped" 1 5999
	train-mlp "${args[@]}" --out part.st --state s.st --resume s.st > second.log
	assert_equal "$(head -1 second.log | jq .resumed_from_step)" "$stopped"
	cmp whole.st part.st
	diff <(metrics whole.log) <(metrics first.log; metrics second.log)
}

@test "train-mlp: a state from another configuration is refused" {
	train-mlp --data d11.st --steps 10 --width 16 --state s.st > /dev/null
	run train-mlp --data d11.st --steps 10 --width 16 --lr 0.01 --resume s.st
	assert_failure 1
	assert_line --index 0 "train-mlp: --resume: s.st: its configuration differs from this command's:"
	gen-modadd -p 11 --seed 9 -o other.st
	run train-mlp --data other.st --steps 10 --width 16 --resume s.st
	assert_failure 1
	assert_output --partial "train-mlp: --resume: s.st: trained on data"
	run train-mlp --data d11.st --steps 10 --width 16 --resume d11.st
	assert_failure 1
	assert_output "train-mlp: --resume: d11.st: not a training state (format 'modadd-v1', expected grokkit-state-v1)"
}

@test "train-mlp: a NaN loss ends the run with status diverged and exit 3" {
	run train-mlp --data d11.st --steps 200 --log-every 1 --optim sgd --lr 1e5 --width 16 --ckpt-dir ck
	assert_failure 3
	assert_output --partial "train-mlp: diverged at step"
	assert_equal "$(tail -1 <<<"$output" | jq -r .status)" diverged
	# every checkpoint kept holds finite numbers
	run ls ck
	assert_success
	refute_output ''
	for f in ck/*; do
		for t in layers.0.weight layers.0.bias layers.1.weight layers.1.bias layers.2.weight layers.2.bias; do
			run st_values "$f" "$t" f4
			assert_success
			refute_output ''
			refute_output --regexp '[nN][aA][nN]|[iI][nN][fF]'
		done
	done
}

@test "train-mlp: a full disk is a runtime error (exit 1)" {
	run bash -c 'train-mlp --data d11.st --steps 5 --width 8 > /dev/full'
	assert_failure 1
	assert_output "train-mlp: error writing standard output: No space left on device"
}

# Every bad option: its exact first line and exit status 2.
bad() {
	run train-mlp --data d11.st "$@"
	assert_failure 2
	assert_line --index 0 "$EXPECTED"
	assert_line --index 1 "Try 'train-mlp --help' for more information."
}

@test "train-mlp: depth -1" { EXPECTED="train-mlp: --depth: -1 is out of range (allowed: 0..16)" bad --depth -1; }
@test "train-mlp: depth 17" { EXPECTED="train-mlp: --depth: 17 is out of range (allowed: 0..16)" bad --depth 17; }
@test "train-mlp: width 0" { EXPECTED="train-mlp: --width: 0 is out of range (allowed: 1..8192)" bad --width 0; }
@test "train-mlp: unknown encoding" { EXPECTED="train-mlp: --encoding: unknown value 'binary' (allowed: onehot, int)" bad --encoding binary; }
@test "train-mlp: unknown loss" { EXPECTED="train-mlp: --loss: unknown value 'hinge' (allowed: ce, mse)" bad --loss hinge; }
@test "train-mlp: unknown optimiser" { EXPECTED="train-mlp: --optim: unknown value 'lion' (allowed: adam, adamw, sgd)" bad --optim lion; }
@test "train-mlp: lr 0" { EXPECTED="train-mlp: --lr: 0 is out of range (allowed: strictly between 0 and 1e+06)" bad --lr 0; }
@test "train-mlp: lr not a number" { EXPECTED="train-mlp: --lr: 'fast' is not a number" bad --lr fast; }
@test "train-mlp: beta1 of 1" { EXPECTED="train-mlp: --beta1: 1 is out of range (allowed: 0..1)" bad --beta1 1; }
@test "train-mlp: negative weight decay" { EXPECTED="train-mlp: --wd: -1 is out of range (allowed: 0..100)" bad --wd -1; }
@test "train-mlp: momentum with adam" { EXPECTED="train-mlp: --momentum and --nesterov apply to --optim sgd only" bad --momentum 0.9; }
@test "train-mlp: betas with sgd" { EXPECTED="train-mlp: --beta1, --beta2 and --eps apply to --optim adam and adamw only" bad --optim sgd --beta1 0.8; }
@test "train-mlp: nesterov without momentum" { EXPECTED="train-mlp: --nesterov needs --momentum greater than 0" bad --optim sgd --nesterov; }
@test "train-mlp: batch 0" { EXPECTED="train-mlp: --batch: 0 is out of range (allowed: 1..16777216)" bad --batch 0; }
@test "train-mlp: batch larger than the training set" {
	EXPECTED="train-mlp: --batch 62 exceeds the 61 training examples (use --batch full)" bad --batch 62
}
@test "train-mlp: steps 0" { EXPECTED="train-mlp: --steps: 0 is out of range (allowed: 1..1000000000)" bad --steps 0; }
@test "train-mlp: steps and epochs" { EXPECTED="train-mlp: --steps and --epochs exclude each other" bad --steps 5 --epochs 5; }
@test "train-mlp: log points 1" { EXPECTED="train-mlp: --log-points: 1 is out of range (allowed: 2..100000)" bad --log-points 1; }
@test "train-mlp: ckpt-every without a directory" { EXPECTED="train-mlp: --ckpt-every and --ckpt-points need --ckpt-dir DIR" bad --ckpt-every 5; }
@test "train-mlp: ckpt-every and ckpt-points" { EXPECTED="train-mlp: --ckpt-every and --ckpt-points exclude each other" bad --ckpt-dir c --ckpt-every 5 --ckpt-points 4; }
@test "train-mlp: init and resume" {
	EXPECTED="train-mlp: --init and --resume exclude each other (a state holds its parameters)" bad --init a --resume b
}
@test "train-mlp: threads 0" { EXPECTED="train-mlp: --threads: 0 is out of range (allowed: 1..256)" bad --threads 0; }
@test "train-mlp: a stray argument" {
	EXPECTED="train-mlp: unexpected argument 'd11.st' (the data set is read from --data FILE or standard input)" bad d11.st
}

# Bad inputs: exit 1 with a message naming the file.
@test "train-mlp: a missing data file" {
	run train-mlp --data nope.st
	assert_failure 1
	assert_output "train-mlp: nope.st: No such file or directory"
}

@test "train-mlp: a truncated data file" {
	head -c $(( $(stat -c %s d11.st) - 10 )) d11.st > t.st
	run train-mlp --data t.st
	assert_failure 1
	assert_output --regexp '^train-mlp: t.st: truncated data: [0-9]+ of [0-9]+ bytes$'
}

@test "train-mlp: a file that is not safetensors" {
	echo "x,y,label" > t.st
	run train-mlp --data t.st
	assert_failure 1
	assert_output --partial "train-mlp: t.st: header length"
}

@test "train-mlp: data of the wrong shape" {
	st_raw '{"__metadata__":{"p":"5"},"train.x":{"dtype":"I32","shape":[1,3],"data_offsets":[0,12]},"train.y":{"dtype":"I32","shape":[1],"data_offsets":[12,16]},"test.x":{"dtype":"I32","shape":[0,2],"data_offsets":[16,16]},"test.y":{"dtype":"I32","shape":[0],"data_offsets":[16,16]}}' 16 > t.st
	run train-mlp --data t.st
	assert_failure 1
	assert_output "train-mlp: t.st: tensor 'train.x' has shape [1, 3], expected [-1, 2] (-1: any)"
}

@test "train-mlp: labels outside 0..p-1" {
	st_raw '{"__metadata__":{"p":"2"},"train.x":{"dtype":"I32","shape":[1,2],"data_offsets":[0,8]},"train.y":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},"test.x":{"dtype":"I32","shape":[0,2],"data_offsets":[12,12]},"test.y":{"dtype":"I32","shape":[0],"data_offsets":[12,12]}}' 12 > t.st
	printf '\005' | dd of=t.st bs=1 seek=$(( $(stat -c %s t.st) - 4 )) conv=notrunc status=none
	run train-mlp --data t.st
	assert_failure 1
	assert_output "train-mlp: t.st: train row 0 is (0, 0) -> 5, outside 0..1 for p = 2"
	# the first label out: p itself
	printf '\002' | dd of=t.st bs=1 seek=$(( $(stat -c %s t.st) - 4 )) conv=notrunc status=none
	run train-mlp --data t.st
	assert_failure 1
	assert_output "train-mlp: t.st: train row 0 is (0, 0) -> 2, outside 0..1 for p = 2"
}

@test "train-mlp: data without p" {
	st_raw '{"train.x":{"dtype":"I32","shape":[0,2],"data_offsets":[0,0]}}' 0 > t.st
	run train-mlp --data t.st
	assert_failure 1
	assert_output "train-mlp: t.st: no 'p' in the metadata (not a gen-modadd data set?)"
}

@test "train-mlp --init with parameters of another shape" {
	train-mlp --data d11.st --steps 2 --width 16 --depth 3 --out deep.st > /dev/null
	run train-mlp --data d11.st --steps 2 --width 16 --init deep.st
	assert_failure 1
	assert_output "train-mlp: --init: deep.st: has 'layers.3.weight', so more layers than depth 2"
	run train-mlp --data d11.st --steps 2 --width 8 --depth 3 --init deep.st
	assert_failure 1
	assert_output "train-mlp: --init: deep.st: tensor 'layers.0.weight' has shape [16, 22], expected [8, 22] (-1: any) (model: p=11 depth=3 width=8 onehot)"
}

@test "train-mlp --embed: the embedding MLP (mlp-embed), with net.py's tensor names; every analysis tool takes it" {
	train-mlp --data d11.st --embed 8 --depth 1 --width 16 --steps 40 --log-every 20 --ckpt-dir ck > log
	assert_equal "$(head -1 log | jq -c '[.family, .config.model.embed, .params]')" \
	    "[\"mlp-embed\",8,$((13 * 8 + 32 * 16 + 16 + 16 * 13 + 13))]"
	c=ck/step-00000040.safetensors
	assert_equal "$(st_header "$c" | jq -c '[."net.0.weight".shape, ."net.2.weight".shape, ."net.4.bias".shape, (keys | length)]')" \
	    '[[13,8],[16,32],[13],6]'
	assert_equal "$(st_header "$c" | jq -r '.__metadata__ | [.family, .embed] | join(" ")')" "mlp-embed 8"
	assert_jq '.spectral_norms | map(num) | length == 2' <(sed -n 2p log)
	assert_jq '.eigenvalues | map(num) | length == 2' <(hess-eig --data d11.st --top 2 "$c" | tail -1)
	assert_jq '.eigenvalues | map(num) | length == 1' <(hess-eig --data d11.st --top 1 --matrix ggn "$c" | tail -1)
	assert_jq '[.blocks[].group] == ["net.0", "net.2", "net.4"]' <(hess-eig --data d11.st --top 1 --blocks "$c" | tail -1)
	assert_jq '.params == 853' <(gop-spectrum --data d11.st "$c" | tail -1)
	assert_jq '.chains_ok == 2' <(llc-estimate --data d11.st --draws 10 --chains 2 "$c" | tail -1)
	assert_jq '.neurons.count == 16 and (.embedding.x.freq_frac | length == 5)' \
	    <(progress-measures --data d11.st "$c" | tail -1)
	assert_jq '.family == "mlp-embed" and .depth == 1' <(summarize log | tail -1)
}

@test "train-mlp --embed: out of range, with --encoding int or --loss mse: usage errors" {
	run train-mlp --data d11.st --embed 0 --steps 1
	assert_failure 2
	assert_output --partial "train-mlp: --embed: 0 is out of range (allowed: 1..4096)"
	run train-mlp --data d11.st --embed 4097 --steps 1
	assert_failure 2
	assert_output --partial "--embed: 4097 is out of range"
	run train-mlp --data d11.st --embed 8 --encoding int --steps 1
	assert_failure 2
	assert_output --partial "train-mlp: --embed looks the tokens up in a table, so it takes no --encoding int"
	run train-mlp --data d11.st --embed 8 --loss mse --steps 1
	assert_failure 2
	assert_output --partial "train-mlp: --embed trains with cross-entropy only, not --loss mse"
}
