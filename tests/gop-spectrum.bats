#!/usr/bin/env bats
# gop-spectrum: records, identities between the statistics, outputs, and bad inputs.

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-dir ck > log
}

@test "gop-spectrum --help and --version" {
	run gop-spectrum --help
	assert_success
	assert_line --index 0 --partial "usage: gop-spectrum --data FILE"
	run gop-spectrum --version
	assert_output --regexp '^gop-spectrum [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "gop-spectrum --full: one record per checkpoint with every statistic" {
	run gop-spectrum --data d.st --full ck/step-00000020.safetensors ck/step-00000040.safetensors
	assert_success
	assert_equal "${#lines[@]}" 3
	l=${lines[2]}
	assert_equal "$(jq -r '.record + " " + .set + " " + (.n | tostring) + " " + (.step | tostring)' <<<"$l")" "gop train 61 40"
	assert_equal "$(jq -r '.gop | keys | join(",")' <<<"$l")" "condition,effective_rank,frobenius,logdet,participation_ratio,rank,rank_tol,routes,smallest,spectral,stable_rank,top,trace"
	assert_equal "$(jq '.gop.top | length' <<<"$l")" 10
	assert_jq '.gop.top == (.gop.top | map(num) | sort | reverse) and .gop.top[0] == .gop.spectral' <<<"$l"
	# trace(G) = trace(C) + |mean gradient|^2
	assert_jq '. as $r | (($r.gop.trace | num) - ($r.centred.trace | num) - ($r.mean_grad_sq | num)) | fabs < 1e-9 * $r.gop.trace' <<<"$l"
	# rank at most n, effective rank between 1 and rank
	assert_jq '(.gop.rank | num) <= .n and (.gop.effective_rank | num) >= 1 and .gop.effective_rank <= .gop.rank' <<<"$l"
	# the documented rank tolerance: n 2^-23 times the largest eigenvalue (numpy's matrix_rank rule for float32)
	assert_jq '.gop.rank_tol as $t | ($t | num) - .n * pow(2; -23) * (.gop.spectral | num) | fabs <= 1e-12 * $t' <<<"$l"
	# condition = spectral / smallest counted >= 1; log-determinant finite (numpy checks both: check_gop.py)
	assert_jq '(.gop.condition | num) >= 1 and (.gop.logdet | num) == .gop.logdet' <<<"$l"
}

@test "gop-spectrum: |mean gradient|^2 is hess-eig's squared gradient norm" {
	a=$(gop-spectrum --data d.st ck/step-00000040.safetensors | tail -1 | jq .mean_grad_sq)
	b=$(hess-eig --data d.st --top 1 ck/step-00000040.safetensors | tail -1 | jq '.grad_norm * .grad_norm')
	assert_jq -n --argjson a "$a" --argjson b "$b" '(($a | num) - ($b | num) | fabs) / $b < 1e-5'
}

@test "gop-spectrum: with dead units (dropped from the Grams), the same identities and counts as hess-eig" {
	train-mlp --data d.st --depth 6 --width 12 --steps 60 --log-every 60 --ckpt-dir deep > /dev/null
	a=$(gop-spectrum --data d.st --eigvecs 1 v.st deep/step-00000060.safetensors | tail -1)
	b=$(hess-eig --data d.st --top 1 deep/step-00000060.safetensors | tail -1)
	assert_jq '.dead_units | map(num) | add > 0' <<<"$a"
	assert_equal "$(jq -c .dead_units <<<"$a")" "$(jq -c .dead_units <<<"$b")"
	assert_jq -n --argjson a "$a" --argjson b "$b" '(($a.mean_grad_sq | num) - ($b.grad_norm | num) * $b.grad_norm | fabs) /
	    $a.mean_grad_sq < 1e-5'
	assert_equal "$(st_header v.st | jq -c '.["layers.1.weight"].shape')" "[1,12,12]"
}

@test "gop-spectrum --per-layer: layer traces add up to the whole" {
	run gop-spectrum --data d.st --per-layer ck/step-00000040.safetensors
	assert_success
	assert_equal "$(jq '.layers | length' <<<"${lines[1]}")" 3
	assert_jq '. as $r | ([$r.layers[].trace | num] | add) - ($r.gop.trace | num) | fabs < 1e-9 * $r.gop.trace' <<<"${lines[1]}"
}

@test "gop-spectrum --set all uses train and test rows" {
	run gop-spectrum --data d.st --set all --top 3 ck/step-00000040.safetensors
	assert_success
	assert_equal "$(jq .n <<<"${lines[1]}")" 121
}

@test "gop-spectrum --spectrum writes every eigenvalue" {
	gop-spectrum --data d.st --per-layer --spectrum s.st ck/step-00000040.safetensors > out
	h=$(st_header s.st)
	assert_equal "$(jq -c '[.gop.shape, .centred.shape, .["layers.0"].shape, .gop.dtype]' <<<"$h")" '[[61],[61],[61],"F64"]'
	first=$(st_values s.st gop f8 8 | head -1)
	assert_jq -n --argjson a "$first" --argjson b "$(jq .gop.spectral out | tail -1)" '(($a | num) - ($b | num) | fabs) < 1e-12 * $b'
}

@test "gop-spectrum --eigvecs writes unit eigenvectors named like the parameters" {
	gop-spectrum --data d.st --eigvecs 2 v.st ck/step-00000040.safetensors > out
	h=$(st_header v.st)
	assert_equal "$(jq -c '.["layers.0.weight"].shape' <<<"$h")" "[2,12,22]"
	# the first eigenvector has unit norm over all its tensors
	n2=$(for t in layers.0.weight layers.0.bias layers.1.weight layers.1.bias layers.2.weight layers.2.bias; do
		total=$(st_values v.st "$t" f4 | wc -l); st_values v.st "$t" f4 | head -n $((total / 2)); done |
		awk '{ s += $1 * $1 } END { printf "%.6f", s }')
	assert_equal "$n2" 1.000000
}

@test "gop-spectrum: deterministic" {
	gop-spectrum --data d.st ck/step-00000040.safetensors | tail -1 | jq -c 'del(.seconds, .peak_rss_mib)' > a
	gop-spectrum --data d.st ck/step-00000040.safetensors | tail -1 | jq -c 'del(.seconds, .peak_rss_mib)' > b
	cmp a b
}

bad() {
	run gop-spectrum "$@"
	assert_failure 2
	assert_line --index 0 "$EXPECTED"
	assert_line --index 1 "Try 'gop-spectrum --help' for more information."
}

@test "gop-spectrum: no --data" { EXPECTED="gop-spectrum: --data FILE is required (the data set the checkpoints were trained on)" bad x; }
@test "gop-spectrum: top 0" { EXPECTED="gop-spectrum: --top: 0 is out of range (allowed: 1..100000)" bad --data d.st --top 0 x; }
@test "gop-spectrum: eigvecs without a file" { EXPECTED="gop-spectrum: --eigvecs K FILE: missing FILE (example: --eigvecs 5 top.safetensors)" bad --data d.st --eigvecs 3; }
@test "gop-spectrum: rank-tol 2" { EXPECTED="gop-spectrum: --rank-tol: 2 is out of range (allowed: strictly between 0 and 1)" bad --data d.st --rank-tol 2 x; }
@test "gop-spectrum: spectrum for several checkpoints without {step}" {
	EXPECTED="gop-spectrum: --spectrum s.st: with several checkpoints the name must contain {step}" bad --data d.st --spectrum s.st ck/step-00000020.safetensors ck/step-00000040.safetensors
}

@test "gop-spectrum: a checkpoint for another p" {
	gen-modadd -p 7 -o d7.st
	run --separate-stderr gop-spectrum --data d7.st ck/step-00000040.safetensors
	assert_failure 1
	assert_stderr "gop-spectrum: ck/step-00000040.safetensors: a model for p = 11, but the data set has p = 7"
}

@test "gop-spectrum: not a checkpoint" {
	run --separate-stderr gop-spectrum --data d.st d.st
	assert_failure 1
	assert_stderr "gop-spectrum: d.st: no 'depth' in the metadata (not a train-mlp or train-transformer checkpoint?)"
}

@test "gop-spectrum: a truncated checkpoint" {
	head -c $(( $(stat -c %s ck/step-00000040.safetensors) - 7 )) ck/step-00000040.safetensors > t.st
	run --separate-stderr gop-spectrum --data d.st t.st
	assert_failure 1
	assert_stderr --regexp '^gop-spectrum: t.st: truncated data: [0-9]+ of [0-9]+ bytes$'
}
