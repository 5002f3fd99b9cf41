#!/usr/bin/env bats
# progress-measures: constructed checkpoints with known answers, records,
# determinism and bad inputs.

load test_helper
bats_require_minimum_version 1.5.0

# set_weights CKPT PYTHON: rewrite the checkpoint's parameter tensors in
# place; PYTHON computes the new values as W[name] (lists of floats, in the
# tensor's row-major order) from p, and the shapes in S[name].
set_weights() {
	python3 - "$1" "$2" <<'EOF'
import json, math, struct, sys
path, code = sys.argv[1], sys.argv[2]
raw = bytearray(open(path, "rb").read())
(n,) = struct.unpack("<Q", raw[:8])
head = json.loads(raw[8:8 + n])
p = int(head["__metadata__"]["p"])
S = {k: v["shape"] for k, v in head.items() if k != "__metadata__"}
W = {k: [0.0] * math.prod(s) for k, s in S.items()}
exec(code)
for k, vals in W.items():
    b, e = head[k]["data_offsets"]
    raw[8 + n + b:8 + n + e] = struct.pack(f"<{len(vals)}f", *vals)
open(path, "wb").write(raw)
EOF
}

@test "progress-measures --help and --version" {
	run progress-measures --help
	assert_success
	assert_line --index 0 --partial "usage: progress-measures --data FILE"
	assert_output --partial "restricted loss"
	assert_output --partial "Examples:"
	run progress-measures --version
	assert_output --regexp '^progress-measures [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "progress-measures: embedding columns of one frequency give that frequency, Gini at its maximum" {
	gen-modadd -p 11 -o d.st
	train-mlp --data d.st --depth 1 --width 6 --steps 1 --ckpt-dir ck > log
	# x's columns cos(2 pi 3 x / 11 + i), y's sin(...): all of the norm at frequency 3.
	set_weights ck/step-00000000.safetensors '
w = S["layers.0.weight"]
for i in range(w[0]):
    for r in range(p):
        W["layers.0.weight"][i * w[1] + r] = math.cos(2 * math.pi * 3 * r / p + i)
        W["layers.0.weight"][i * w[1] + p + r] = math.sin(2 * math.pi * 3 * r / p + i)
W["layers.1.weight"] = [0.01 * (k % 7) for k in range(len(W["layers.1.weight"]))]'
	run -0 progress-measures --data d.st ck/step-00000000.safetensors
	assert_jq 'select(.record == "progress") | .embedding.x.top_freq == 3 and .embedding.y.top_freq == 3' <<<"$output"
	assert_jq 'select(.record == "progress") | [.embedding[].freq_frac[2] | num] | all(. - 1 | fabs < 1e-6)' <<<"$output"
	# Gini of one frequency of five: 1 - 1/5.
	assert_jq 'select(.record == "progress") | [.embedding[].gini | num] | all(. - 0.8 | fabs < 1e-6)' <<<"$output"
	assert_jq 'select(.record == "progress") | .embedding.x.const_frac | num < 1e-12' <<<"$output"
}

@test "progress-measures: logits made of one frequency's terms: restricted loss = loss, excluded = ln p" {
	gen-modadd -p 7 --frac 0.6 -o d.st
	train-mlp --data d.st --depth 1 --width 49 --steps 1 --ckpt-dir ck > log
	# Hidden unit 7x + y fires (1) on the pair (x, y) alone; the output layer
	# reads 4 cos(2 pi 2 (x + y - z) / 7) off it: the Fourier algorithm's logits.
	set_weights ck/step-00000000.safetensors '
for u in range(p * p):
    x, y = divmod(u, p)
    for r in range(p):
        W["layers.0.weight"][u * 2 * p + r] = 1.0 if r == x else -10.0
        W["layers.0.weight"][u * 2 * p + p + r] = 1.0 if r == y else -10.0
    W["layers.0.bias"][u] = -1.0
    for z in range(p):
        W["layers.1.weight"][z * p * p + u] = 4 * math.cos(2 * math.pi * 2 * (x + y - z) / p)'
	run -0 progress-measures --data d.st --keys 2 ck/step-00000000.safetensors
	r=$(jq -c 'select(.record == "progress")' <<<"$output")
	assert_jq '.key_freqs == [2]' <<<"$r"
	assert_jq '(.restricted_loss | num) - (.loss_all | num) | fabs < 1e-6' <<<"$r"
	assert_jq '(.excluded_loss | num) - (7 | log) | fabs < 1e-6' <<<"$r"
	assert_jq '.key_var_frac | num | . - 1 | fabs < 1e-6' <<<"$r"
	assert_jq '.loss_all | num < 1' <<<"$r"
	# Another frequency explains none of it: restricted is the class means' ln 7.
	run -0 progress-measures --data d.st --keys 1 ck/step-00000000.safetensors
	r=$(jq -c 'select(.record == "progress")' <<<"$output")
	assert_jq '((.restricted_loss | num) - (7 | log) | fabs < 1e-6) and (.key_var_frac | num) < 1e-9' <<<"$r"
	assert_jq '(.excluded_loss | num) - (.loss_train | num) | fabs < 1e-6' <<<"$r"
}

@test "progress-measures: a record per checkpoint with every measure, deterministic" {
	gen-modadd -p 13 --frac 0.5 -o d.st
	train-mlp --data d.st --depth 2 --width 16 --steps 60 --log-every 30 --ckpt-dir ck > log
	run -0 progress-measures --data d.st ck/step-00000030.safetensors ck/step-00000060.safetensors
	assert_equal "${#lines[@]}" 3
	assert_jq '.record == "header" and .tool == "progress-measures" and .config.op == "add" and .config.group' <<<"${lines[0]}"
	assert_jq '.record == "progress" and .step == 60 and .family == "mlp" and .depth == 2 and .group.order == 13' <<<"${lines[2]}"
	assert_jq '.neurons.count == 16 and (.neurons.freq_counts | length) == 6' <<<"${lines[2]}"
	assert_jq '[.loss_all, .loss_train, .restricted_loss, .excluded_loss, .key_var_frac, .distance_irrelevance, .gradient_symmetricity] | map(num) | length == 7' <<<"${lines[2]}"
	# One-hot x and y enter the first layer as a sum: their gradients are one vector.
	assert_jq '(.gradient_symmetricity | num) - 1 | fabs < 1e-12' <<<"${lines[2]}"
	assert_jq '.pairs == 169 and .train_pairs == 85' <<<"${lines[2]}"
	jq -c 'del(.seconds, .peak_rss_mib)' <<<"$output" > first
	run -0 progress-measures --data d.st ck/step-00000030.safetensors ck/step-00000060.safetensors
	jq -c 'del(.seconds, .peak_rss_mib)' <<<"$output" > second
	assert_equal "$(cat second)" "$(cat first)"
}

@test "progress-measures: mul runs in discrete logarithms; polynomial ops have no logit measures" {
	gen-modadd -p 11 --op mul --frac 0.5 -o m.st
	train-mlp --data m.st --depth 1 --width 16 --steps 20 --log-every 20 --ckpt-dir mk > log
	run -0 progress-measures --data m.st mk/step-00000020.safetensors
	assert_jq 'select(.record == "progress") | .group == {"order": 10, "coordinates": "discrete logarithm", "generator": 2}' <<<"$output"
	# (sum, distance) is not one to one for an even group order.
	assert_jq 'select(.record == "progress") | .pairs == 100 and .distance_irrelevance == null' <<<"$output"
	gen-modadd -p 11 --op x2+y2 -o q.st
	train-mlp --data q.st --depth 1 --width 16 --steps 20 --log-every 20 --ckpt-dir qk > log
	run -0 progress-measures --data q.st qk/step-00000020.safetensors
	assert_jq 'select(.record == "progress") | [.restricted_loss, .excluded_loss, .distance_irrelevance] == [null, null, null]' <<<"$output"
	assert_jq 'select(.record == "progress") | .embedding.x.freq_frac | length == 5' <<<"$output"
}

@test "progress-measures: raw integer inputs have no embedding; --arrays writes the arrays" {
	gen-modadd -p 11 -o d.st
	train-mlp --data d.st --depth 1 --width 8 --encoding int --steps 10 --log-every 10 --ckpt-dir ck > log
	run -0 progress-measures --data d.st --arrays 'arr-{step}.st' ck/step-00000000.safetensors ck/step-00000010.safetensors
	assert_jq 'select(.record == "progress") | .embedding == null and .gradient_symmetricity == null' <<<"${lines[2]}"
	assert_file_exists arr-00000010.st
	assert_jq '.logits.shape == [121, 11] and .neurons.shape == [121, 8] and .neuron_freq.dtype == "I32"' < <(st_header arr-00000010.st)
	assert_jq '.__metadata__.format == "grokkit-progress-arrays-v1" and .__metadata__.step == "10"' < <(st_header arr-00000010.st)
}

@test "progress-measures: bad input" {
	gen-modadd -p 11 -o d.st
	gen-modadd -p 13 -o d13.st
	train-mlp --data d.st --depth 1 --width 8 --steps 1 --ckpt-dir ck > log
	run -2 progress-measures ck/step-00000000.safetensors
	assert_output --partial "progress-measures: --data FILE is required"
	run -2 progress-measures --data d.st --neuron-threshold 0 ck/step-00000000.safetensors
	assert_output --partial "--neuron-threshold: 0 is not in (0, 1]"
	run -2 progress-measures --data d.st --keys 6 ck/step-00000000.safetensors
	assert_output --partial "--keys"
	run -2 progress-measures --data d.st --arrays a.st ck/step-00000000.safetensors ck/step-00000000.safetensors
	assert_output --partial "{step}"
	run -1 progress-measures --data d13.st --any-data ck/step-00000000.safetensors
	assert_output --partial "progress-measures: "
	gen-modadd -p 300 -o big.st
	run -1 progress-measures --data big.st ck/step-00000000.safetensors
	assert_output --partial "p = 300 is more than the 256 progress-measures handles"
	run -1 progress-measures --data d.st missing.safetensors
	assert_output --partial "missing.safetensors"
}

@test "progress-measures: a transformer's record, neurons and W_E as both operands' embedding" {
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-transformer --data d.st --d-model 8 --heads 2 --d-mlp 20 --steps 1 --ckpt-dir ck > log
	# W_E's residue columns cos(2 pi 3 r / 11 + i); the '=' column (r = p) is no operand.
	set_weights ck/step-00000000.safetensors '
d, v = S["embed.W_E"]
for i in range(d):
    for r in range(v):
        W["embed.W_E"][i * v + r] = math.cos(2 * math.pi * 3 * r / p + i) if r < p else 5.0
W["unembed.W_U"] = [0.01 * (k % 5) for k in range(len(W["unembed.W_U"]))]'
	run -0 progress-measures --data d.st --arrays a.st ck/step-00000000.safetensors
	r=$(jq -c 'select(.record == "progress")' <<<"$output")
	assert_jq '.family == "transformer" and .depth == 1 and .neurons.count == 20' <<<"$r"
	assert_jq '.embedding.x.top_freq == 3 and .embedding.y.top_freq == 3' <<<"$r"
	assert_jq '[.embedding[].freq_frac[2] | num] | all(. - 1 | fabs < 1e-6)' <<<"$r"
	assert_jq '.logits.shape == [121, 11] and .neurons.shape == [121, 20]' < <(st_header a.st)
}

@test "progress-measures: a transformer's gradient symmetricity is 1 under constant full attention, not otherwise" {
	gen-modadd -p 11 --frac 0.5 -o d.st
	# alpha 0 and full attention: the '=' position reads the sum of every
	# position's value, so x's and y's vectors enter the logits alike.
	train-transformer --data d.st --d-model 8 --heads 2 --d-mlp 16 --attention full --attn-coeff 0 \
		--steps 20 --log-every 20 --ckpt-dir c0 > log
	run -0 progress-measures --data d.st c0/step-00000020.safetensors
	assert_jq 'select(.record == "progress") | (.gradient_symmetricity | num) - 1 | fabs < 1e-6' <<<"$output"
	assert_jq 'select(.record == "progress") | (.gradient_symmetricity_correct | num) - 1 | fabs < 1e-6' <<<"$output"
	# Causal softmax attention weighs x and y by their own scores.
	train-transformer --data d.st --d-model 8 --heads 2 --d-mlp 16 --steps 20 --log-every 20 --ckpt-dir c1 > log
	run -0 progress-measures --data d.st c1/step-00000020.safetensors
	assert_jq 'select(.record == "progress") | .gradient_symmetricity | num < 0.999' <<<"$output"
}
