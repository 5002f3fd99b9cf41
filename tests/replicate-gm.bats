#!/usr/bin/env bats
# make replicate-gm: its commands (make -n) against enerrio/grokking-mlp's
# configuration (config.yaml, data.py, net.py, train.py), its split sizes
# against torch's random_split and data.py's label mask, its stamps, and
# the CLUSTER=slurm prefix.

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	O=$(cd "$GROK_BIN/.." && pwd)
	# the build's own flags, so a make that builds does not rebuild it without them
	SAN=
	[[ $O == */asan ]] && SAN=address,undefined
	ARGS=(-C "$ROOT" O="$O" SAN="$SAN" GM_R="$BATS_TEST_TMPDIR/r" GM_PL="$BATS_TEST_TMPDIR/pl")
}

# make -n's output with continued lines joined.
joined() {
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' <<<"$1"
}

# made CMD FILE: run a command make -n printed as make would (from the
# checkout, where its build paths are relative), its output into FILE here.
made() {
	local out=$PWD/$2
	(cd "$ROOT" && eval "$(sed -E "s|-o [^ ]+\$|-o $out|" <<<"$1")")
}

# The train-mlp command of one experiment that make -n prints.
train_cmd() {
	joined "$2" | grep -E "bin/train-mlp .*--tag gm-$1( |$)"
}

@test "replicate-gm: the source's model, optimiser and batch in every training command" {
	run make -n replicate-gm "${ARGS[@]}"
	assert_success
	for e in exp1 exp2 exp3; do
		cmd=$(train_cmd $e "$output")
		assert_equal "$(wc -l <<<"$cmd")" 1
		# net.py: Embedding(p + 2, 128), Linear(4 * 128, 128), ReLU, Linear(128, p + 2)
		assert_regex "$cmd" ' --embed 128 --depth 1 --width 128 '
		# train.py: optim.AdamW(lr=1e-3, betas=(0.9, 0.98)), torch's defaults eps 1e-8, weight_decay 0.01
		assert_regex "$cmd" ' --optim adamw --lr 1e-3 --beta1 0\.9 --beta2 0\.98 --eps 1e-8 --wd 0\.01 '
		# config.yaml: batch_size 512; random_seeds' first, 21
		assert_regex "$cmd" ' --batch 512 '
		assert_regex "$cmd" ' --seed 21 '
	done
	# README: exp1 100k optimisation steps; exp2 and exp3 20k epochs (GM_EPOCHS shortens them)
	assert_regex "$(train_cmd exp1 "$output")" ' --steps 100000 '
	run make -n replicate-gm "${ARGS[@]}" GM_EPOCHS=20000
	assert_regex "$(train_cmd exp2 "$output")" ' --epochs 20000 '
	assert_regex "$(train_cmd exp3 "$output")" ' --epochs 20000 '
}

@test "replicate-gm: the splits have the sizes torch's random_split and data.py's mask give" {
	run make -n replicate-gm "${ARGS[@]}"
	assert_success
	rnd=$(grep -E 'bin/gen-modadd .*random-s21' <<<"$output")
	lab=$(grep -E 'bin/gen-modadd .*label-s21' <<<"$output")
	# run the very commands make would, into this directory
	made "$rnd" r.st
	made "$lab" l.st
	n=$((97 * 97))
	# random_split(data, [0.8, 0.2]): floor of each fraction, the remainder handed out from the first
	f=$(awk -v n=$n 'BEGIN { a = int(0.8 * n); b = int(0.2 * n); print a + (n - a - b > 0) }')
	assert_equal "$(st_header r.st | jq '."train.x".shape[0]')" "$f"
	assert_equal "$(st_header r.st | jq '."test.x".shape[0]')" "$((n - f))"
	# data.py: mask = y < 20, the pairs labelled 0..19 held out: 20 labels x 97 pairs each
	assert_equal "$(st_header l.st | jq '."test.x".shape[0]')" "$((20 * 97))"
	assert_equal "$(st_header l.st | jq -r '.__metadata__.holdout')" "$(seq -s, 0 19)"
}

@test "replicate-gm: stamps hold the parameters; CLUSTER=slurm runs every tool through srun" {
	run make "${ARGS[@]}" "$BATS_TEST_TMPDIR/r/.stamps/train-exp2" GM_EPOCHS=7
	assert_success
	assert_file_contains r/.stamps/train-exp2 ' --epochs 7 '
	before=$(stat -c %Y r/.stamps/train-exp2)
	sleep 1
	run make "${ARGS[@]}" "$BATS_TEST_TMPDIR/r/.stamps/train-exp2" GM_EPOCHS=7
	assert_equal "$(stat -c %Y r/.stamps/train-exp2)" "$before"
	run make "${ARGS[@]}" "$BATS_TEST_TMPDIR/r/.stamps/train-exp2" GM_EPOCHS=8
	assert_file_contains r/.stamps/train-exp2 ' --epochs 8 '
	run make -n replicate-gm "${ARGS[@]}" CLUSTER=slurm
	assert_success
	cmds=$(joined "$output")
	tools=$(grep -cE 'bin/(gen-modadd|train-mlp|hess-eig|llc-estimate|gop-spectrum) ' <<<"$cmds")
	assert_equal "$(grep -cE '(^|\| )srun [^|]*bin/(gen-modadd|train-mlp|hess-eig|llc-estimate|gop-spectrum) ' <<<"$cmds")" "$tools"
	# three data sets (exp1 and exp2 share the random one; the GOP's subsample), three trainings,
	# three each of hess-eig and llc-estimate, two of gop-spectrum (exp1, exp2)
	assert_equal "$tools" 14
}

@test "replicate-gm: the LLC's step is calibrated (--epsilon auto) with the study's margin and relaxation rule" {
	run make -n replicate-gm "${ARGS[@]}"
	assert_success
	cmds=$(joined "$output" | grep -E 'bin/llc-estimate ')
	assert_equal "$(wc -l <<<"$cmds")" 3
	# every checkpoint's step from its own lambda_max and parameter count, no fixed epsilon
	assert_equal "$(grep -cE ' --epsilon auto( |$)' <<<"$cmds")" 3
	assert_equal "$(grep -oE -- '--epsilon [^ ]+' <<<"$cmds" | sort -u)" "--epsilon auto"
	# study.mk's margin and short rule, read from its LLC_FLAGS in make's database
	study=$(make -C "$ROOT" -pnq FORCE 2>/dev/null | sed -n 's/^LLC_FLAGS = //p')
	for opt in --margin --min-relax; do
		want=$(grep -oE -- "$opt [^ ]+" <<<"$study")
		assert_regex "$want" "^$opt [0-9.]+\$"
		assert_equal "$(grep -oE -- "$opt [^ ]+" <<<"$cmds" | sort -u)" "$want"
	done
	# the health rule's own bars: nothing loosens them
	refute_regex "$cmds" ' --(min-mala|max-rhat|max-drift|min-ess|explode|gamma|nbeta) '
}

@test "replicate-gm: a change of GM_LLC_FLAGS redoes the LLC and nothing upstream of it" {
	# RUN prefixes every tool: here a recorder that writes the tool's name and makes its -o file
	cat > rec <<-EOF
		#!/bin/sh
		echo "\${1##*/}" >> $BATS_TEST_TMPDIR/ran
		while [ \$# -gt 1 ]; do [ "\$1" = -o ] && touch "\$2"; shift; done
		exit 0
	EOF
	chmod +x rec
	R=$BATS_TEST_TMPDIR/r
	outs=($R/exp{1,2,3}/s21/{log,hessian,llc}.jsonl $R/exp{1,2}/s21/gop.jsonl)
	run make "${ARGS[@]}" RUN="$PWD/rec" "${outs[@]}"
	assert_success
	# three data sets, three trainings, three each of hess-eig and llc-estimate, two of gop-spectrum
	assert_equal "$(sort ran | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')" \
	    "gen-modadd:3 gop-spectrum:2 hess-eig:3 llc-estimate:3 train-mlp:3 "
	rm ran
	sleep 1
	run make "${ARGS[@]}" RUN="$PWD/rec" "${outs[@]}"
	assert_success
	assert_file_not_exist ran
	run make "${ARGS[@]}" RUN="$PWD/rec" "${outs[@]}" GM_LLC_FLAGS="--chains 2"
	assert_success
	assert_file_contains r/.stamps/llc '^--chains 2$'
	assert_equal "$(sort ran | uniq -c | awk '{ printf "%s:%s ", $2, $1 }')" "llc-estimate:3 "
}

# st_distance A B: ||theta_A - theta_B||_2 over every tensor of two checkpoints, in float64
# (Python on the files' bytes, summed exactly by fsum: independent of train-mlp's arithmetic).
st_distance() {
	python3 - "$1" "$2" <<'PY'
import array, json, math, struct, sys
def params(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    head.pop("__metadata__", None)
    out = {}
    for k, v in head.items():
        assert v["dtype"] == "F32" and sys.byteorder == "little"
        out[k] = array.array("f", data[v["data_offsets"][0]:v["data_offsets"][1]])
    return out
a, b = params(sys.argv[1]), params(sys.argv[2])
assert a.keys() == b.keys() and len(a) > 0
print(repr(math.sqrt(math.fsum((x - y) ** 2 for k in a for x, y in zip(a[k], b[k])))))
PY
}

# rel_close X Y TOL: |X/Y - 1| < TOL (NaN or an empty value fails).
rel_close() {
	awk -v x="$1" -v y="$2" -v t="$3" 'BEGIN { d = x / y - 1; if (d < 0) d = -d; exit !(x != "" && y > 0 && d < t) }'
}

@test "train-mlp epoch_update_norm: the last whole epoch's displacement, checked on the checkpoints" {
	gen-modadd -p 23 -o d.st
	# 159 training rows in batches of 64: 3 steps an epoch; log points off the epoch ends
	train-mlp --data d.st --optim sgd --wd 0 --lr 0.5 --batch 64 --steps 12 --log-every 2 \
	    --ckpt-every 1 --ckpt-dir ck --width 8 > log
	assert_equal "$(jq -s -c 'map(select(.record == "metrics") | [.step, .epoch_update_norm != null])' log)" \
	    '[[0,false],[2,false],[4,true],[6,true],[8,true],[10,true],[12,true]]'
	# at step s: the epoch that ended at 3 * floor(s / 3), from its start 3 steps before
	for s in 4 6 8 10 12; do
		e=$((s / 3 * 3))
		got=$(jq --argjson s $s 'select(.record == "metrics" and .step == $s) | .epoch_update_norm' log)
		want=$(st_distance "$(printf 'ck/step-%08d.safetensors' $e)" "$(printf 'ck/step-%08d.safetensors' $((e - 3)))")
		echo "# step $s: log $got, checkpoints $want"
		rel_close "$got" "$want" 1e-12
	done
	# an epoch's displacement is not one step's: the norm of three summed SGD steps differs from the last one's
	got=$(jq 'select(.record == "metrics" and .step == 6) | .epoch_update_norm' log)
	one=$(st_distance ck/step-00000006.safetensors ck/step-00000005.safetensors)
	run rel_close "$got" "$one" 1e-3
	assert_failure
}

@test "train-mlp epoch_update_norm: with the full batch an epoch is one step, and equals update_norm" {
	gen-modadd -p 23 -o d.st
	train-mlp --data d.st --optim sgd --wd 0 --lr 0.1 --steps 5 --log-every 1 --width 8 > log
	assert_equal "$(jq -s -c 'map(select(.record == "metrics")) | .[0].epoch_update_norm' log)" null
	# update_norm is the optimiser's sum of squares of its float steps, epoch_update_norm the
	# parameters' difference after rounding: equal to float32 rounding
	for s in 1 2 3 4 5; do
		read -r a b < <(jq -r --argjson s $s 'select(.record == "metrics" and .step == $s) | "\(.update_norm) \(.epoch_update_norm)"' log)
		rel_close "$a" "$b" 1e-5
	done
}

@test "train-mlp epoch_update_norm: a run resumed mid-epoch logs what the straight run logs" {
	gen-modadd -p 23 -o d.st
	args=(--data d.st --batch 64 --width 8 --log-every 2)
	# the state at step 4, one step into the second epoch (3 steps an epoch)
	train-mlp "${args[@]}" --steps 4 --state s.st > /dev/null
	train-mlp "${args[@]}" --steps 12 --resume s.st > second.log
	train-mlp "${args[@]}" --steps 12 > straight.log
	after4() { jq -c 'select(.record == "metrics" and .step > 4) | [.step, .epoch_update_norm]' "$1"; }
	assert_equal "$(after4 second.log | jq -s -c 'map(.[0])')" '[6,8,10,12]'
	assert_equal "$(after4 second.log)" "$(after4 straight.log)"
	assert_equal "$(after4 second.log | jq -s 'map(.[1] | numbers) | length')" 4
}

@test "replicate-gm: the GOP of the random split's runs over a prefix of their training rows, exp3 without" {
	run make -n replicate-gm "${ARGS[@]}" GM_GOP_ROWS=1500
	assert_success
	cmds=$(joined "$output")
	# exp1 and exp2 (random split), not exp3 (label split)
	assert_equal "$(grep -cE 'bin/gop-spectrum +--data [^ ]*/data/gop-s21\.safetensors --any-data --top 10 > [^ ]*/exp[12]/s21/gop\.jsonl\+' <<<"$cmds")" 2
	assert_equal "$(grep -c 'exp3/s21/gop' <<<"$cmds")" 0
	# the subsample: the run's seed, frac = 1500 / 97^2, which gen-modadd rounds to 1500 rows
	sub=$(grep -E 'bin/gen-modadd .*gop-s21' <<<"$cmds")
	rnd=$(grep -E 'bin/gen-modadd .*random-s21' <<<"$cmds")
	made "$sub" s.st
	made "$rnd" r.st
	assert_equal "$(st_header s.st | jq '."train.x".shape[0]')" 1500
	# ... the first 1500 training rows of the run's own split, in its order
	assert_equal "$(pairs s.st train | md5sum)" "$(pairs r.st train | head -n 1500 | md5sum)"
}

@test "replicate-gm: a tiny run end to end: curves with the epoch update, GOP tables, plots, then nothing" {
	TINY=(GM_P=11 GM_FRAC=0.8 GM_HOLDOUT=0,1 GM_STEPS=40 GM_EPOCHS=4 GM_LOG_EVERY=2 GM_CKPT_POINTS=3
	      GM_GOP_ROWS=30 GM_TRAIN="--embed 8 --depth 1 --width 8 --optim adamw --lr 1e-3 --wd 0.01 --batch 32"
	      GM_HESS_FLAGS="--top 1" GM_LLC_FLAGS="--chains 1 --draws 4 --burn-in 4")
	run make replicate-gm "${ARGS[@]}" "${TINY[@]}"
	assert_success
	# 97 training pairs in batches of 32: 4 steps an epoch; log points every 2 steps
	assert_equal "$(head -1 r/exp2/s21/curves.tsv | cut -f 9)" epoch_update_norm
	assert_equal "$(awk -F '\t' 'NR > 1 { printf "%s:%s ", $2, ($9 == "NaN" ? "-" : "v") }' r/exp2/s21/curves.tsv)" \
	    "0:- 2:- 4:v 6:v 8:v 10:v 12:v 14:v 16:v "
	for e in exp1 exp2; do
		assert_equal "$(jq -cs 'map(select(.record == "gop") | .n) | unique' r/$e/s21/gop.jsonl)" "[30]"
		assert_file_exist r/$e/s21/gop.tsv
	done
	assert_file_not_exist r/exp3/s21/gop.jsonl
	# the summary's LLC is the last checkpoint's, NaN where llc-estimate's health rule flags it
	assert_equal "$(head -1 r/summary.tsv | cut -f 11-13)" "llc	ckpt_step	llc_flags"
	for e in exp1 exp2 exp3; do
		want=$(tail -1 r/$e/s21/llc.tsv | awk -F '\t' '{ print ($4 == 1 ? "NaN" : $2) "\t" $7 }')
		assert_equal "$(grep "^$e/s21	" r/summary.tsv | cut -f 11,13)" "$want"
	done
	for k in losslinear losslog acclinear acclog specnorm update pca; do
		assert_file_exist pl/exp3-s21-$k.png
	done
	run make replicate-gm "${ARGS[@]}" "${TINY[@]}" V=1
	assert_success
	refute_output --regexp 'bin/(train-mlp|hess-eig|llc-estimate|gop-spectrum|gen-modadd)|gnuplot -e'
}
