#!/usr/bin/env bats
# llc-estimate: records, determinism, chains, traces, diagnostics and bad inputs.

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-dir ck > log
}

@test "llc-estimate --help and --version" {
	run llc-estimate --help
	assert_success
	assert_line --index 0 --partial "usage: llc-estimate --data FILE"
	assert_output --partial "llc = NB (mean over draws of L_batch(w) - L(w*))"
	run llc-estimate --version
	assert_output --regexp '^llc-estimate [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "llc-estimate: one record per checkpoint with the estimate, its chains and the settings" {
	run llc-estimate --data d.st --chains 4 --draws 30 ck/step-00000020.safetensors ck/step-00000040.safetensors
	assert_success
	assert_equal "${#lines[@]}" 3
	assert_equal "$(jq -r .record <<<"${lines[0]}")" header
	assert_equal "$(jq -c .config <<<"${lines[0]}")" '{"chains":4,"draws":30,"burn_in":0,"thin":1,"batch":32,"epsilon":0.001,"gamma":100,"nbeta":9.233248261689365,"explode":null}'
	l=${lines[2]}
	assert_equal "$(jq -r '.record + " " + (.step | tostring) + " " + (.chains_ok | tostring)' <<<"$l")" "llc 40 4"
	assert_equal "$(jq '.llc_per_chain | length' <<<"$l")" 4
	assert_jq '(.llc_per_chain | map(num) | add / length) - (.llc_mean | num) | fabs < 1e-9' <<<"$l"
	# the spread over chains: sample standard deviation (n - 1) and its standard error
	assert_jq '(.llc_per_chain | map(num)) as $x | ($x | add / length) as $m
	    | ([$x[] | (. - $m) * (. - $m)] | add / ($x | length - 1) | sqrt) as $sd
	    | ((.llc_std | num) - $sd | fabs) < 1e-9 * $sd and ((.llc_stderr | num) - $sd / 2 | fabs) < 1e-9 * $sd' <<<"$l"
	assert_jq '.chains | map(.steps) == [30, 30, 30, 30]' <<<"$l"
	assert_jq '.settings.explode == (11 | log)' <<<"$l"
	assert_jq '(.explode_at | num) - (.init_loss | num) - (11 | log) | fabs < 1e-12' <<<"$l"
	assert_jq '.steps == 120 and (.init_loss | num) > 0 and (.llc_std | num) >= 0' <<<"$l"
	# The estimate is nbeta (mean draw loss - L(w*)), chain by chain.
	assert_jq '[.chains[] as $c | ($c.llc | num) - .settings.nbeta * (($c.loss_mean | num) - .init_loss) | fabs < 1e-9] | all' <<<"$l"
	assert_equal "$(jq -r .checkpoint_sha256 <<<"$l")" "$(sha256sum ck/step-00000040.safetensors | cut -d' ' -f1)"
}

@test "llc-estimate: one chain has no spread: its standard deviation is null (NaN), not 0" {
	l=$(llc-estimate --data d.st --chains 1 --draws 5 ck/step-00000040.safetensors | tail -1)
	assert_equal "$(jq -c '[.llc_std, .llc_stderr]' <<<"$l")" '[null,null]'
	assert_jq '(.llc_mean | num) == .llc_per_chain[0]' <<<"$l"
}

@test "llc-estimate: the same seed gives the same estimates; another seed others" {
	a=$(llc-estimate --data d.st --chains 3 --draws 20 --seed 5 ck/step-00000040.safetensors | tail -1 | jq -c .llc_per_chain)
	b=$(llc-estimate --data d.st --chains 3 --draws 20 --seed 5 ck/step-00000040.safetensors | tail -1 | jq -c .llc_per_chain)
	c=$(llc-estimate --data d.st --chains 3 --draws 20 --seed 6 ck/step-00000040.safetensors | tail -1 | jq -c .llc_per_chain)
	assert_equal "$a" "$b"
	assert_not_equal "$a" "$c"
}

@test "llc-estimate: a chain does not depend on how many chains run" {
	a=$(llc-estimate --data d.st --chains 2 --draws 20 ck/step-00000040.safetensors | tail -1 | jq -c .llc_per_chain)
	b=$(llc-estimate --data d.st --chains 5 --draws 20 ck/step-00000040.safetensors | tail -1 | jq -c '.llc_per_chain[:2]')
	assert_equal "$a" "$b"
}

@test "llc-estimate reads checkpoint paths from standard input" {
	ls ck/*.safetensors | llc-estimate --data d.st --chains 2 --draws 5 > out
	assert_equal "$(jq -s -c 'map(select(.record == "llc") | .step)' out)" "[0,20,40]"
}

@test "llc-estimate --trace writes every draw's loss; the record's means are the trace's" {
	llc-estimate --data d.st --chains 3 --draws 25 --burn-in 7 --thin 2 --trace t.st ck/step-00000040.safetensors > out
	assert_equal "$(st_header t.st | jq -c '[.loss.dtype, .loss.shape, .__metadata__.format, .__metadata__.step]')" '["F64",[3,25],"grokkit-llc-trace-v1","40"]'
	means=$(st_values t.st loss f8 8 | jq -s -c '[range(3) as $c | .[$c * 25:($c + 1) * 25] | add / 25]')
	assert_jq --argjson m "$means" '[.chains[].loss_mean] as $o | [range(3) as $i | ($o[$i] | num) - ($m[$i] | num) | fabs < 1e-9] | all' <(tail -1 out)
	assert_equal "$(tail -1 out | jq '.chains[0].steps')" $((7 + 25 * 2))
}

@test "llc-estimate --trace with several checkpoints needs {step}" {
	run llc-estimate --data d.st --trace t.st ck/step-00000020.safetensors ck/step-00000040.safetensors
	assert_failure 2
	assert_line --index 0 "llc-estimate: --trace t.st: with several checkpoints the name must contain {step}"
	llc-estimate --data d.st --chains 2 --draws 5 --trace 't-{step}.st' ck/step-00000020.safetensors ck/step-00000040.safetensors > out
	assert_file_exists t-00000020.st
	assert_file_exists t-00000040.st
}

@test "llc-estimate: a step size that blows up is flagged, not hidden" {
	run --separate-stderr llc-estimate --data d.st --chains 2 --draws 50 --epsilon 1 --gamma 1 ck/step-00000040.safetensors
	assert_success
	assert_stderr --partial "of 2 chains left the basin"
	l=${lines[1]}
	assert_equal "$(jq '.chains_left' <<<"$l")" 2
	assert_jq '[.chains[] | .left_basin and ((.exploded_fraction | num) > 0 or (.nonfinite_fraction | num) > 0)] | all' <<<"$l"
}

@test "llc-estimate --explode sets the margin over L(w*)" {
	l=$(llc-estimate --data d.st --chains 2 --draws 20 --explode 1e-9 ck/step-00000040.safetensors 2>/dev/null | tail -1)
	assert_equal "$(jq '.settings.explode' <<<"$l")" 1e-09
	assert_equal "$(jq '.chains_left' <<<"$l")" 2
	l=$(llc-estimate --data d.st --chains 2 --draws 20 --explode 1e9 ck/step-00000040.safetensors | tail -1)
	assert_jq '[.chains[].exploded_fraction] == [0, 0]' <<<"$l"
}

@test "llc-estimate: an untrained checkpoint's chains stay in the basin at the defaults" {
	run --separate-stderr llc-estimate --data d.st ck/step-00000000.safetensors
	assert_success
	assert_stderr ''
	assert_equal "$(jq '.chains_left' <<<"${lines[1]}")" 0
}

bad() {
	run llc-estimate "$@"
	assert_failure 2
	assert_line --index 0 "$EXPECTED"
	assert_line --index 1 "Try 'llc-estimate --help' for more information."
}

@test "llc-estimate: no --data" { EXPECTED="llc-estimate: --data FILE is required (the data set the checkpoints were trained on)" bad ck/step-00000040.safetensors; }
@test "llc-estimate: chains 0" { EXPECTED="llc-estimate: --chains: 0 is out of range (allowed: 1..10000)" bad --data d.st --chains 0 x; }
@test "llc-estimate: draws 0" { EXPECTED="llc-estimate: --draws: 0 is out of range (allowed: 1..10000000)" bad --data d.st --draws 0 x; }
@test "llc-estimate: epsilon 0" { EXPECTED="llc-estimate: --epsilon: 0 is not in (0, 1]" bad --data d.st --epsilon 0 x; }
@test "llc-estimate: epsilon 2" { EXPECTED="llc-estimate: --epsilon: 2 is out of range (allowed: 0..1)" bad --data d.st --epsilon 2 x; }
@test "llc-estimate: negative gamma" { EXPECTED="llc-estimate: --gamma: -1 is out of range (allowed: 0..1e+12)" bad --data d.st --gamma -1 x; }
@test "llc-estimate: nbeta 0" { EXPECTED="llc-estimate: --nbeta: 0 is out of range (allowed: strictly between 0 and 1e+12)" bad --data d.st --nbeta 0 x; }
@test "llc-estimate: nbeta nan" { EXPECTED="llc-estimate: --nbeta: 'nan' is not a finite number" bad --data d.st --nbeta nan x; }
@test "llc-estimate: batch 1 without nbeta" { EXPECTED="llc-estimate: --batch 1 has no default --nbeta (M / ln M); give --nbeta" bad --data d.st --batch 1 x; }
@test "llc-estimate: a localisation that diverges on its own" {
	EXPECTED="llc-estimate: --epsilon 0.1 with --gamma 100: the localisation alone diverges (it needs epsilon * gamma < 4)" bad --data d.st --epsilon 0.1 x
}
@test "llc-estimate: too many steps per chain" {
	EXPECTED="llc-estimate: --burn-in + --draws * --thin is 1000000000 steps per chain, more than 100000000" bad --data d.st --draws 10000000 --thin 100 x
}

@test "llc-estimate: a batch larger than the training set" {
	run --separate-stderr llc-estimate --data d.st --batch 100 ck/step-00000040.safetensors
	assert_failure 1
	assert_stderr "llc-estimate: --batch 100 is more than the 61 training rows of d.st"
}

@test "llc-estimate: a checkpoint for another p" {
	gen-modadd -p 7 -o d7.st
	run --separate-stderr llc-estimate --data d7.st ck/step-00000040.safetensors
	assert_failure 1
	assert_stderr "llc-estimate: ck/step-00000040.safetensors: a model for p = 11, but the data set has p = 7"
}

@test "llc-estimate: a checkpoint trained on other data, unless --any-data" {
	gen-modadd -p 11 --frac 0.5 --seed 3 -o other.st
	run --separate-stderr llc-estimate --data other.st ck/step-00000040.safetensors
	assert_failure 1
	assert_stderr --partial -- "--any-data to analyse anyway"
	run llc-estimate --data other.st --any-data --chains 2 --draws 5 ck/step-00000040.safetensors
	assert_success
}

@test "llc-estimate: not a checkpoint, truncated, missing" {
	run --separate-stderr llc-estimate --data d.st d.st
	assert_failure 1
	assert_stderr "llc-estimate: d.st: no 'depth' in the metadata (not a train-mlp or train-transformer checkpoint?)"
	head -c $(( $(stat -c %s ck/step-00000040.safetensors) - 7 )) ck/step-00000040.safetensors > t.st
	run --separate-stderr llc-estimate --data d.st t.st
	assert_failure 1
	assert_stderr --regexp '^llc-estimate: t.st: truncated data: [0-9]+ of [0-9]+ bytes$'
	run --separate-stderr llc-estimate --data d.st nope.st
	assert_failure 1
	assert_stderr "llc-estimate: nope.st: No such file or directory"
}

@test "llc-estimate: a checkpoint with a NaN weight" {
	st_raw '{"__metadata__":{"p":"11","depth":"0","width":"4","encoding":"onehot","loss":"ce","step":"0"},"layers.0.weight":{"dtype":"F32","shape":[11,22],"data_offsets":[0,968]},"layers.0.bias":{"dtype":"F32","shape":[11],"data_offsets":[968,1012]}}' 1012 > n.st
	printf '\x00\x00\xc0\x7f' | dd of=n.st bs=1 seek=$(( $(stat -c %s n.st) - 4 )) conv=notrunc 2>/dev/null
	run --separate-stderr llc-estimate --data d.st --any-data n.st
	assert_failure 1
	assert_stderr --partial "llc-estimate: n.st: tensor 'layers.0.bias'"
}
