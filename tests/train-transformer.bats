#!/usr/bin/env bats
# train-transformer: Nanda's defaults, checkpoints in the papers' state_dict
# names, every analysis tool on them, determinism, resume, and bad options
# and inputs.  (The numbers themselves are checked against PyTorch in
# tests/ref/check_transformer.py.)

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d11.st
}

@test "train-transformer --help prints the synopsis and Nanda's defaults to stdout and exits 0" {
	run train-transformer --help
	assert_success
	assert_line --index 0 --partial "usage: train-transformer [--data FILE] [--layers L]"
	assert_output --partial "--wd 1 --beta2 0.98 --warmup 10"
	assert_output --partial "3 diverged"
}

@test "train-transformer --version" {
	run train-transformer --version
	assert_success
	assert_output --regexp '^train-transformer [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "train-transformer: the header has Nanda's model and optimiser by default" {
	run train-transformer --data d11.st --steps 1
	assert_success
	h=${lines[0]}
	assert_equal "$(jq -c .config.model <<<"$h")" \
	    '{"p":11,"layers":1,"d_model":128,"heads":4,"d_head":32,"d_mlp":512,"attention":"causal","attn_coeff":1,"act":"relu","eq_token":true}'
	assert_equal "$(jq -c '[.config.optim.name, .config.optim.lr, .config.optim.wd, .config.optim.beta1, .config.optim.beta2, .config.warmup, .config.batch]' <<<"$h")" \
	    '["adamw",0.001,1,0.9,0.98,10,"full"]'
	# W_E (128, 12), W_pos (3, 128), 4 x (128, 128) attention, W_in, b_in, W_out, b_out, W_U (128, 11)
	assert_equal "$(jq -r .params <<<"$h")" $((128 * 12 + 3 * 128 + 4 * 128 * 128 + 2 * 512 * 128 + 512 + 128 + 128 * 11))
	assert_equal "$(jq -r .tool <<<"$h")" train-transformer
}

@test "train-transformer: checkpoints hold the papers' state_dict names and shapes, and the family" {
	train-transformer --data d11.st --layers 2 --d-model 16 --heads 2 --d-mlp 24 --no-eq-token \
	    --steps 4 --out w.st --quiet > log
	assert_equal "$(st_header w.st | jq -c 'del(.__metadata__) | to_entries | map([.key, .value.shape])')" \
	    '[["embed.W_E",[16,11]],["pos_embed.W_pos",[2,16]],["blocks.0.attn.W_K",[2,8,16]],["blocks.0.attn.W_Q",[2,8,16]],["blocks.0.attn.W_V",[2,8,16]],["blocks.0.attn.W_O",[16,16]],["blocks.0.mlp.W_in",[24,16]],["blocks.0.mlp.b_in",[24]],["blocks.0.mlp.W_out",[16,24]],["blocks.0.mlp.b_out",[16]],["blocks.1.attn.W_K",[2,8,16]],["blocks.1.attn.W_Q",[2,8,16]],["blocks.1.attn.W_V",[2,8,16]],["blocks.1.attn.W_O",[16,16]],["blocks.1.mlp.W_in",[24,16]],["blocks.1.mlp.b_in",[24]],["blocks.1.mlp.W_out",[16,24]],["blocks.1.mlp.b_out",[16]],["unembed.W_U",[16,11]]]'
	assert_equal "$(st_header w.st | jq -c '.__metadata__ | [.family, .layers, .eq_token, .attention, .attn_coeff]')" \
	    '["transformer","2","0","causal","1"]'
}

@test "train-transformer: hess-eig, gop-spectrum and llc-estimate read its checkpoints" {
	train-transformer --data d11.st --d-model 16 --attention full --attn-coeff 0.5 --act gelu \
	    --steps 10 --out w.st --quiet > log
	run hess-eig --data d11.st --top 2 w.st
	assert_success
	assert_equal "$(tail -1 <<<"$output" | jq -c '[.family, .depth, (.eigenvalues | length), .converged]')" \
	    '["transformer",1,2,true]'
	run gop-spectrum --data d11.st w.st
	assert_success
	assert_equal "$(tail -1 <<<"$output" | jq -c '[.family, .params]')" "[\"transformer\",$(head -1 log | jq .params)]"
	run llc-estimate --data d11.st --draws 10 --chains 2 w.st
	assert_success
	assert_equal "$(tail -1 <<<"$output" | jq -c '[.family, .chains_ok]')" '["transformer",2]'
}

@test "train-transformer: the same seed gives the same log and weights; another seed another" {
	args=(--data d11.st --d-model 16 --steps 15 --log-every 5 --quiet)
	train-transformer "${args[@]}" --seed 4 --out a.st > a.log
	train-transformer "${args[@]}" --seed 4 --out b.st > b.log
	train-transformer "${args[@]}" --seed 5 --out c.st > c.log
	assert_equal "$(metrics a.log)" "$(metrics b.log)"
	assert_equal "$(st_values a.st unembed.W_U f4 | md5sum)" "$(st_values b.st unembed.W_U f4 | md5sum)"
	refute [ "$(st_values a.st unembed.W_U f4 | md5sum)" = "$(st_values c.st unembed.W_U f4 | md5sum)" ]
}

@test "train-transformer --resume with more steps equals a straight run, byte for byte" {
	args=(--data d11.st --d-model 16 --layers 2 --log-every 10 --quiet)
	train-transformer "${args[@]}" --steps 40 --out straight.st > straight.log
	train-transformer "${args[@]}" --steps 20 --state s.st > first.log
	run train-transformer "${args[@]}" --steps 40 --resume s.st --state s.st --out extended.st
	assert_success
	run cmp extended.st straight.st
	assert_success
}

@test "train-transformer: bad model options are usage errors that name the option" {
	run train-transformer --data d11.st --layers 9
	assert_failure 2
	assert_output --partial "--layers: 9 is out of range (allowed: 1..8)"
	run train-transformer --data d11.st --attn-coeff 1.5
	assert_failure 2
	assert_output --partial "--attn-coeff: 1.5 is out of range (allowed: 0..1)"
	run train-transformer --data d11.st --d-model 30 --heads 4
	assert_failure 2
	assert_output --partial "--heads 4 does not divide --d-model 30: give --d-head"
	run train-transformer --data d11.st --attention sideways
	assert_failure 2
	assert_output --partial "--attention"
	run train-transformer --data d11.st --act tanh
	assert_failure 2
	assert_output --partial "--act"
}

@test "train-transformer: --init of another family or another p is refused" {
	train-mlp --data d11.st --steps 2 --width 8 --out mlp.st --quiet > /dev/null
	run train-transformer --data d11.st --steps 2 --init mlp.st
	assert_failure 1
	assert_output --partial "--init: mlp.st: missing tensor 'embed.W_E'"
	train-transformer --data d11.st --d-model 16 --steps 2 --out t.st --quiet > /dev/null
	gen-modadd -p 13 -o d13.st
	run train-transformer --data d13.st --d-model 16 --steps 2 --init t.st
	assert_failure 1
	assert_output --partial "tensor 'embed.W_E' has shape [16, 12], expected [16, 14]"
	run hess-eig --data d13.st t.st
	assert_failure 1
	assert_output --partial "a model for p = 11, but the data set has p = 13"
}

@test "train-transformer: warm-up as LambdaLR(lambda s: min(s / 10, 1)): the first update at lr 0 changes nothing" {
	lr_units='[.[] | select(.record == "metrics") | .lr | if . == null then . else . * 1e4 | round end]'
	run -0 train-transformer --data d11.st --d-model 8 --heads 2 --d-mlp 16 --steps 12 --log-every 1 --ckpt-dir ck
	# lr in units of 1e-4 after each step: 0, 1, ..., 10 (step 0 has none)
	assert_equal "$(jq -sc "$lr_units" <<<"$output")" '[null,0,1,2,3,4,5,6,7,8,9,10,10]'
	assert_jq '.config.warmup_origin == 0' <<<"${lines[0]}"
	# AdamW at lr 0 moves nothing, not even by weight decay.
	assert_equal "$(st_values ck/step-00000001.safetensors embed.W_E f4 | md5sum)" \
	    "$(st_values ck/step-00000000.safetensors embed.W_E f4 | md5sum)"
	assert_files_differ <(st_values ck/step-00000002.safetensors embed.W_E f4) \
	    <(st_values ck/step-00000001.safetensors embed.W_E f4)
	# --warmup-origin 1 is the shared loop's older form: the first update at lr / 10.
	run -0 train-transformer --data d11.st --d-model 8 --heads 2 --d-mlp 16 --steps 2 --log-every 1 --warmup-origin 1
	assert_equal "$(jq -sc "$lr_units" <<<"$output")" '[null,1,2]'
	assert_jq '.config | has("warmup_origin") | not' <<<"${lines[0]}"
	run -2 train-transformer --data d11.st --warmup-origin 2
	assert_output --partial "--warmup-origin"
}

@test "train-transformer: the log has the family, every tensor's sum of squares and each block's attention entropy" {
	run -0 train-transformer --data d11.st --layers 2 --d-model 8 --heads 2 --d-mlp 16 --steps 3 --log-every 3 --ckpt-dir ck
	assert_jq '.family == "transformer"' <<<"${lines[0]}"
	m=$(jq -c 'select(.record == "metrics" and .step == 3)' <<<"$output")
	assert_equal "$(jq -c '.weight_sq_norms | keys_unsorted' <<<"$m")" \
	    "$(st_header ck/step-00000003.safetensors | jq -c 'del(.__metadata__) | keys_unsorted')"
	# The sums of squares of the checkpoint's own values.
	for t in embed.W_E blocks.1.mlp.W_in unembed.W_U; do
		want=$(st_values ck/step-00000003.safetensors "$t" f4 | awk '{ s += $1 * $1 } END { printf "%.10g", s }')
		got=$(jq -r --arg t "$t" '.weight_sq_norms[$t]' <<<"$m")
		assert_between "$(awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; print (d < 0 ? -d : d) / b }')" 0 1e-6
	done
	# Two blocks' entropies, each between 0 and ln 3 (causal: the last position sees all three).
	assert_jq '.attn_entropy | length == 2' <<<"$m"
	assert_between "$(jq -r '.attn_entropy[0]' <<<"$m")" 0 1.0986123
	assert_between "$(jq -r '.attn_entropy[1]' <<<"$m")" 0 1.0986123
}
