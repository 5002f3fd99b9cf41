#!/usr/bin/env bats
# The study's make graph, end to end at a tiny size in a temporary directory:
# every expected file, a second make that does nothing, and a changed
# parameter that redoes exactly what depends on it.

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	O=$(cd "$GROK_BIN/.." && pwd)
	SAN=
	[[ $O == */asan ]] && SAN=address,undefined
	ARGS=(-C "$ROOT" O="$O" SAN="$SAN" P=7 FRAC=0.5 STEPS=40 DEPTHS="1 2" SEEDS="0 1" CKPT_POINTS=3
	      R="$BATS_TEST_TMPDIR/results" PL="$BATS_TEST_TMPDIR/plots")
}

# The tool invocations a make printed, counted by tool.
invocations() {
	grep -oE 'bin/(gen-modadd|train-mlp|hess-eig|gop-spectrum|summarize)|gnuplot -e' | sort | uniq -c |
		sed -E 's/^ *([0-9]+) (.*)$/\2=\1/' | tr '\n' ' '
}

@test "study: a tiny make all makes every file, then nothing, then only what a parameter touches" {
	run make -j2 all "${ARGS[@]}"
	assert_success
	for f in results/data/grok.safetensors results/data/seed.safetensors results/runs.jsonl results/runs.tsv \
	    results/by-depth.jsonl results/by-depth.tsv plots/by-depth.png; do
		assert_file_exist "$f"
	done
	for r in grok seed; do
		for d in 1 2; do
			for s in 0 1; do
				for f in log.jsonl hessian.jsonl gop.jsonl curves.tsv hessian.tsv gop.tsv; do
					assert_file_exist "results/$r/d$d-s$s/$f"
				done
				[ "$(ls results/$r/d$d-s$s/ckpt | wc -l)" -eq 4 ]   # steps 0, 3, 12 (rounded), 40
			done
		done
		for k in accuracy loss sharpness grad-norm gop-spectral gop-rank gop-spectrum; do
			assert_file_exist "plots/$r-$k.png"
		done
	done
	[ "$(jq -s 'map(select(.record == "run")) | length' results/runs.jsonl)" -eq 8 ]
	[ -z "$(find results plots -name '*+' -o -name '.*.tmp.*')" ]

	run make -j2 all "${ARGS[@]}"
	assert_success
	[ -z "$(invocations <<<"$output")" ]

	run make -j2 all "${ARGS[@]}" GOP_FLAGS="--top 4"
	assert_success
	[ "$(invocations <<<"$output")" = "bin/gop-spectrum=8 bin/summarize=4 gnuplot -e=15 " ]

	run make -j2 all "${ARGS[@]}" GOP_FLAGS="--top 4" HESS_FLAGS="--top 2"
	assert_success
	[ "$(invocations <<<"$output")" = "bin/hess-eig=8 bin/summarize=4 gnuplot -e=15 " ]
}
