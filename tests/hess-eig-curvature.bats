#!/usr/bin/env bats
# hess-eig's curvature views: --blocks, --matrix ggn, --alignment, --precond,
# train --ckpt-optim, and their bad flags.  The numbers themselves are checked
# against PyTorch float64 in tests/ref/check_curv.py.

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-dir ck --ckpt-optim > log
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-dir plain > log
}

@test "train --ckpt-optim keeps optim_t, optim_lr and optim.v; without it checkpoints are as before" {
	h=$(st_header ck/step-00000040.safetensors)
	assert_equal "$(jq -r '.__metadata__.optim_t' <<<"$h")" 40
	assert_equal "$(jq -r '.__metadata__.optim_lr' <<<"$h")" 0.001
	# one second moment per parameter
	assert_jq '.["optim.v"].shape == [[to_entries[] | select(.key | startswith("layers.")) | .value.shape | reduce .[] as $d (1; . * $d)] | add]' <<<"$h"
	assert_jq '.["optim.v"].dtype == "F32"' <<<"$h"
	assert_jq '[has("optim.m"), has("train.perm")] == [false, false]' <<<"$h"
	h0=$(st_header plain/step-00000040.safetensors)
	assert_equal "$(jq -c '[keys[] | select(startswith("optim"))]' <<<"$h0")" "[]"
	assert_equal "$(jq -c '.__metadata__ | has("optim_t")' <<<"$h0")" false
	# the parameters are the same run's either way
	assert_equal "$(st_values ck/step-00000040.safetensors layers.1.weight f4 | sha256sum)" \
	    "$(st_values plain/step-00000040.safetensors layers.1.weight f4 | sha256sum)"
}

@test "hess-eig --blocks: one entry per layer, block traces with standard errors summing to blocks_trace" {
	run hess-eig --data d.st --top 2 --blocks --probes 30 ck/step-00000040.safetensors
	assert_success
	l=${lines[1]}
	assert_equal "$(jq -c '[.blocks[].group]' <<<"$l")" '["layers.0","layers.1","layers.2"]'
	assert_jq '[.blocks[] | (.lambda_max | num) > 0 and (.residual | num) >= 0 and (.stderr | num) > 0 and .converged] | all' <<<"$l"
	assert_jq '[.blocks[].params] | add == 22 * 12 + 12 + 12 * 12 + 12 + 12 * 11 + 11' <<<"$l"
	assert_jq '(([.blocks[].trace] | add) - (.blocks_trace.mean | num) | fabs) <= 1e-12 * (.blocks_trace.mean | fabs)' <<<"$l"
	assert_jq '(.trace.probes == 30) and ((.trace.mean | num) > 0)' <<<"$l"
	# a block's top eigenvalue is no more than the whole matrix's (Cauchy interlacing)
	assert_jq '[.blocks[].lambda_max <= .eigenvalues[0] * (1 + 1e-5)] | all' <<<"$l"
}

@test "hess-eig --blocks: the whole trace is that of --trace alone (same probes)" {
	a=$(hess-eig --data d.st --top 1 --trace --probes 20 ck/step-00000040.safetensors | tail -1 | jq -c .trace)
	b=$(hess-eig --data d.st --top 1 --blocks --probes 20 ck/step-00000040.safetensors | tail -1 | jq -c .trace)
	assert_equal "$b" "$a"
}

@test "hess-eig --block-top 3: three descending eigenvalues per block" {
	run hess-eig --data d.st --top 1 --blocks --block-top 3 --probes 5 ck/step-00000040.safetensors
	assert_success
	assert_jq '[.blocks[] | (.eigenvalues | length) == 3 and .eigenvalues == (.eigenvalues | map(num) | sort | reverse) and .lambda_max == .eigenvalues[0]] | all' <<<"${lines[1]}"
}

@test "hess-eig --matrix ggn: positive semi-definite, and its layer blocks are the Hessian's" {
	# the bottom end is a cluster at zero: it may stop short of --tol (a warning on stderr)
	run --separate-stderr hess-eig --data d.st --matrix ggn --top 3 --which both --blocks --probes 10 --tol 1e-6 --max-iter 300 ck/step-00000040.safetensors
	assert_success
	g=${lines[1]}
	assert_equal "$(jq -r .matrix <<<"$g")" ggn
	assert_jq '(.bottom_eigenvalues[0] | num) >= -1e-6 * .eigenvalues[0]' <<<"$g"
	h=$(hess-eig --data d.st --top 3 --blocks --probes 10 --tol 1e-6 --max-iter 300 ck/step-00000040.safetensors | tail -1)
	assert_equal "$(jq -r .matrix <<<"$h")" hessian
	# an MLP is piecewise linear in one layer's parameters: H's and G's diagonal blocks agree
	assert_jq -n --argjson g "$g" --argjson h "$h" \
	    '[range(3) as $i | (($g.blocks[$i].lambda_max | num) - $h.blocks[$i].lambda_max | fabs) <= 1e-5 * $h.blocks[$i].lambda_max] | all'
	assert_jq -n --argjson g "$g" --argjson h "$h" '[$g.blocks[].trace] == [$h.blocks[].trace]'
}

@test "hess-eig --alignment: cumulative fractions in [0, 1], one per top eigenvector" {
	run hess-eig --data d.st --top 4 --alignment ck/step-00000040.safetensors
	assert_success
	l=${lines[1]}
	assert_equal "$(jq '.alignment | length' <<<"$l")" 4
	assert_jq '.alignment == (.alignment | map(num) | sort) and .alignment[0] >= 0 and .alignment[3] <= 1' <<<"$l"
}

@test "hess-eig --precond: AdamW's preconditioned sharpness against 38/lr" {
	run hess-eig --data d.st --top 1 --precond ck/step-00000040.safetensors
	assert_success
	l=${lines[1]}
	assert_jq '.precond.optim == "adamw" and .precond.t == 40 and .precond.lr == 0.001' <<<"$l"
	assert_jq '((.precond.threshold | num) - 38000 | fabs) < 1e-6' <<<"$l"
	assert_jq '(.precond.lambda_max | num) > 0 and .precond.converged' <<<"$l"
	assert_jq '((.precond.ratio | num) - .precond.lambda_max / .precond.threshold | fabs) < 1e-12' <<<"$l"
}

@test "hess-eig --precond: SGD's threshold (2 + 2 momentum)/lr on the Hessian's top eigenvalue" {
	train-mlp --data d.st --steps 20 --log-every 20 --width 12 --optim sgd --lr 0.1 --momentum 0.5 --ckpt-dir sgd --ckpt-optim > log
	assert_equal "$(st_header sgd/step-00000020.safetensors | jq -c 'has("optim.v")')" false
	run hess-eig --data d.st --top 2 --precond sgd/step-00000020.safetensors
	assert_success
	l=${lines[1]}
	assert_jq '.precond.optim == "sgd" and ((.precond.threshold | num) - 30 | fabs) < 1e-9' <<<"$l"
	assert_jq '.precond.lambda_max == .eigenvalues[0]' <<<"$l"
}

@test "hess-eig --precond without --ckpt-optim's state fails with a message" {
	run hess-eig --data d.st --top 1 --precond plain/step-00000040.safetensors
	assert_failure 1
	assert_output --partial "no optimiser state (train with --ckpt-optim)"
}

@test "hess-eig --precond at step 0: Adam has no second moments yet, so no sharpness, only the threshold" {
	run --separate-stderr hess-eig --data d.st --top 1 --precond ck/step-00000000.safetensors ck/step-00000040.safetensors
	assert_success
	assert_equal "$(jq -c '.precond | [.t, .lambda_max, .ratio]' <<<"${lines[1]}")" '[0,null,null]'
	assert_jq '(.precond.threshold - 38000 | fabs) <= 1e-9 * 38000' <<<"${lines[1]}"
	assert_jq '(.precond.t == 40) and ((.precond.lambda_max | num) > 0)' <<<"${lines[2]}"
}

@test "hess-eig --precond after a warm-up from lr 0: no threshold at step 0 (lr 0), 38/lr of the next update (2e-4) at step 2" {
	train-transformer --data d.st --steps 2 --log-every 1 --d-model 8 --heads 2 --d-head 4 --d-mlp 16 --warmup 10 --warmup-origin 0 --ckpt-dir wck --ckpt-optim > wlog
	run --separate-stderr hess-eig --data d.st --top 1 --precond wck/step-00000000.safetensors wck/step-00000002.safetensors
	assert_success
	assert_equal "$(jq -c '.precond | [.lr, .threshold, .lambda_max]' <<<"${lines[1]}")" '[0,null,null]'
	assert_jq '(.precond.lr - 2e-4 | fabs) < 1e-12 and (.precond.threshold * .precond.lr - 38 | fabs) < 1e-9 and (.precond.lambda_max | num) > 0' <<<"${lines[2]}"
}

@test "hess-eig --matrix ggn on a transformer: positive semi-definite, four blocks, the Hessian's point untouched" {
	train-transformer --data d.st --steps 20 --log-every 20 --d-model 8 --heads 2 --d-head 4 --d-mlp 16 --act gelu --ckpt-dir tck > tlog
	run --separate-stderr hess-eig --data d.st --matrix ggn --top 2 --which both --blocks --probes 5 --tol 1e-6 --max-iter 300 tck/step-00000020.safetensors
	assert_success
	g=${lines[1]}
	assert_equal "$(jq -c '[.blocks[].group]' <<<"$g")" '["embed","blocks.0.attn","blocks.0.mlp","unembed"]'
	assert_jq '(.bottom_eigenvalues[0] | num) >= -1e-6 * .eigenvalues[0]' <<<"$g"
	h=$(hess-eig --data d.st --top 2 tck/step-00000020.safetensors | tail -1)
	# GELU's second derivative and attention's softmax: the GGN's top differs from the Hessian's
	assert_jq -n --argjson g "$g" --argjson h "$h" '(($g.eigenvalues[0] | num) - $h.eigenvalues[0] | fabs) > 1e-6 * $h.eigenvalues[0]'
	# the loss and gradient come from the same prepared point as before
	assert_jq -n --argjson g "$g" --argjson h "$h" '$g.loss == $h.loss and $g.grad_norm == $h.grad_norm'
}

@test "hess-eig curvature flags: bad values and combinations are usage errors" {
	c=ck/step-00000040.safetensors
	run hess-eig --data d.st --matrix fisher "$c"
	assert_failure 2
	assert_output --partial "--matrix"
	run hess-eig --data d.st --block-top 2 "$c"
	assert_failure 2
	assert_output --partial "--block-top applies to --blocks"
	run hess-eig --data d.st --blocks --block-top 0 "$c"
	assert_failure 2
	assert_output --partial "--block-top"
	run hess-eig --data d.st --blocks --block-top 101 "$c"
	assert_failure 2
	run hess-eig --data d.st --which bottom --alignment "$c"
	assert_failure 2
	assert_output --partial "--alignment uses the top eigenvectors"
	run hess-eig --data d.st --which bottom --precond "$c"
	assert_failure 2
	assert_output --partial "--precond compares the top eigenvalue"
	run train-mlp --data d.st --steps 2 --ckpt-optim
	assert_failure 2
	assert_output --partial "--ckpt-optim needs --ckpt-dir"
}

@test "hess-eig --blocks: the MLP's layer products (prepared, dead units dropped) agree with whole products in batches" {
	train-mlp --data d.st --steps 60 --log-every 60 --width 8 --depth 5 --lr 0.01 --ckpt-dir deep > log
	c=deep/step-00000060.safetensors
	# (the traces' probes differ: the main solve's start vector has the view's length in one and P in the other)
	a=$(hess-eig --data d.st --top 1 --blocks --block-top 2 --probes 2 --tol 1e-8 --max-iter 300 "$c" | tail -1)
	# --batch 7 prepares batch by batch: every block product is a whole product read on the block
	b=$(hess-eig --data d.st --top 1 --blocks --block-top 2 --probes 2 --tol 1e-8 --max-iter 300 --batch 7 "$c" | tail -1)
	assert_jq '[.dead_units[]] | add > 0' <<<"$a"
	assert_jq -n --argjson a "$a" --argjson b "$b" \
	    '[range(6) as $i | (($a.blocks[$i].lambda_max | num) - $b.blocks[$i].lambda_max | fabs) <= 1e-5 * ([$b.blocks[].lambda_max] | max)] | all'
	assert_jq -n --argjson a "$a" --argjson b "$b" \
	    '[range(6) as $i | (($a.blocks[$i].eigenvalues[1] | num) - $b.blocks[$i].eigenvalues[1] | fabs) <= 1e-5 * ([$b.blocks[].lambda_max] | max)] | all'
}

@test "hess-eig --blocks: the MLP's block traces from the R-forward alone equal those of whole products on the same probes" {
	train-mlp --data d.st --steps 60 --log-every 60 --width 8 --depth 5 --lr 0.01 --ckpt-dir deep > log
	c=deep/step-00000060.safetensors
	# --set all: the main solve runs on all P parameters both times, so the probes are the same;
	# prepared (one batch a part), a block's trace term is its quadratic form; with --batch 7, z . (whole product)
	a=$(hess-eig --data d.st --set all --top 1 --blocks --probes 3 "$c" | tail -1)
	b=$(hess-eig --data d.st --set all --top 1 --blocks --probes 3 --batch 7 "$c" | tail -1)
	assert_jq -n --argjson a "$a" --argjson b "$b" \
	    '[range(6) as $i | (($a.blocks[$i].trace | num) - $b.blocks[$i].trace | fabs) <= 1e-5 * ($b.blocks[$i].trace | fabs) and $b.blocks[$i].trace > 0] | all'
	assert_jq -n --argjson a "$a" --argjson b "$b" '(($a.trace.mean | num) - $b.trace.mean | fabs) <= 1e-5 * ($b.trace.mean | fabs)'
}
