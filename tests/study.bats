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
	      LLC_FLAGS="--chains 2 --draws 20 --batch 8" R="$BATS_TEST_TMPDIR/results" PL="$BATS_TEST_TMPDIR/plots")
}

# The tool invocations a make printed, counted by tool.
invocations() {
	grep -oE 'bin/(gen-modadd|train-mlp|hess-eig|gop-spectrum|llc-estimate|summarize)|gnuplot -e' | sort | uniq -c |
		sed -E 's/^ *([0-9]+) (.*)$/\2=\1/' | tr '\n' ' '
}

@test "study: a tiny make all makes every file, then nothing, then only what a parameter touches" {
	run make -j2 all "${ARGS[@]}"
	assert_success
	for f in results/data/grok.safetensors results/data/seed.safetensors results/runs.jsonl results/runs.tsv \
	    results/by-depth.jsonl results/by-depth.tsv plots/by-depth.png results/llc-calibration.tsv \
	    plots/llc-calibration.png plots/grok-llc.png; do
		assert_file_exist "$f"
	done
	for r in grok seed; do
		for d in 1 2; do
			for s in 0 1; do
				for f in log.jsonl hessian.jsonl gop.jsonl curves.tsv hessian.tsv gop.tsv; do
					assert_file_exist "results/$r/d$d-s$s/$f"
				done
				[ "$(ls results/$r/d$d-s$s/ckpt | wc -l)" -eq 4 ]   # steps 0, 3, 12 (rounded), 40
				if [ $r = grok ]; then
					[ "$(jq -s 'map(select(.record == "llc")) | length' results/$r/d$d-s$s/llc.jsonl)" -eq 4 ]
				else
					assert_file_not_exist "results/$r/d$d-s$s/llc.jsonl"   # LLC_RECIPES = grok
				fi
			done
		done
		for k in accuracy loss sharpness dead-units grad-norm gop-spectral gop-rank gop-spectrum; do
			assert_file_exist "plots/$r-$k.png"
		done
	done
	[ "$(jq -s 'map(select(.record == "run")) | length' results/runs.jsonl)" -eq 8 ]
	[ "$(jq -s 'map(select(.recipe == "grok") | .llc.final.step) | unique' -c results/runs.jsonl)" = "[40]" ]
	# every table: its header once, then one row per record (4 checkpoints; log points of 40 steps)
	for f in hessian gop llc; do
		[ "$(grep -c '^step' results/grok/d2-s0/$f.tsv)" -eq 1 ] && [ "$(wc -l < results/grok/d2-s0/$f.tsv)" -eq 5 ]
	done
	[ "$(grep -c '^step' results/grok/d2-s0/curves.tsv)" -eq 1 ]
	[ "$(head -1 results/grok/d2-s0/hessian.tsv | cut -f5)" = dead_frac ]
	# the calibration: one row per step size, on the last checkpoint of depth 2, seed 0
	[ "$(cut -f1 results/llc-calibration.tsv | tr '\n' ' ')" = "epsilon 1e-05 3e-05 0.0001 0.0003 0.001 0.003 " ]
	[ -z "$(find results plots -name '*+' -o -name '.*.tmp.*')" ]

	run make -j2 all "${ARGS[@]}"
	assert_success
	[ -z "$(invocations <<<"$output")" ]

	run make -j2 all "${ARGS[@]}" GOP_FLAGS="--top 4"
	assert_success
	[ "$(invocations <<<"$output")" = "bin/gop-spectrum=8 bin/summarize=4 gnuplot -e=17 " ]

	run make -j2 all "${ARGS[@]}" GOP_FLAGS="--top 4" HESS_FLAGS="--top 2"
	assert_success
	[ "$(invocations <<<"$output")" = "bin/hess-eig=8 bin/summarize=4 gnuplot -e=17 " ]

	run make -j2 all "${ARGS[@]}" GOP_FLAGS="--top 4" HESS_FLAGS="--top 2" LLC_FLAGS="--chains 2 --draws 21 --batch 8"
	assert_success
	[ "$(invocations <<<"$output")" = "bin/llc-estimate=5 bin/summarize=4 gnuplot -e=19 " ]
}

@test "study: interrupted by SIGINT and made again, it finishes without redoing finished work" {
	# 20000 steps take long enough to interrupt.
	A=("${ARGS[@]}" STEPS=20000 RECIPES=grok)
	setsid make -j2 all "${A[@]}" > first.out 2>&1 &
	pid=$!
	for _ in $(seq 600); do
		[ -n "$(find results -name log.jsonl 2>/dev/null)" ] && break
		sleep 0.05
	done
	kill -INT -- -"$pid"
	wait "$pid" || true
	done_before=$(find results -name '*.jsonl' -newer results/data/grok.safetensors | sort)
	[ -n "$done_before" ]
	[ -z "$(find results -name log.jsonl -size 0)" ]
	stat -c '%n %.9Y' $done_before > before
	run make -j2 all "${A[@]}"
	assert_success
	stat -c '%n %.9Y' $done_before | diff before -   # not one of them made again
	for f in $done_before; do
		[ "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" = '\n' ]   # whole, not cut off
	done
	# And the results equal those of a run never interrupted.
	run make -j2 all "${A[@]}" R="$BATS_TEST_TMPDIR/whole" PL="$BATS_TEST_TMPDIR/wplots"
	assert_success
	for f in $(cd whole && find . -name log.jsonl); do
		diff <(metrics "whole/$f") <(metrics "results/$f")
	done
}
