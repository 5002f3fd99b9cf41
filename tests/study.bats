#!/usr/bin/env bats
# The study's make graph, end to end at a tiny size in a temporary directory:
# every expected file, what it prints, a second make that does nothing, a
# changed parameter that redoes exactly what depends on it; and the
# README's first command from a fresh clone.

load test_helper
load standins

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	O=$(cd "$GROK_BIN/.." && pwd)
	SAN=
	[[ $O == */asan ]] && SAN=address,undefined
	# the MLPs at two depths and two seeds, and one tiny transformer (nanda, one layer, one seed)
	TINY=(P=11 FRAC=0.5 STEPS=40 DEPTHS="1 2" SEEDS="0 1" CKPT_POINTS=3 LLC_FLAGS="--chains 2 --draws 20 --batch 8"
	      LLC_CAL_MARGINS="20 5" LLC_CAL_SCALES="1 0.5" LLC_CAL_NBETAS="default" TFM_LLC_FLAGS="--chains 2 --draws 20 --batch 8 --epsilon 1e-5"
	      RECIPES="grok seed nanda" NANDA_P=11 LAYERS=1 TFM_STEPS=40 TFM_SEEDS=0 TFM_CKPT_POINTS=3)
	ARGS=(-C "$ROOT" O="$O" SAN="$SAN" "${TINY[@]}" R="$BATS_TEST_TMPDIR/results" PL="$BATS_TEST_TMPDIR/plots")
}

# The tool invocations a make printed (with V=1), counted by tool; the quiet
# build's own lines (a tool relinked: "LINK .../bin/hess-eig") are not runs.
invocations() {
	grep -vE '^ +(CC|AR|LINK|GEN) ' | grep -oE 'bin/(gen-modadd|train-mlp|train-transformer|hess-eig|gop-spectrum|llc-estimate|progress-measures|summarize)|gnuplot -e' | sort | uniq -c |
		sed -E 's/^ *([0-9]+) (.*)$/\2=\1/' | tr '\n' ' '
}

@test "study: a tiny make all makes every file, then nothing, then only what a parameter touches" {
	run make -j2 all "${ARGS[@]}"
	assert_success
	# quiet: a line per finished run, counted 1 to 9 however they finish, then the table
	assert_equal "$(invocations <<<"$output")" ""
	runs=$(grep -E '^\[ *[0-9]+/9\] ((grok|seed) d[12] s[01]|nanda d1 s0) +memorised +([0-9]+|—)  generalised ([0-9]+|—) +final test [01]\.[0-9]{2}  \([0-9]+ s\)$' <<<"$output")
	assert_equal "$(wc -l <<<"$runs")" 9
	assert_equal "$(sed -E 's/^\[ *([0-9]+).*/\1/' <<<"$runs" | sort -n | tr '\n' ' ')" "1 2 3 4 5 6 7 8 9 "
	assert_equal "$(grep -c '^\[' <<<"$output")" 9
	assert_line "The study in $BATS_TEST_TMPDIR/results: p = 11, 40 steps, depths 1 2, seeds 0 1."
	assert_line "nanda: p = 11, 40 steps, layers 1, seeds 0."
	assert_line "Depth: hidden layers of an MLP, blocks of a transformer."
	assert_line --regexp '^recipe +depth +memorised +generalised +generalised at +final test +peak sharpness λ₁ +LLC at the end$'
	for r in grok seed; do
		for d in 1 2; do
			assert_line --regexp "^$r +$d +[0-2]/2 +[0-2]/2 +.* [01]\.[0-9]{2}( ± [01]\.[0-9]{2})? +"
		done
	done
	assert_line --regexp '^seed +2 .* —$'   # no LLC for the control
	assert_line --regexp '^nanda +1 +[01]/1 +[01]/1 +.* [01]\.[0-9]{2} +'   # one seed: no ± 
	assert_line "Plots: $BATS_TEST_TMPDIR/plots/ (39 files; plots/README.md says what each shows)."
	assert_equal "$(grep -v '^make' <<<"$output" | tail -1)" "Tables: $BATS_TEST_TMPDIR/results/runs.tsv (per run), $BATS_TEST_TMPDIR/results/by-depth.tsv (per recipe and depth)."
	for f in results/data/grok.safetensors results/data/seed.safetensors results/runs.jsonl results/runs.tsv \
	    results/by-depth.jsonl results/by-depth.tsv plots/by-depth.png results/llc-calibration.tsv \
	    plots/llc-calibration.png plots/grok-llc.png plots/grok-llc-layers.png results/data/nanda.safetensors plots/nanda-llc.png \
	    plots/grok-progress.png plots/seed-progress.png plots/grok-fourier.png; do
		assert_file_exist "$f"
	done
	for r in grok seed; do
		for d in 1 2; do
			for s in 0 1; do
				for f in log.jsonl hessian.jsonl gop.jsonl curves.tsv hessian.tsv gop.tsv ggn.jsonl blocks.tsv ggn.tsv; do
					assert_file_exist "results/$r/d$d-s$s/$f"
				done
				assert_equal "$(ls results/$r/d$d-s$s/ckpt | wc -l)" 4   # steps 0, 3, 12 (rounded), 40
				if [ $r = grok ]; then
					assert_equal "$(jq -s 'map(select(.record == "llc")) | length' results/$r/d$d-s$s/llc.jsonl)" 4
				else
					assert_file_not_exist "results/$r/d$d-s$s/llc.jsonl"   # LLC_RECIPES = grok
				fi
			done
		done
		for k in accuracy loss sharpness dead-units grad-norm gop-spectral gop-rank gop-spectrum layers ggn; do
			assert_file_exist "plots/$r-$k.png"
		done
		for s in 0 1; do   # progress-measures on every MLP run (PM_RECIPES)
			assert_equal "$(jq -s 'map(select(.record == "progress")) | length' results/$r/d1-s$s/progress.jsonl)" 4
		done
	done
	# the transformer: trained by train-transformer, analysed as the MLPs, plotted without dead units
	assert_equal "$(head -1 results/nanda/d1-s0/log.jsonl | jq -r '.tool + " " + (.config.model.layers | tostring) + " " + .config.tag')" "train-transformer 1 nanda"
	# trained with 4 checkpoints (steps 0, 1, 6, 40): hess-eig reads every one, the GOP, LLC and
	# progress measures step 0 and those from step 30 on (TFM_CKPT_FROM at STUDY=small)
	assert_equal "$(ls results/nanda/d1-s0/ckpt | wc -l)" 4
	assert_equal "$(jq -sc 'map(select(.record == "hessian") | .step)' results/nanda/d1-s0/hessian.jsonl results/nanda/d1-s0/ggn.jsonl)" \
		"[0,1,6,40,0,1,6,40]"
	for f in gop llc progress; do
		assert_equal "$(jq -sc "map(select(.record == \"$f\") | .step)" results/nanda/d1-s0/$f.jsonl)" "[0,40]"
	done
	assert_equal "$(ls results/nanda/d1-s0/spectrum | tr '\n' ' ')" "step-00000000.safetensors step-00000040.safetensors "
	for k in accuracy loss sharpness grad-norm gop-spectral gop-rank gop-spectrum llc progress fourier layers ggn; do
		assert_file_exist "plots/nanda-$k.png"
	done
	assert_file_not_exist plots/nanda-dead-units.png
	assert_file_not_exist plots/seed-fourier.png   # integer inputs: no embedding
	# the new tables' headers
	assert_equal "$(head -1 results/grok/d2-s0/progress.tsv)" \
		"$(printf 'step\tloss_all\tloss_train\trestricted_loss\texcluded_loss\tkey_var_frac\tkeys\tembed_gini\tdistance_irrelevance\tgradient_symmetricity')"
	assert_equal "$(wc -l < results/grok/d2-s0/progress.tsv)" 5
	assert_equal "$(head -1 results/grok/d2-s0/fourier.tsv | cut -f1,2)" "$(printf 'k\tfirst (step 0)')"
	assert_equal "$(head -1 results/grok/d2-s0/fourier.tsv | awk -F'\t' '{ print $NF }')" "last (step 40)"
	assert_equal "$(wc -l < results/grok/d2-s0/fourier.tsv)" 6   # k = 1..5 at p = 11
	assert_equal "$(head -1 results/runs.tsv | cut -f18-)" \
		"$(printf 'restricted_step\texcluded_at_generalisation\tfinal_restricted_loss\tfinal_excluded_loss\tfinal_key_freqs\tblas_core\tfamily')"
	assert_equal "$(head -1 results/by-depth.tsv | awk -F'\t' '{ print $(NF - 9) }')" restricted_step_mean
	assert_equal "$(jq -s 'map(select(.record == "run" and .recipe == "nanda")) | .[0] | [.depth, (.progress | type)] | tostring' -r results/runs.jsonl)" '[1,"object"]'
	assert_equal "$(jq -s 'map(select(.record == "run")) | length' results/runs.jsonl)" 9
	assert_equal "$(jq -s 'map(select(.recipe == "grok") | .llc.final.step) | unique' -c results/runs.jsonl)" "[40]"
	# every table: its header once, then one row per record (4 checkpoints; log points of 40 steps)
	for f in hessian gop llc; do
		assert_equal "$(grep -c '^step' results/grok/d2-s0/$f.tsv)" 1
		assert_equal "$(wc -l < results/grok/d2-s0/$f.tsv)" 5
	done
	assert_equal "$(grep -c '^step' results/grok/d2-s0/curves.tsv)" 1
	assert_equal "$(head -1 results/grok/d2-s0/hessian.tsv | cut -f5)" dead_frac
	# the curvature views: the training kept Adam's state, so every checkpoint after step 0 has
	# its preconditioned sharpness; one block per layer; the GGN's top over the Hessian's
	assert_equal "$(head -1 results/grok/d2-s0/hessian.tsv | cut -f9,10)" "$(printf 'precond_lambda\tprecond_threshold')"
	assert_equal "$(jq -s 'map(select(.record == "hessian") | .precond.lambda_max != null) | tostring' -r results/grok/d2-s0/hessian.jsonl)" \
		'[false,true,true,true]'
	assert_equal "$(head -1 results/grok/d2-s0/blocks.tsv)" "$(printf 'step\tl:layers.0\tl:layers.1\tl:layers.2\tt:layers.0\tt:layers.1\tt:layers.2')"
	assert_equal "$(head -1 results/nanda/d1-s0/ggn.tsv)" "$(printf 'step\tggn_lambda1\thessian_lambda1\tratio')"
	assert_equal "$(jq -s 'map(select(.record == "hessian") | .matrix) | unique | tostring' -r results/grok/d2-s0/ggn.jsonl)" '["ggn"]'
	# the transformers' block traces on 5 probes (TFM_HESS_FLAGS), the MLPs' on 20
	assert_equal "$(jq -r 'select(.record == "header") | .config.probes' results/nanda/d1-s0/hessian.jsonl results/grok/d1-s0/hessian.jsonl | tr '\n' ' ')" "5 20 "
	assert_equal "$(jq -s 'map(select(.record == "run") | .curvature.peak_block | type) | unique | tostring' -r results/runs.jsonl)" '["string"]'
	# the calibration: one row per (depth, nbeta, margin, scale) on the last checkpoint of seed 0, the study's point marked
	assert_equal "$(cut -f1,3,10,11 results/llc-calibration.tsv | tr '\t\n' ', ')" \
	    "depth,margin,chosen,scale 1,20,1,1 1,20,0,0.5 1,5,0,1 1,5,0,0.5 2,20,1,1 2,20,0,0.5 2,5,0,1 2,5,0,0.5 "
	assert_equal "$(cat results/llc-calibration-d1.tsv results/llc-calibration-d2.tsv | grep -vc '^depth')" 8
	# one layer's LLC through training at depth 2: layers 0-2, each at the 4 checkpoints
	assert_equal "$(cut -f1 results/grok/d2-s0/llc-layers.tsv | sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' ')" "0=4 1=4 2=4 layer=1 "
	assert_equal "$(find results plots -name '*+' -o -name '.*.tmp.*')" ""

	run make -j2 all "${ARGS[@]}" V=1
	assert_success
	assert_equal "$(invocations <<<"$output")" ""
	refute_line --regexp '^\[[0-9]+/9\]'   # no run redone
	assert_line --regexp '^grok +2 '   # the table, again

	run make -j2 all "${ARGS[@]}" V=1 GOP_FLAGS="--top 4"
	assert_success
	assert_equal "$(invocations <<<"$output")" "bin/gop-spectrum=9 bin/summarize=4 gnuplot -e=30 "

	run make -j2 all "${ARGS[@]}" V=1 GOP_FLAGS="--top 4" HESS_FLAGS="--top 2"
	assert_success
	assert_equal "$(invocations <<<"$output")" "bin/hess-eig=9 bin/summarize=4 gnuplot -e=33 "

	run make -j2 all "${ARGS[@]}" V=1 GOP_FLAGS="--top 4" HESS_FLAGS="--top 2" LLC_FLAGS="--chains 2 --draws 21 --batch 8"
	assert_success
	# the 4 grok runs, the calibration's 2 depths and the per-layer run (a loop each), not nanda (TFM_LLC_FLAGS)
	assert_equal "$(invocations <<<"$output")" "bin/llc-estimate=7 bin/summarize=4 gnuplot -e=34 "

	# every checkpoint of the transformer: its GOP, LLC and progress measures again, at all four steps
	run make -j2 all "${ARGS[@]}" V=1 GOP_FLAGS="--top 4" HESS_FLAGS="--top 2" LLC_FLAGS="--chains 2 --draws 21 --batch 8" TFM_CKPT_FROM=0
	assert_success
	assert_equal "$(invocations <<<"$output")" "bin/gop-spectrum=1 bin/llc-estimate=1 bin/progress-measures=1 bin/summarize=4 gnuplot -e=33 "
	for f in gop llc progress; do
		assert_equal "$(jq -sc "map(select(.record == \"$f\") | .step)" results/nanda/d1-s0/$f.jsonl)" "[0,1,6,40]"
	done
}

# The commands `make -n all` prints at a study's defaults, continued lines joined.
planned() {
	make -n all -C "$ROOT" O="$O" SAN="$SAN" R="$BATS_TEST_TMPDIR/results" PL="$BATS_TEST_TMPDIR/plots" "$@" |
		sed -e ':a' -e '/\\$/N; s/\\\n//; ta'
}

@test "study: the defaults' transformers as make -n plans them: small (GOP, LLC and progress from step 30), full (every checkpoint)" {
	run planned
	assert_success
	tfm=$(grep -E '/bin/train-transformer ' <<<"$output")
	assert_equal "$(wc -l <<<"$tfm")" 6
	assert_equal "$(grep -c -- '--seed 0 --steps 5000 --ckpt-dir .* --ckpt-points 8 ' <<<"$tfm")" 6
	assert_equal "$(grep -oE -- '--layers [0-9]+ .*--tag [a-z0-9.-]+' <<<"$tfm" | sed -E 's/--layers ([0-9]+) .*--tag /\1 /' | sort | tr '\n' ',')" \
		"1 nanda,1 pizza-a0,1 pizza-a0.5,1 pizza-a1,2 nanda,3 nanda,"
	# gop-spectrum, llc-estimate and progress-measures through the filter for each of the 6
	# transformer runs; hess-eig (Hessian, GGN) on every checkpoint, as every analysis of the 42 MLP runs
	filt="awk -F step- '\$NF + 0 == 0 || \$NF + 0 >= 30'"
	analyses=$(grep -E '^ls .*/ckpt/\*\.safetensors \| ' <<<"$output")
	tfm_analyses=$(grep -E '/(nanda|pizza-a[0-9.]+)/d[0-9]-s[0-9]/ckpt/' <<<"$analyses")
	assert_equal "$(wc -l <<<"$tfm_analyses")" 30
	assert_equal "$(grep -F "| $filt |" <<<"$tfm_analyses" | grep -oE 'bin/[a-z-]+' | sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' ')" \
		"bin/gop-spectrum=6 bin/llc-estimate=6 bin/progress-measures=6 "
	assert_equal "$(grep -F -v "| $filt |" <<<"$tfm_analyses" | grep -oE 'bin/[a-z-]+' | sort | uniq -c | awk '{print $2 "=" $1}' | tr '\n' ' ')" \
		"bin/hess-eig=12 "
	assert_equal "$(grep -E '/(grok|seed)/d[0-9]-s[0-9]/ckpt/' <<<"$analyses" | grep -F -c awk)" 0
	assert_equal "$(grep -cE '/(grok|seed)/d[0-9]-s[0-9]/ckpt/' <<<"$analyses")" 189   # 5 per grok run, 4 per seed run: 21 x 9
	# the filter, on the names of train-transformer's 8 log-spaced checkpoints of 5,000 steps
	# (step 0 and round(5000^(i/7)), i = 0..7), keeps 0 and 38 onwards: 6 of 9
	names=$(awk 'BEGIN { print "x/step-00000000.safetensors"; for (i = 0; i < 8; i++) printf "x/step-%08d.safetensors\n", int(exp(log(5000) * i / 7) + 0.5) }')
	assert_equal "$(eval "$filt" <<<"$names" | sed -E 's/.*step-0*([0-9])/\1/; s/\.safetensors//' | tr '\n' ' ')" "0 38 130 439 1481 5000 "

	run planned STUDY=full
	assert_success
	tfm=$(grep -E '/bin/train-transformer ' <<<"$output")
	assert_equal "$(wc -l <<<"$tfm")" 30   # 6 recipes x 5 seeds
	assert_equal "$(grep -c -- '--steps 20000 --ckpt-dir .* --ckpt-points 30 ' <<<"$tfm")" 30
	assert_equal "$(grep -c 'awk -F step-' <<<"$output")" 0
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
		assert_equal "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" '\n'   # whole, not cut off
	done
	# And the results equal those of a run never interrupted.
	run make -j2 all "${A[@]}" R="$BATS_TEST_TMPDIR/whole" PL="$BATS_TEST_TMPDIR/wplots"
	assert_success
	for f in $(cd whole && find . -name log.jsonl); do
		diff <(metrics "whole/$f") <(metrics "results/$f")
	done
}

@test "study: the README's first command from a fresh clone, with every package missing, succeeds first time" {
	[ -z "$SAN" ] || skip "once, with the plain build"
	git -C "$ROOT" rev-parse --git-dir > /dev/null 2>&1 || skip "not a git checkout"
	git clone -q "$ROOT" clone
	# apt-get, dpkg-query and dpkg stand-ins: every package missing until "installed",
	# one install at a time or the stand-in fails (and records a collision)
	standins_install "$BATS_TEST_TMPDIR"
	T=("${TINY[@]}")
	run make -C clone -j2 all "${T[@]}"
	assert_success
	assert_file_not_exist "$FAKE/collisions"
	[ "$(grep -c '^install ' "$FAKE/calls")" -ge 1 ]   # it did install, through the stand-in
	assert_line --partial "ensure-deps: installing: build-essential"
	assert_line --regexp '^    CC tools/train-mlp\.c$'   # quiet build lines, not compiler commands
	refute_line --regexp '^(cc|gcc|clang) '
	assert_line "Plots: plots/small/ (39 files; plots/README.md says what each shows)."
	assert_file_exist clone/plots/small/by-depth.png
	# and a second make all, with every command shown, runs nothing
	run make -C clone all V=1 "${T[@]}"
	assert_success
	assert_equal "$(invocations <<<"$output")" ""
	refute_line --regexp '^(cc|gcc|clang|ar|tools/ensure-deps) '
}
