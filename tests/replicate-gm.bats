#!/usr/bin/env bats
# make replicate-gm: its commands (make -n) against enerrio/grokking-mlp's
# configuration (config.yaml, data.py, net.py, train.py), its split sizes
# against torch's random_split and data.py's label mask, its stamps, and
# the CLUSTER=slurm prefix.

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	O=$(cd "$GROK_BIN/.." && pwd)
	ARGS=(-C "$ROOT" O="$O" GM_R="$BATS_TEST_TMPDIR/r" GM_PL="$BATS_TEST_TMPDIR/pl")
}

# make -n's output with continued lines joined.
joined() {
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' <<<"$1"
}

# The train-mlp command of one experiment that make -n prints.
train_cmd() {
	joined "$2" | grep -E "bin/train-mlp .*--tag gm-$1( |$)"
}

@test "replicate-gm: the source's model, optimiser and batch in every training command" {
	run make -n replicate-gm "${ARGS[@]}"
	assert_success
	for e in exp1 exp2 exp3; do
		cmd=$(train_cmd $e "$output")
		assert_equal "$(wc -l <<<"$cmd")" 1
		# net.py: Embedding(p + 2, 128), Linear(4 * 128, 128), ReLU, Linear(128, p + 2)
		assert_regex "$cmd" ' --embed 128 --depth 1 --width 128 '
		# train.py: optim.AdamW(lr=1e-3, betas=(0.9, 0.98)), torch's defaults eps 1e-8, weight_decay 0.01
		assert_regex "$cmd" ' --optim adamw --lr 1e-3 --beta1 0\.9 --beta2 0\.98 --eps 1e-8 --wd 0\.01 '
		# config.yaml: batch_size 512; random_seeds' first, 21
		assert_regex "$cmd" ' --batch 512 '
		assert_regex "$cmd" ' --seed 21 '
	done
	# README: exp1 100k optimisation steps; exp2 and exp3 20k epochs (GM_EPOCHS shortens them)
	assert_regex "$(train_cmd exp1 "$output")" ' --steps 100000 '
	run make -n replicate-gm "${ARGS[@]}" GM_EPOCHS=20000
	assert_regex "$(train_cmd exp2 "$output")" ' --epochs 20000 '
	assert_regex "$(train_cmd exp3 "$output")" ' --epochs 20000 '
}

@test "replicate-gm: the splits have the sizes torch's random_split and data.py's mask give" {
	run make -n replicate-gm "${ARGS[@]}"
	assert_success
	rnd=$(grep -E 'bin/gen-modadd .*random-s21' <<<"$output")
	lab=$(grep -E 'bin/gen-modadd .*label-s21' <<<"$output")
	# run the very commands make would, into this directory
	eval "$(sed -E 's/-o [^ ]+$/-o r.st/' <<<"$rnd")"
	eval "$(sed -E 's/-o [^ ]+$/-o l.st/' <<<"$lab")"
	n=$((97 * 97))
	# random_split(data, [0.8, 0.2]): floor of each fraction, the remainder handed out from the first
	f=$(awk -v n=$n 'BEGIN { a = int(0.8 * n); b = int(0.2 * n); print a + (n - a - b > 0) }')
	assert_equal "$(st_header r.st | jq '."train.x".shape[0]')" "$f"
	assert_equal "$(st_header r.st | jq '."test.x".shape[0]')" "$((n - f))"
	# data.py: mask = y < 20, the pairs labelled 0..19 held out: 20 labels x 97 pairs each
	assert_equal "$(st_header l.st | jq '."test.x".shape[0]')" "$((20 * 97))"
	assert_equal "$(st_header l.st | jq -r '.__metadata__.holdout')" "$(seq -s, 0 19)"
}

@test "replicate-gm: stamps hold the parameters; CLUSTER=slurm runs every tool through srun" {
	run make "${ARGS[@]}" "$BATS_TEST_TMPDIR/r/.stamps/train-exp2" GM_EPOCHS=7
	assert_success
	assert_file_contains r/.stamps/train-exp2 ' --epochs 7 '
	before=$(stat -c %Y r/.stamps/train-exp2)
	sleep 1
	run make "${ARGS[@]}" "$BATS_TEST_TMPDIR/r/.stamps/train-exp2" GM_EPOCHS=7
	assert_equal "$(stat -c %Y r/.stamps/train-exp2)" "$before"
	run make "${ARGS[@]}" "$BATS_TEST_TMPDIR/r/.stamps/train-exp2" GM_EPOCHS=8
	assert_file_contains r/.stamps/train-exp2 ' --epochs 8 '
	run make -n replicate-gm "${ARGS[@]}" CLUSTER=slurm
	assert_success
	cmds=$(joined "$output")
	tools=$(grep -cE 'bin/(gen-modadd|train-mlp|hess-eig|llc-estimate) ' <<<"$cmds")
	assert_equal "$(grep -cE '(^|\| )srun [^|]*bin/(gen-modadd|train-mlp|hess-eig|llc-estimate) ' <<<"$cmds")" "$tools"
	# two data sets (exp1 and exp2 share the random one), three trainings, three each of hess-eig and llc-estimate
	assert_equal "$tools" 11
}
