#!/usr/bin/env bats
# hess-eig: records, methods, trace, density, eigenvectors, and bad inputs.

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-dir ck > log
}

@test "hess-eig --help and --version" {
	run hess-eig --help
	assert_success
	assert_line --index 0 --partial "usage: hess-eig --data FILE"
	run hess-eig --version
	assert_output --regexp '^hess-eig [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "hess-eig: one record per checkpoint, top eigenvalues descending and converged" {
	run hess-eig --data d.st ck/step-00000020.safetensors ck/step-00000040.safetensors
	assert_success
	assert_equal "${#lines[@]}" 3
	assert_equal "$(jq -r .record <<<"${lines[0]}")" header
	assert_equal "$(jq -r .inputs.data <<<"${lines[0]}")" "$(sha256sum d.st | cut -d' ' -f1)"
	for i in 1 2; do
		l=${lines[$i]}
		assert_equal "$(jq -r '.record + " " + .set + " " + (.converged | tostring)' <<<"$l")" "hessian train true"
		assert_equal "$(jq '.eigenvalues | length' <<<"$l")" 5
		assert_jq '.eigenvalues == (.eigenvalues | sort | reverse)' <<<"$l"
		assert_jq '[.residuals[] | num < 1e-3] | all' <<<"$l"
		assert_jq '(.eigenvalues | map(num) | length) == 5' <<<"$l"
		assert_jq '(.hvps | num) > 5' <<<"$l"
	done
	assert_equal "$(jq -r .step <<<"${lines[2]}")" 40
	assert_equal "$(jq -r .checkpoint_sha256 <<<"${lines[2]}")" "$(sha256sum ck/step-00000040.safetensors | cut -d' ' -f1)"
}

@test "hess-eig reads checkpoint paths from standard input" {
	ls ck/*.safetensors | hess-eig --data d.st --top 2 > out
	assert_equal "$(jq -s 'map(select(.record == "hessian") | .step)' out | jq -c .)" "[0,20,40]"
}

@test "hess-eig --which both: the most negative eigenvalues too" {
	run hess-eig --data d.st --which both --top 3 ck/step-00000040.safetensors
	assert_success
	l=${lines[1]}
	assert_equal "$(jq '.bottom_eigenvalues | length' <<<"$l")" 3
	assert_jq '.bottom_eigenvalues == (.bottom_eigenvalues | map(num) | sort)' <<<"$l"
	assert_jq '(.bottom_eigenvalues[0] | num) < (.eigenvalues[2] | num)' <<<"$l"
}

@test "hess-eig --method power agrees with Lanczos on the top eigenvalue" {
	a=$(hess-eig --data d.st --top 1 --tol 1e-8 --max-iter 300 ck/step-00000040.safetensors | tail -1 | jq '.eigenvalues[0]')
	b=$(hess-eig --data d.st --top 1 --method power --tol 1e-9 --max-iter 2000 ck/step-00000040.safetensors | tail -1 | jq '.eigenvalues[0]')
	assert_jq -n --argjson a "$a" --argjson b "$b" '(($a | num) - ($b | num) | fabs) / $a < 1e-4'
}

@test "hess-eig --trace and --density" {
	run hess-eig --data d.st --trace --probes 50 --density --slq-probes 3 --slq-iter 20 --grid 200 ck/step-00000040.safetensors
	assert_success
	l=${lines[1]}
	assert_jq '.trace.probes == 50 and (.trace.stderr | num) > 0 and (.trace.mean | num) != null' <<<"$l"
	assert_equal "$(jq '.density.grid | length' <<<"$l")" 200
	assert_equal "$(jq '.density.nodes | length' <<<"$l")" 3
	assert_jq '[.density.weights[] | map(num) | add] | map(. > 0.999999 and . < 1.000001) | all' <<<"$l"
	# the density integrates to one
	assert_jq '((.density.grid[1] | num) - (.density.grid[0] | num)) * (.density.values | map(num) | add) | . > 0.99 and . < 1.01' <<<"$l"
}

@test "hess-eig: the same seed gives the same numbers" {
	hess-eig --data d.st --trace --probes 10 ck/step-00000040.safetensors | tail -1 | jq -c 'del(.seconds, .peak_rss_mib)' > a
	hess-eig --data d.st --trace --probes 10 ck/step-00000040.safetensors | tail -1 | jq -c 'del(.seconds, .peak_rss_mib)' > b
	hess-eig --data d.st --trace --probes 10 --seed 1 ck/step-00000040.safetensors | tail -1 | jq -c 'del(.seconds, .peak_rss_mib)' > c
	cmp a b
	assert_files_differ a c
}

@test "hess-eig --eigvecs writes the top eigenvectors named like the parameters" {
	hess-eig --data d.st --top 3 --eigvecs v.st ck/step-00000040.safetensors > out
	h=$(st_header v.st)
	assert_equal "$(jq -c '.["layers.0.weight"].shape' <<<"$h")" "[3,12,22]"
	assert_equal "$(jq -c '.["layers.2.bias"].shape' <<<"$h")" "[3,11]"
	assert_equal "$(jq -c '.__metadata__.eigenvalues | fromjson | length' <<<"$h")" 3
	run hess-eig --data d.st --eigvecs v.st ck/step-00000020.safetensors ck/step-00000040.safetensors
	assert_failure 2
	assert_line --index 0 "hess-eig: --eigvecs v.st: with several checkpoints the name must contain {step}"
	hess-eig --data d.st --top 1 --eigvecs 'v-{step}.st' ck/step-00000020.safetensors ck/step-00000040.safetensors > out
	assert_file_exists v-00000020.st
	assert_file_exists v-00000040.st
}

@test "hess-eig: dead units counted; the solve on the live parameters = the one on all of them" {
	train-mlp --data d.st --depth 6 --width 12 --steps 60 --log-every 60 --ckpt-dir deep > /dev/null
	c=deep/step-00000060.safetensors
	a=$(hess-eig --data d.st --which both --top 4 --tol 1e-9 --max-iter 400 --eigvecs v.st "$c" | tail -1)
	# --batch below the 60 training rows: products batch by batch, over every parameter
	b=$(hess-eig --data d.st --which both --top 4 --tol 1e-9 --max-iter 400 --batch 7 "$c" | tail -1)
	assert_equal "$(jq '.dead_units | length' <<<"$a")" 6
	assert_jq '.dead_units | map(num) | add > 0' <<<"$a"
	assert_equal "$(jq -c .dead_units <<<"$a")" "$(jq -c .dead_units <<<"$b")"
	assert_jq -n --argjson a "$a" --argjson b "$b" '[range(4) as $i | ($a.eigenvalues[$i] | num) - ($b.eigenvalues[$i] | num),
	    ($a.bottom_eigenvalues[$i] | num) - ($b.bottom_eigenvalues[$i] | num) | fabs] | max < 1e-6 * ($a.eigenvalues[0] | fabs)'
	# the top eigenvector is exactly zero on the dead units of layer 1, and only there
	zeros=$(st_values v.st layers.1.bias f4 | head -12 | awk '$1 == 0' | wc -l)
	assert_equal "$zeros" "$(jq '.dead_units[1]' <<<"$a")"
}

@test "hess-eig --set all: the products over both parts at once = batch by batch" {
	# two parts, so no live view: each part prepared once (the default) against
	# --batch 7, products batch by batch (checked against the live view above)
	a=$(hess-eig --data d.st --set all --which both --top 3 --tol 1e-9 --max-iter 400 ck/step-00000040.safetensors | tail -1)
	b=$(hess-eig --data d.st --set all --which both --top 3 --tol 1e-9 --max-iter 400 --batch 7 ck/step-00000040.safetensors | tail -1)
	assert_equal "$(jq .n <<<"$a")" 121
	assert_jq -n --argjson a "$a" --argjson b "$b" '[range(3) as $i | ($a.eigenvalues[$i] | num) - ($b.eigenvalues[$i] | num),
	    ($a.bottom_eigenvalues[$i] | num) - ($b.bottom_eigenvalues[$i] | num) | fabs] | max < 1e-6 * ($a.eigenvalues[0] | fabs)'
}

bad() {
	run hess-eig "$@"
	assert_failure 2
	assert_line --index 0 "$EXPECTED"
	assert_line --index 1 "Try 'hess-eig --help' for more information."
}

@test "hess-eig: no --data" { EXPECTED="hess-eig: --data FILE is required (the data set the checkpoints were trained on)" bad ck/step-00000040.safetensors; }
@test "hess-eig: top 0" { EXPECTED="hess-eig: --top: 0 is out of range (allowed: 1..500)" bad --data d.st --top 0 x; }
@test "hess-eig: unknown which" { EXPECTED="hess-eig: --which: unknown value 'middle' (allowed: top, bottom, both)" bad --data d.st --which middle x; }
@test "hess-eig: unknown set" { EXPECTED="hess-eig: --set: unknown value 'val' (allowed: train, test, all)" bad --data d.st --set val x; }
@test "hess-eig: tol 0" { EXPECTED="hess-eig: --tol: 0 is out of range (allowed: strictly between 0 and 1)" bad --data d.st --tol 0 x; }
@test "hess-eig: power with both ends" {
	EXPECTED="hess-eig: --method power finds the largest eigenvalues only; use --method lanczos for --which both" bad --data d.st --method power --which both x
}

@test "hess-eig: a checkpoint for another p" {
	gen-modadd -p 7 -o d7.st
	run --separate-stderr hess-eig --data d7.st ck/step-00000040.safetensors
	assert_failure 1
	assert_stderr "hess-eig: ck/step-00000040.safetensors: a model for p = 11, but the data set has p = 7"
}

@test "hess-eig: a checkpoint trained on other data, unless --any-data" {
	gen-modadd -p 11 --frac 0.5 --seed 3 -o other.st
	run --separate-stderr hess-eig --data other.st ck/step-00000040.safetensors
	assert_failure 1
	assert_stderr --partial "hess-eig: ck/step-00000040.safetensors: trained on data"
	assert_stderr --partial -- "--any-data to analyse anyway"
	run hess-eig --data other.st --any-data --top 1 ck/step-00000040.safetensors
	assert_success
}

@test "hess-eig: not a checkpoint" {
	run --separate-stderr hess-eig --data d.st d.st
	assert_failure 1
	assert_stderr "hess-eig: d.st: no 'depth' in the metadata (not a train-mlp or train-transformer checkpoint?)"
}

@test "hess-eig: a truncated checkpoint" {
	head -c $(( $(stat -c %s ck/step-00000040.safetensors) - 7 )) ck/step-00000040.safetensors > t.st
	run --separate-stderr hess-eig --data d.st t.st
	assert_failure 1
	assert_stderr --regexp '^hess-eig: t.st: truncated data: [0-9]+ of [0-9]+ bytes$'
}

@test "hess-eig: a checkpoint with wrong shapes" {
	# (enough data for the 147 parameters, so the shapes are what is wrong)
	st_raw '{"__metadata__":{"p":"11","depth":"1","width":"4","encoding":"onehot","loss":"ce","step":"0"},"layers.0.weight":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]},"pad":{"dtype":"U8","shape":[540],"data_offsets":[48,588]}}' 588 > w.st
	run --separate-stderr hess-eig --data d.st w.st
	assert_failure 1
	assert_stderr "hess-eig: w.st: tensor 'layers.0.weight' has shape [4, 3], expected [4, 22] (-1: any) (model: p=11 depth=1 width=4 onehot)"
}

@test "hess-eig: a missing checkpoint" {
	run --separate-stderr hess-eig --data d.st nope.st
	assert_failure 1
	assert_stderr "hess-eig: nope.st: No such file or directory"
}

@test "hess-eig --start previous: a run's checkpoints in order, the same eigenvalues in fewer products" {
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-every 2 --ckpt-dir walk > /dev/null
	ls walk/*.safetensors | tail -6 > list
	hess-eig --data d.st --tol 1e-6 --converge value < list > cold
	hess-eig --data d.st --tol 1e-6 --converge value --start previous < list > warm
	assert_equal "$(jq -r 'select(.record == "header") | .config.start' warm)" previous
	# the first from the seed's Gaussian, each later one from the one before it
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | .start.kind)' warm)" \
	    '["random","previous","previous","previous","previous","previous"]'
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | .start.step)' warm)" '[null,30,32,34,36,38]'
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | .start.guides)' warm)" '[null,5,5,5,5,5]'
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | .start.kind) | unique' cold)" '["random"]'
	# every eigenvalue the random start's to the tolerance, every solve converged
	assert_jq -s --slurpfile c cold '[., $c] | map(map(select(.record == "hessian")))
	    | [transpose[] | [.[0].eigenvalues, .[1].eigenvalues] | transpose[]
	       | ((.[0] | num) - (.[1] | num) | fabs) / (.[1] | fabs) < 1e-5] | all' warm
	assert_jq -s 'map(select(.record == "hessian") | .converged) | all' warm
	# fewer products over the walk after the first
	cold_n=$(jq -s 'map(select(.record == "hessian") | .hvps) | .[1:] | add' cold)
	warm_n=$(jq -s 'map(select(.record == "hessian") | .hvps) | .[1:] | add' warm)
	assert [ "$warm_n" -lt "$cold_n" ]
	# deterministic: the same list and seed, the same records
	hess-eig --data d.st --tol 1e-6 --converge value --start previous < list > again
	assert_equal "$(jq -c 'del(.seconds, .peak_rss_mib)' again)" "$(jq -c 'del(.seconds, .peak_rss_mib)' warm)"
}

@test "hess-eig --start: previous is Lanczos's, and a bad value is a usage error" {
	run hess-eig --data d.st --method power --start previous ck/step-00000040.safetensors
	assert_failure 2
	assert_output --partial "--start applies to --method lanczos"
	run hess-eig --data d.st --start warm ck/step-00000040.safetensors
	assert_failure 2
	assert_output --partial "--start"
}

@test "hess-eig --start previous --blocks --precond: every solve warm-started, the same values" {
	train-mlp --data d.st --steps 40 --log-every 20 --width 12 --ckpt-every 2 --ckpt-optim --ckpt-dir wo > /dev/null
	ls wo/*.safetensors | tail -4 > list
	flags=(--data d.st --top 3 --tol 1e-6 --converge value --blocks --probes 5 --precond)
	hess-eig "${flags[@]}" < list > cold
	hess-eig "${flags[@]}" --start previous < list > warm
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | [.start.kind, .precond.start.kind, (.blocks | map(.start.kind) | unique)])' warm)" \
	    '[["random","random",["random"]],["previous","previous",["previous"]],["previous","previous",["previous"]],["previous","previous",["previous"]]]'
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | [.precond.start.step, .blocks[0].start.step])' warm)" \
	    '[[null,null],[34,34],[36,36],[38,38]]'
	# each block's and the preconditioned top eigenvalue: the random start's to the tolerance
	assert_jq -s --slurpfile c cold '[., $c] | map(map(select(.record == "hessian")
	    | [.precond.lambda_max, (.blocks[] | .eigenvalues[])] ))
	    | [transpose[] | transpose[] | ((.[0] | num) - (.[1] | num) | fabs) / (.[1] | fabs) < 1e-5] | all' warm
	# the trace's probes are the random start's: the same draws
	assert_equal "$(jq -c 'select(.record == "hessian") | .trace.mean' warm)" "$(jq -c 'select(.record == "hessian") | .trace.mean' cold)"
}
