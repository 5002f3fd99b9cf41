#!/usr/bin/env bats
# The replication targets (pipeline/replicate-ap.mk, replicate-g9.mk): the
# commands `make -n` would run, checked against the source studies'
# configurations; and each target end to end at a tiny size in a
# temporary directory (files, the log's per-example statistics against
# gop-spectrum, a second make that does nothing).

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	O=$(cd "$GROK_BIN/.." && pwd)
	SAN=
	[[ $O == */asan ]] && SAN=address,undefined
	ARGS=(-C "$ROOT" O="$O" SAN="$SAN" V=1 APR="$BATS_TEST_TMPDIR/ap" APPL="$BATS_TEST_TMPDIR/apl"
	      G9R="$BATS_TEST_TMPDIR/g9" G9PL="$BATS_TEST_TMPDIR/g9pl")
}

# The train-mlp command lines a make -n printed for one tag, one per line.
trainings() {
	grep -E "bin/train-mlp .*--tag $1( |$)" <<<"$output"
}

# The 01-grokking-hessian study's train.py: p = 97, depths [1..7], MLP(hidden 128), Adam(lr=1e-3),
# F.cross_entropy on the full batch of 10% of the pairs, 10,000 steps, losses every 100 steps and
# compute_top_hessian_eigval and the gradient norm every 1,000; three seeds here.
@test "replicate-ap: make -n runs train.py's configuration, 7 depths x 3 seeds, and the grok recipe beside it" {
	run make -n replicate-ap "${ARGS[@]}"
	assert_success
	assert_line --partial "bin/gen-modadd -p 97 --frac 0.1 --seed 0 -o $BATS_TEST_TMPDIR/ap/literal/data.safetensors"
	assert_line --partial "bin/gen-modadd -p 97 --frac 0.3 --seed 0 -o $BATS_TEST_TMPDIR/ap/grok/data.safetensors"
	lit=$(trainings ap-literal)
	assert_equal "$(wc -l <<<"$lit")" 21
	for flags in "--steps 10000 " "--log-every 100 " "--ckpt-every 1000 " "--width 128 " "--encoding int " \
	    "--loss ce " "--optim adam " "--lr 1e-3 " "--wd 0 " "--batch full" "--ckpt-optim "; do
		assert_equal "$(grep -c -e "$flags" <<<"$lit")" 21
	done
	for d in 1 2 3 4 5 6 7; do
		for s in 0 1 2; do
			assert_equal "$(grep -c -e "--depth $d --seed $s .*/literal/d$d-s$s/ckpt" <<<"$lit")" 1
		done
	done
	grok=$(trainings ap-grok)
	assert_equal "$(wc -l <<<"$grok")" 21
	for flags in "--steps 10000 " "--encoding onehot " "--optim adamw " "--wd 2 " "--batch full" "--ckpt-optim "; do
		assert_equal "$(grep -c -e "$flags" <<<"$grok")" 21
	done
	# the top eigenvalue of every run's checkpoints (every 1,000 steps), and the optimiser's
	# preconditioned sharpness beside it
	assert_equal "$(grep -c 'bin/hess-eig --data .* --top 1 .*--precond' <<<"$output")" 42
	for plot in hessian_vs_depth loss_vs_steps grad_norm_vs_steps test_acc_vs_steps precond_vs_steps; do
		assert_equal "$(grep -c "kind='$plot'" <<<"$output")" 2
	done
}

@test "replicate-ap: a tiny run makes the source's four plots and ours per recipe, then nothing" {
	TINY=(AP_P=11 AP_FRAC=0.5 AP_GROK_FRAC=0.5 AP_STEPS=40 AP_LOG_EVERY=10 AP_HESS_EVERY=20 AP_DEPTHS="1 2" AP_SEEDS="0 1")
	run make replicate-ap "${ARGS[@]}" "${TINY[@]}"
	assert_success
	assert_line "replicate-ap in $BATS_TEST_TMPDIR/ap: p = 11, 40 steps, depths 1 2, seeds 0 1;"
	for r in literal grok; do
		for f in hessian_vs_depth loss_vs_steps grad_norm_vs_steps test_acc_vs_steps precond_vs_steps; do
			assert_file_exist "apl/$r/$f.png"
		done
		# checkpoints 0, 20, 40: three eigenvalues per run; the table's rows are the runs.
		# Adam's threshold 38/lr = 38,000 at every checkpoint, the preconditioned
		# sharpness from step 20 on (step 0 has no preconditioner yet)
		for run in d1-s0 d1-s1 d2-s0 d2-s1; do
			assert_equal "$(tail -n +2 "ap/$r/$run/hessian.tsv" | cut -f1 | tr '\n' ' ')" "0 20 40 "
			assert_equal "$(tail -n +2 "ap/$r/$run/hessian.tsv" |
			    awk -F '\t' '{ printf "%.6f ", $10 }')" "38000.000000 38000.000000 38000.000000 "
			assert_equal "$(tail -n +2 "ap/$r/$run/hessian.tsv" |
			    awk -F '\t' '$9 + 0 > 0 { d = $11 - $9 / $10; if (d < 0) d = -d; if (d <= 1e-12 * $11) n++ } END { print n + 0 }')" 2
		done
		assert_equal "$(tail -n +2 "ap/$r/hessian-by-depth.tsv" | cut -f1,2 | tr '\t\n' ': ')" "1:0 1:1 2:0 2:1 "
	done
	assert_equal "$(jq -r 'select(.record == "metrics") | .step' ap/literal/d2-s0/log.jsonl | tr '\n' ' ')" "0 10 20 30 40 "
	run make replicate-ap "${ARGS[@]}" "${TINY[@]}"
	assert_success
	refute_output --regexp 'bin/(train-mlp|hess-eig|gen-modadd)|gnuplot -e'
}

# Power et al. through openai/grok's train.py, as the Geometry of Grok ran it: p = 97, AdamW
# lr 1e-3 betas (0.9, 0.98), 10 warm-up steps, batch min(512, ceil(n/2)), 100,000 steps, on
# --train_data_pct=0.5 (a percentage there: 47 pairs; 50% here, G9_FRAC); their framework's
# optimisers (torch's AdamW, Adam, SGD without momentum) at weight decay 0, 0.1, 1: the MLP's
# whole grid by default, at 10,000 steps.
@test "replicate-g9: make -n runs the MLP's whole grid, 2 ops x 3 optimisers x 3 weight decays, by default" {
	run make -n replicate-g9 "${ARGS[@]}"
	assert_success
	for op in add sub; do
		assert_line --partial "bin/gen-modadd -p 97 --op $op --frac 0.5 -o $BATS_TEST_TMPDIR/g9/$op/data.safetensors"
	done
	runs=$(grep -E 'bin/train-mlp ' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 18
	for op in add sub; do
		for o in adam adamw sgd; do
			for wd in 0 0.1 1; do
				assert_equal "$(grep -c -e "--data $BATS_TEST_TMPDIR/g9/$op/data.safetensors --seed 0 --wd $wd --tag g9-$op-$o .*--optim $o " <<<"$runs")" 1
			done
		done
	done
	for flags in "--depth 2 " "--width 128 " "--batch 512 " "--warmup 10 " "--warmup-origin 0 " "--encoding onehot " \
	    "--loss ce " "--steps 10000 " "--log-every 50 " "--ckpt-every 1000 "; do
		assert_equal "$(grep -c -e "$flags" <<<"$runs")" 18
	done
	# Adam and AdamW at Power et al.'s rate and betas; SGD at G9_SGD_LR, plain (no momentum flag)
	for o in adam adamw; do
		assert_equal "$(grep -c -e "--optim $o --lr 1e-3 --beta2 0.98\( \|$\)" <<<"$runs")" 6
	done
	assert_equal "$(grep -c -e '--optim sgd --lr 0.5\( \|$\)' <<<"$runs")" 6
	refute_line --partial '--momentum'
	assert_equal "$(grep -c 'bin/gop-spectrum --data [^ ]*/g9/\(add\|sub\)/data.safetensors --top 10 > ' <<<"$output")" 18
	# one plot per (operator, optimiser)
	for op in add sub; do
		for o in adam adamw sgd; do
			assert_equal "$(grep -c "out='$BATS_TEST_TMPDIR/g9pl/$op-$o.png+'" <<<"$output")" 1
		done
	done
	run make -n replicate-g9 "${ARGS[@]}" G9_FULL=1
	assert_success
	runs=$(grep -E 'bin/train-mlp ' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 18
	assert_equal "$(grep -c -e '--steps 100000 ' <<<"$runs")" 18
	assert_equal "$(grep -c -e '--ckpt-every 2000 ' <<<"$runs")" 18
	assert_equal "$(grep -c 'bin/gop-spectrum --data [^ ]*/g9/\(add\|sub\)/data.safetensors --top 10 --per-layer > ' <<<"$output")" 18
	assert_equal "$(grep -c 'bin/gop-spectrum --data [^ ]*/g9/tfm-\(add\|sub\)/' <<<"$output")" 18
	assert_equal "$(grep -c 'bin/train-transformer ' <<<"$output")" 18
	for op in add sub; do
		for o in adam adamw sgd; do
			assert_equal "$(grep -c -e "--tag g9-tfm-$op-$o .*--optim $o " <<<"$output")" 3
		done
	done
	# a narrower grid on request
	run make -n replicate-g9 "${ARGS[@]}" G9_OPS=sub G9_OPTIMS=sgd G9_TFM_OPS=
	assert_success
	runs=$(grep -E 'bin/train-mlp ' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 3
	assert_equal "$(grep -c -e '--tag g9-sub-sgd ' <<<"$runs")" 3
	# their run as written: 0.5% of the pairs (round(0.005 * 9409) = 47), batches of ceil(47 / 2) = 24
	run make -n replicate-g9 "${ARGS[@]}" G9_FRAC=0.005 G9_BATCH=24 G9_OPS=add G9_OPTIMS=adamw G9_WDS=1 G9_TFM_OPS=
	assert_success
	assert_line --partial "bin/gen-modadd -p 97 --op add --frac 0.005 -o $BATS_TEST_TMPDIR/g9/add/data.safetensors"
	runs=$(grep -E 'bin/train-mlp ' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 1
	assert_equal "$(grep -c -e '--wd 1 --tag g9-add-adamw .*--batch 24 .*--optim adamw --lr 1e-3 --beta2 0.98' <<<"$runs")" 1
}

# openai/grok's model: Transformer(n_layers=2, n_heads=4, d_model=128, dropout=0, relu), its MLP
# 4 d_model wide, causal; batch min(512, ceil(n_train / 2)); at a small p beside the MLP.
@test "replicate-g9: the transformer runs x + y with AdamW at G9_TFM_P by default, with openai/grok's model and batch rule" {
	run make -n replicate-g9 "${ARGS[@]}"
	assert_success
	assert_line --partial "bin/gen-modadd -p 23 --op add --frac 0.5 -o $BATS_TEST_TMPDIR/g9/tfm-add/data.safetensors"
	runs=$(grep -E 'bin/train-transformer ' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 3
	for wd in 0 0.1 1; do
		assert_equal "$(grep -c -e "--data $BATS_TEST_TMPDIR/g9/tfm-add/data.safetensors --seed 0 --wd $wd --tag g9-tfm-add-adamw " <<<"$runs")" 1
	done
	# round(0.5 * 23^2) = 265 training pairs: ceil(265 / 2) = 133
	for flags in "--layers 2 " "--d-model 128 " "--heads 4 " "--d-mlp 512 " "--act relu " "--attention causal " \
	    "--batch 133 " "--warmup 10 " "--warmup-origin 0 " "--optim adamw " "--lr 1e-3 " "--beta2 0.98" "--steps 10000 " \
	    "--log-every 10 " "--ckpt-points 30 "; do
		assert_equal "$(grep -c -e "$flags" <<<"$runs")" 3
	done
	# it memorises within 100 steps: log-spaced checkpoints, not the MLP's every 1,000
	assert_equal "$(grep -c -e '--ckpt-every' <<<"$runs")" 0
	# at p = 97 the rule gives the MLP's 512 (4,705 pairs)
	run make -n replicate-g9 "${ARGS[@]}" G9_TFM_P=97
	assert_equal "$(grep -E 'bin/train-transformer ' <<<"$output" | grep -c -e '--batch 512 ')" 3
	run make -n replicate-g9 "${ARGS[@]}" G9_TFM_OPS=
	assert_success
	refute_output --partial 'bin/train-transformer'
	# its grid on request, apart from the MLP's
	run make -n replicate-g9 "${ARGS[@]}" G9_OPS= G9_TFM_OPS=sub G9_TFM_OPTIMS="adam sgd"
	assert_success
	refute_output --partial 'bin/train-mlp'
	runs=$(grep -E 'bin/train-transformer ' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 6
	assert_equal "$(grep -c -e "--tag g9-tfm-sub-adam .*--optim adam --lr 1e-3 --beta2 0.98" <<<"$runs")" 3
	assert_equal "$(grep -c -e "--tag g9-tfm-sub-sgd .*--optim sgd --lr 0.5" <<<"$runs")" 3
}

@test "replicate-g9: a tiny run logs the per-example statistics, which gop-spectrum's trace agrees with" {
	TINY=(G9_P=11 G9_FRAC=0.5 G9_BATCH=16 G9_STEPS=40 G9_LOG_EVERY=10 G9_CKPT_EVERY=20 G9_WDS="0 1"
	      G9_TFM_P=7 G9_TFM_MODEL="--layers 1 --d-model 8 --heads 2" G9_TFM_LOG_EVERY=5 G9_TFM_CKPT_POINTS=6)
	run make replicate-g9 "${ARGS[@]}" "${TINY[@]}"
	assert_success
	for op in add sub; do
		for o in adam adamw sgd; do
			assert_file_exist g9pl/$op-$o.png
		done
	done
	assert_file_exist g9pl/tfm-add-adamw.png
	assert_equal "$(ls g9pl | wc -l)" 7
	# the transformer: round(0.5 * 49) = 25 pairs, batches of 13, a log point every 5 steps;
	# gop-spectrum at its 6 log-spaced checkpoints, round(40^(i/5)) for i = 0..5 and step 0
	for wd in 0 1; do
		d=g9/tfm-add/adamw-wd$wd-s0
		assert_equal "$(head -1 $d/log.jsonl | jq -r '.config.batch')" 13
		assert_equal "$(jq -r 'select(.record == "metrics") | .step' $d/log.jsonl | tr '\n' ' ')" "0 5 10 15 20 25 30 35 40 "
		assert_equal "$(tail -n +2 $d/gop.tsv | cut -f1 | tr '\n' ' ')" "0 1 2 4 9 19 40 "
	done
	for d in g9/{add,sub}/{adam,adamw,sgd}-wd{0,1}-s0; do
		assert_equal "$(tail -n +2 $d/norms.tsv | cut -f1 | tr '\n' ' ')" "0 10 20 30 40 "
		# every field a finite positive number; the mean norm at most the largest
		assert_equal "$(tail -n +2 $d/norms.tsv | awk -F '\t' '$3 > 0 && $4 >= $3 && $5 > 0 && $6 > 0 { k++ } END { print k }')" 5
		# tr G of the log's pass (the mean of |g_i|^2) is gop-spectrum's trace on the same checkpoint
		for step in 0 20 40; do
			log=$(jq -r "select(.record == \"metrics\" and .step == $step) | .example_grad_sq_mean" $d/log.jsonl)
			gop=$(jq -r "select(.record == \"gop\" and .step == $step) | .gop.trace" $d/gop.jsonl)
			assert_equal "$(awk -v a="$log" -v b="$gop" 'BEGIN { print (a - b <= 1e-5 * b && b - a <= 1e-5 * b && b > 0) }')" 1
		done
	done
	run make replicate-g9 "${ARGS[@]}" "${TINY[@]}"
	assert_success
	refute_output --regexp 'bin/(train-mlp|train-transformer|gop-spectrum|gen-modadd)|gnuplot -e'
}
