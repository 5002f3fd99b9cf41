#!/usr/bin/env bats
# summarize: hand-made logs with known answers, partial logs, groups, tables, bad input.

load test_helper
bats_require_minimum_version 1.5.0

# train_log ID DEPTH SEED TAG "step train test" ... : a train-mlp log by hand.
train_log() {
	local id=$1 depth=$2 seed=$3 tag=$4
	shift 4
	printf '{"record":"header","tool":"train-mlp","run_id":"%s","config":{"model":{"p":7,"depth":%d,"width":8,"encoding":"onehot","loss":"ce"},"optim":{"name":"adamw","lr":0.001,"wd":2.0},"seed":%d,"tag":"%s"},"data":{"metadata":{"frac":"0.3","p":"7"}}}\n' "$id" "$depth" "$seed" "$tag"
	for pt in "$@"; do
		set -- $pt
		printf '{"record":"metrics","step":%d,"train_acc":%s,"test_acc":%s}\n' "$1" "$2" "$3"
	done
}

hess_log() {
	local id=$1
	shift
	printf '{"record":"header","tool":"hess-eig"}\n'
	for pt in "$@"; do
		set -- $pt
		printf '{"record":"hessian","run_id":"%s","step":%d,"eigenvalues":[%s,1.0]}\n' "$id" "$1" "$2"
	done
}

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	{ train_log aaaa 2 0 grok "0 0.1 0.0" "10 0.5 0.0" "100 0.995 0.2" "1000 1.0 0.992" "2000 1.0 1.0"
	  echo '{"record":"final","steps":2000,"status":"ok"}'; } > a.jsonl
	{ train_log bbbb 2 1 grok "0 0.1 0.0" "100 0.98 0.0" "200 0.99 0.5" "3000 1.0 0.995"
	  echo '{"record":"final","steps":3000,"status":"ok"}'; } > b.jsonl
	{ train_log cccc 2 2 grok "0 0.1 0.0" "50 1.0 0.01" "5000 1.0 0.02"
	  echo '{"record":"final","steps":5000,"status":"ok"}'; } > c.jsonl
	hess_log aaaa "0 1.0" "100 7.5" "1000 3.0" "2000 2.0" > ha.jsonl
}

@test "summarize --help and --version" {
	run summarize --help
	assert_success
	assert_line --index 0 "usage: summarize [--threshold T] [--group-by KEYS] [--tsv] [LOG.jsonl...]"
	run summarize --version
	assert_output --regexp '^summarize [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "summarize: memorisation, generalisation, delay and ratio of a run" {
	run summarize a.jsonl
	assert_success
	r=${lines[1]}
	assert_equal "$(jq -c '[.memorisation_step, .generalisation_step, .grokking_delay, .grokking_ratio]' <<<"$r")" "[100,1000,900,10]"
	assert_equal "$(jq -c '[.memorised, .generalised, .status, .diverged, .last_step]' <<<"$r")" '[true,true,"ok",false,2000]'
	assert_equal "$(jq -c '[.final_train_acc, .final_test_acc, .best_test_acc, .best_test_step]' <<<"$r")" "[1,1,1,2000]"
	assert_equal "$(jq -c '[.recipe, .depth, .seed, .wd, .frac]' <<<"$r")" '["grok",2,0,2,0.3]'
}

@test "summarize: the threshold is inclusive and adjustable" {
	run summarize --threshold 0.5 a.jsonl
	assert_equal "$(jq -c '[.memorisation_step, .generalisation_step]' <<<"${lines[1]}")" "[10,1000]"
}

@test "summarize: a threshold never reached is null with its flag false" {
	run summarize c.jsonl
	assert_success
	assert_equal "$(jq -c '[.memorised, .memorisation_step, .generalised, .generalisation_step, .grokking_delay, .grokking_ratio]' <<<"${lines[1]}")" "[true,50,false,null,null,null]"
}

@test "summarize joins the Hessian by run_id: at memorisation, generalisation and peak" {
	run summarize a.jsonl ha.jsonl b.jsonl
	assert_success
	r=$(printf '%s\n' "${lines[@]}" | jq -c 'select(.run_id == "aaaa") | .hessian')
	assert_equal "$r" '{"at_memorisation":{"step":100,"top":7.5},"at_generalisation":{"step":1000,"top":3},"peak":{"step":100,"top":7.5}}'
	r=$(printf '%s\n' "${lines[@]}" | jq -c 'select(.run_id == "bbbb") | .hessian')
	assert_equal "$r" '{"at_memorisation":null,"at_generalisation":null,"peak":null}'
}

@test "summarize --group-by: mean, std, min, max over seeds and reach counts" {
	run summarize --group-by recipe,depth a.jsonl b.jsonl c.jsonl
	assert_success
	g=${lines[1]}
	assert_equal "$(jq -c '[.recipe, .depth, .runs, .memorised, .generalised, .diverged]' <<<"$g")" '["grok",2,3,3,2,0]'
	# memorisation steps 100, 200, 50; generalisation 1000, 3000
	assert_equal "$(jq -c '.memorisation_step | [.mean, .min, .max, .n]' <<<"$g")" "[116.66666666666667,50,200,3]"
	assert_equal "$(jq -c '.generalisation_step | [.mean, .std, .n]' <<<"$g")" "[2000,1414.213562373095,2]"
}

@test "summarize --tsv: a table gnuplot reads, NaN for missing values" {
	run summarize --tsv a.jsonl c.jsonl
	assert_success
	assert_equal "$(cut -f1,2,3,7,8 <<<"${lines[0]}")" "$(printf 'recipe\tdepth\tseed\tmemorisation_step\tgeneralisation_step')"
	assert_equal "$(cut -f7,8 <<<"${lines[2]}")" "$(printf '50\tNaN')"
	assert_equal "${#lines[@]}" 3
}

@test "summarize: an interrupted log counts up to its last whole record" {
	{ train_log dddd 1 0 grok "0 0.1 0.0" "100 1.0 0.5"; printf '{"record":"metrics","step":2'; } > d.jsonl
	run --separate-stderr summarize d.jsonl
	assert_success
	assert_stderr "summarize: d.jsonl:4: ignoring a partial last line"
	assert_equal "$(jq -c '[.status, .last_step, .memorisation_step]' <<<"${lines[1]}")" '["incomplete",100,100]'
}

@test "summarize: an empty log is an error" {
	: > e.jsonl
	run summarize e.jsonl
	assert_failure 1
	assert_output "summarize: e.jsonl: empty (not a log of train-mlp, hess-eig, gop-spectrum or llc-estimate)"
}

@test "summarize: a file that is not one of our logs" {
	echo 'step,acc' > x.csv
	run summarize x.csv
	assert_failure 1
	assert_output "summarize: x.csv: not a JSON-lines log of train-mlp, hess-eig, gop-spectrum or llc-estimate"
	echo '{"record":"header","tool":"other"}' > o.jsonl
	run summarize o.jsonl
	assert_failure 1
	assert_output "summarize: o.jsonl: not a log of train-mlp, hess-eig, gop-spectrum or llc-estimate (no such header)"
}

@test "summarize: a record whose step is missing, not a number, fractional or huge is an error (found by fuzz_summarize)" {
	for step in '' '"step":null,' '"step":"7",' '"step":2.5,' '"step":-1,' '"step":1e300,'; do
		{ train_log abab 1 0 grok "0 0.1 0.0"; echo "{\"record\":\"metrics\",${step}\"train_acc\":1}"; } > s.jsonl
		run summarize s.jsonl
		assert_failure 1
		assert_output "summarize: s.jsonl:3: a metrics record without a whole, non-negative step"
	done
	printf '{"record":"header","tool":"hess-eig"}\n{"record":"hessian","run_id":"abab","eigenvalues":[1]}\n' > h.jsonl
	run summarize h.jsonl
	assert_failure 1
	assert_output "summarize: h.jsonl:2: a hessian record without a whole, non-negative step"
}

@test "summarize: a train-mlp header without its config is an error (found by fuzz_summarize: it leaked)" {
	printf '{"record":"header","tool":"train-mlp","run_id":"abab"}\n' > c.jsonl
	run summarize c.jsonl c.jsonl
	assert_failure 1
	assert_output "summarize: c.jsonl: a train-mlp header without its config"
}

@test "summarize: a corrupt line in the middle is an error" {
	{ train_log ffff 1 0 grok "0 0.1 0.0"; echo 'garbage'; echo '{"record":"final","status":"ok"}'; } > f.jsonl
	run summarize f.jsonl
	assert_failure 1
	assert_output --partial "summarize: f.jsonl:3: not a JSON object"
}

@test "summarize: unknown group key" {
	run summarize --group-by colour a.jsonl
	assert_failure 2
	assert_line --index 0 "summarize: --group-by: unknown value 'colour' (allowed: recipe, depth, width, seed, wd, lr, optim, frac, p, encoding, loss)"
}

@test "summarize on real logs: train-mlp, hess-eig, gop-spectrum and llc-estimate of one run" {
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 60 --log-every 20 --width 12 --tag t --ckpt-dir ck > log.jsonl
	hess-eig --data d.st --top 1 ck/*.safetensors > h.jsonl
	gop-spectrum --data d.st --top 1 ck/*.safetensors > g.jsonl
	llc-estimate --data d.st --chains 2 --draws 10 ck/*.safetensors > l.jsonl
	run summarize log.jsonl h.jsonl g.jsonl l.jsonl
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_equal "$(jq -c '[.recipe, .last_step, (.hessian.peak | type), .llc.final.step]' <<<"${lines[1]}")" '["t",60,"object",60]'
	assert_jq '(.llc.final.llc | num) == .llc.final.llc' <<<"${lines[1]}"
	assert_equal "$(jq '.llc.final.llc' <<<"${lines[1]}")" "$(tail -1 l.jsonl | jq .llc_mean)"
	assert_equal "$(jq '.llc.peak.llc' <<<"${lines[1]}")" "$(jq -s 'map(select(.record == "llc") | .llc_mean) | max' l.jsonl)"
	run summarize --group-by recipe log.jsonl l.jsonl
	assert_equal "$(jq '.llc_final.n' <<<"${lines[1]}")" 1
	run summarize log.jsonl h.jsonl
	assert_equal "$(jq '.llc' <<<"${lines[1]}")" null
}

@test "summarize --group-by: a flagged LLC counts in llc_final_flagged and not in llc_final_unflagged" {
	# final LLC: run aaaa 5.0 (chains stayed), bbbb 40.0 (a chain left the basin), cccc none
	llc_rec='{"record":"llc","run_id":"%s","step":%d,"llc_mean":%s,"llc_std":0.5,"chains_flagged":%d}\n'
	{ printf '{"record":"header","tool":"llc-estimate"}\n'
	  printf "$llc_rec" aaaa 2000 5.0 0; printf "$llc_rec" bbbb 3000 40.0 1; } > l.jsonl
	run summarize --group-by recipe,depth a.jsonl b.jsonl c.jsonl l.jsonl
	assert_success
	assert_equal "$(jq -c '[.llc_final_flagged, .llc_final.mean, .llc_final.n, .llc_final_unflagged.mean, .llc_final_unflagged.n]' <<<"${lines[1]}")" \
		'[1,22.5,2,5,1]'
	run summarize --group-by recipe,depth --tsv a.jsonl b.jsonl c.jsonl l.jsonl
	assert_success
	assert_equal "$(head -1 <<<"$output" | cut -f51,55,59)" "$(printf 'llc_final_mean\tllc_final_unflagged_mean\tllc_final_flagged')"
	assert_equal "$(sed -n 2p <<<"$output" | cut -f51,55,59)" "$(printf '22.5\t5.0\t1')"
}

@test "summarize: an LLC record's healthy field decides whether it is flagged, over chains_flagged" {
	# aaaa: no chain flagged but unhealthy (R-hat); bbbb: healthy
	llc_rec='{"record":"llc","run_id":"%s","step":%d,"llc_mean":%s,"llc_std":0.5,"chains_flagged":0,"healthy":%s}\n'
	{ printf '{"record":"header","tool":"llc-estimate"}\n'
	  printf "$llc_rec" aaaa 2000 5.0 false; printf "$llc_rec" bbbb 3000 40.0 true; } > l.jsonl
	run summarize --group-by recipe,depth a.jsonl b.jsonl c.jsonl l.jsonl
	assert_success
	assert_equal "$(jq -c '[.llc_final_flagged, .llc_final.n, .llc_final_unflagged.mean, .llc_final_unflagged.n]' <<<"${lines[1]}")" \
		'[1,2,40,1]'
}

# progress_log ID "step restricted excluded keys" ... : a progress-measures log by hand.
progress_log() {
	local id=$1
	shift
	printf '{"record":"header","tool":"progress-measures"}\n'
	for pt in "$@"; do
		set -- $pt
		printf '{"record":"progress","run_id":"%s","step":%d,"restricted_loss":%s,"excluded_loss":%s,"key_var_frac":0.5,"key_freqs":[%s]}\n' \
			"$id" "$1" "$2" "$3" "${4:-}"
	done
}

@test "summarize: progress records join their run: restricted-loss step, excluded loss at generalisation, final keys" {
	# out of step order on purpose; run aaaa generalises at 1000; null restricted loss never counts
	progress_log aaaa "2000 0.01 5.0 4,9" "0 null 2.0" "100 0.5 3.0 4" "1000 0.05 4.0 4,9" "10 3.0 2.5" > pa.jsonl
	run summarize a.jsonl pa.jsonl
	assert_success
	assert_equal "$(jq -c '.progress | [.restricted_below, .restricted_reached, .restricted_step]' <<<"${lines[1]}")" '[0.1,true,1000]'
	assert_equal "$(jq -c '.progress.at_generalisation | [.step, .excluded_loss, .restricted_loss]' <<<"${lines[1]}")" '[1000,4,0.05]'
	assert_equal "$(jq -c '.progress.final | [.step, .key_freqs, .excluded_loss, .key_var_frac]' <<<"${lines[1]}")" '[2000,[4,9],5,0.5]'
	run summarize --restricted-below 0.6 a.jsonl pa.jsonl
	assert_success
	assert_equal "$(jq '.progress.restricted_step' <<<"${lines[1]}")" 100
	assert_equal "$(jq '.config.restricted_below' <<<"${lines[0]}")" 0.6
	run summarize --restricted-below 0.001 a.jsonl pa.jsonl
	assert_equal "$(jq -c '.progress | [.restricted_reached, .restricted_step]' <<<"${lines[1]}")" '[false,null]'
}

@test "summarize: without progress records progress is null; never generalised, no excluded loss at generalisation" {
	progress_log cccc "50 0.02 1.5 3" > pc.jsonl
	run summarize a.jsonl c.jsonl pc.jsonl
	assert_success
	assert_equal "$(jq -c '.progress' <<<"${lines[1]}")" null
	assert_equal "$(jq -c '.progress | [.restricted_step, .at_generalisation, .final.key_freqs]' <<<"${lines[2]}")" '[50,null,[3]]'
}

@test "summarize --tsv: the progress columns come last, runs and groups" {
	progress_log aaaa "100 0.5 3.0 4" "1000 0.05 4.0 4,9" "2000 0.01 5.0 4,9" > pa.jsonl
	progress_log bbbb "200 0.08 2.0" "3000 0.02 6.0" > pb.jsonl
	run summarize --tsv a.jsonl b.jsonl c.jsonl pa.jsonl pb.jsonl
	assert_success
	assert_equal "$(head -1 <<<"$output" | cut -f14-)" \
		"$(printf 'peak_sharpness\tpeak_sharpness_step\tsharpness_at_memorisation\tsharpness_at_generalisation\trestricted_step\texcluded_at_generalisation\tfinal_restricted_loss\tfinal_excluded_loss\tfinal_key_freqs\tblas_core\tfamily')"
	assert_equal "$(sed -n 2p <<<"$output" | cut -f18-22)" "$(printf '1000\t4.0\t0.01\t5.0\t4,9')"
	assert_equal "$(sed -n 3p <<<"$output" | cut -f18-22)" "$(printf '200\t6.0\t0.02\t6.0\t-')"   # analysed, no key frequency
	assert_equal "$(sed -n 4p <<<"$output" | cut -f18-22)" "$(printf 'NaN\tNaN\tNaN\tNaN\tNaN')"
	run summarize --group-by recipe --tsv a.jsonl b.jsonl c.jsonl pa.jsonl pb.jsonl
	assert_success
	# llc_final_flagged keeps its column; the progress statistics follow it, then the kernel families
	assert_equal "$(head -1 <<<"$output" | awk -F'\t' '{ print $(NF - 10), $(NF - 9), $(NF - 5), $(NF - 1), $NF }')" \
		"llc_final_flagged restricted_step_mean excluded_at_generalisation_mean blas_cores family"
	assert_equal "$(sed -n 2p <<<"$output" | awk -F'\t' '{ print $(NF - 9), $(NF - 8), $(NF - 5), $(NF - 4) }')" "600.0 565.685424949238 5.0 1.4142135623730951"
	run summarize --group-by recipe a.jsonl b.jsonl c.jsonl pa.jsonl pb.jsonl
	assert_equal "$(jq -c '[.restricted_step.n, .restricted_step.min, .restricted_step.max, .excluded_at_generalisation.mean]' <<<"${lines[1]}")" '[2,200,1000,5]'
}

@test "summarize: a train-transformer log is a run, its layers the depth" {
	{ printf '{"record":"header","tool":"train-transformer","run_id":"tttt","config":{"model":{"p":7,"layers":3,"d_model":16},"optim":{"name":"adamw","lr":0.001,"wd":1.0},"seed":4,"tag":"nanda"},"data":{"metadata":{"frac":"0.3"}}}\n'
	  printf '{"record":"metrics","step":%d,"train_acc":%s,"test_acc":%s}\n' 0 0.1 0.0 30 1.0 0.3 90 1.0 1.0
	  echo '{"record":"final","steps":90,"status":"ok"}'; } > t.jsonl
	progress_log tttt "30 0.7 1.0 2" "90 0.05 3.5 2,3" > pt.jsonl
	run summarize t.jsonl pt.jsonl
	assert_success
	assert_equal "$(jq -c '[.recipe, .depth, .width, .seed, .memorisation_step, .generalisation_step, .progress.restricted_step, .progress.at_generalisation.excluded_loss]' <<<"${lines[1]}")" \
		'["nanda",3,null,4,30,90,90,3.5]'
	run summarize --group-by recipe,depth t.jsonl pt.jsonl
	assert_success
	assert_equal "$(jq -c '[.recipe, .depth, .runs, .generalised]' <<<"${lines[1]}")" '["nanda",3,1,1]'
}

@test "summarize --restricted-below: out of range or not a number is a usage error" {
	for v in 0 -1 101 abc nan; do
		run summarize --restricted-below "$v" a.jsonl
		assert_failure 2
		assert_output --partial "summarize: --restricted-below"
	done
}

@test "summarize on real logs: progress-measures of a run joins it by run_id" {
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 60 --log-every 20 --width 12 --tag t --ckpt-dir ck > log.jsonl
	progress-measures --data d.st ck/*.safetensors > p.jsonl
	run summarize log.jsonl p.jsonl
	assert_success
	assert_equal "$(jq -c '.progress.final.step' <<<"${lines[1]}")" 60
	assert_equal "$(jq -c '.progress.final.key_freqs' <<<"${lines[1]}")" "$(tail -1 p.jsonl | jq -c .key_freqs)"
	assert_equal "$(jq '.progress.final.excluded_loss' <<<"${lines[1]}")" "$(tail -1 p.jsonl | jq .excluded_loss)"
	want=$(jq -s 'map(select(.record == "progress" and .restricted_loss < 0.1)) | min_by(.step) | .step' p.jsonl)
	assert_equal "$(jq '.progress.restricted_step' <<<"${lines[1]}")" "$want"
}

# The kernel train-mlp's own products run on here: gemm.c's where the CPU has AVX-512 (one thread).
own_kernel() {
	if grep -qw avx512f /proc/cpuinfo; then echo avx512; else echo openblas; fi
}

@test "summarize: each run names the kernel family its products ran on, each group the families it mixes" {
	gen-modadd -p 11 -o d.st
	train-mlp --data d.st --depth 1 --width 8 --steps 5 --tag k > a.jsonl
	want=$(own_kernel)
	[ "$want" = avx512 ] || want=$(jq -r 'select(.record == "header") | .blas.core' a.jsonl)
	run -0 summarize a.jsonl
	assert_equal "$(jq -r 'select(.record == "run") | .blas_core' <<<"$output")" "$want"
	run -0 summarize --group-by recipe a.jsonl
	assert_equal "$(jq -c 'select(.record == "group") | .blas_cores' <<<"$output")" "[\"$want\"]"
	run -0 summarize --tsv a.jsonl
	assert_equal "$(sed -n 2p <<<"$output" | awk -F'\t' '{ print $(NF - 1) }')" "$want"   # family is last
}

@test "headers name the kernel of their own family's products: train-mlp's and train-transformer's, not the embedding MLP's" {
	gen-modadd -p 11 -o d.st
	train-mlp --data d.st --depth 1 --width 8 --steps 2 --ckpt-dir m > mlp.jsonl
	GROKKIT_GEMM=openblas train-mlp --data d.st --depth 1 --width 8 --steps 2 --seed 1 > off.jsonl   # another run_id
	train-mlp --data d.st --embed 4 --depth 1 --width 8 --steps 2 > emb.jsonl
	train-transformer --data d.st --d-model 8 --heads 2 --steps 2 --log-every 2 --ckpt-dir t > tfm.jsonl
	assert_equal "$(head -1 mlp.jsonl | jq -r .blas.gemm)" "$(own_kernel)"
	assert_equal "$(head -1 off.jsonl | jq -r .blas.gemm)" openblas
	assert_equal "$(head -1 emb.jsonl | jq -r .blas.gemm)" openblas
	assert_equal "$(head -1 tfm.jsonl | jq -r .blas.gemm)" "$(own_kernel)"
	assert_equal "$(GROKKIT_GEMM=openblas train-transformer --data d.st --d-model 8 --heads 2 --steps 1 | head -1 | jq -r .blas.gemm)" openblas
	# one analysis may read several families: the header leaves gemm to each record
	run -0 hess-eig --data d.st --top 1 m/step-00000002.safetensors t/step-00000002.safetensors
	assert_equal "$(jq -c 'select(.record == "header") | .blas | has("gemm")' <<<"$output")" false
	assert_equal "$(jq -r 'select(.record == "hessian") | "\(.family) \(.gemm)"' <<<"$output" | paste -sd,)" \
	    "mlp $(own_kernel),transformer $(own_kernel)"
	core=$(head -1 tfm.jsonl | jq -r .blas.core)
	run -0 summarize --tsv mlp.jsonl off.jsonl emb.jsonl tfm.jsonl
	assert_equal "$(sed 1d <<<"$output" | awk -F'\t' '{ print $NF, $(NF - 1) }' | sort | paste -sd,)" \
	    "$(printf '%s\n' "mlp $([ "$(own_kernel)" = avx512 ] && echo avx512 || echo "$core")" "mlp $core" \
	    "mlp-embed $core" "transformer $([ "$(own_kernel)" = avx512 ] && echo avx512 || echo "$core")" | sort | paste -sd,)"
}

# kernel_log ID TOOL FAMILY BLAS: a one-point trainer log whose header's blas object is BLAS.
kernel_log() {
	printf '{"record":"header","tool":"%s","family":"%s","run_id":"%s","config":{"model":{"p":7},"seed":0},"blas":%s}\n' "$2" "$3" "$1" "$4"
	printf '{"record":"metrics","step":0,"train_acc":0.1,"test_acc":0.1}\n'
}

@test "summarize: blas_core believes a header's gemm only for a family with a kernel of its own (older headers gave every family the MLP's)" {
	kernel_log 1111 train-mlp mlp '{"core":"Zen","gemm":"avx512"}' > 1.jsonl
	kernel_log 2222 train-mlp mlp '{"core":"Zen","gemm":"openblas"}' > 2.jsonl
	kernel_log 3333 train-transformer transformer '{"core":"Zen","gemm":"openblas"}' > 3.jsonl
	kernel_log 4444 train-mlp mlp-embed '{"core":"Zen","gemm":"avx512"}' > 4.jsonl
	kernel_log 5555 train-mlp mlp '{"core":"Zen"}' > 5.jsonl   # before blas.gemm
	kernel_log 6666 train-mlp mlp '{}' > 6.jsonl
	run -0 summarize 1.jsonl 2.jsonl 3.jsonl 4.jsonl 5.jsonl 6.jsonl
	assert_equal "$(jq -r 'select(.record == "run") | "\(.run_id):\(.family):\(.blas_core)"' <<<"$output" | sort | paste -sd,)" \
	    "1111:mlp:avx512,2222:mlp:Zen,3333:transformer:Zen,4444:mlp-embed:Zen,5555:mlp:Zen,6666:mlp:null"
}

# tfm_log ID LAYERS SEED TAG [FAMILY] "step train test" ... : a train-transformer log by hand
# (FAMILY "-": a header from before the family field).
tfm_log() {
	local id=$1 layers=$2 seed=$3 tag=$4 fam=$5 famfield=''
	shift 5
	[ "$fam" = - ] || famfield="\"family\":\"$fam\","
	printf '{"record":"header","tool":"train-transformer",%s"run_id":"%s","config":{"model":{"p":7,"layers":%d,"d_model":32,"heads":4,"d_head":8,"d_mlp":128,"attention":"causal","attn_coeff":0.5,"act":"relu","eq_token":true},"optim":{"name":"adamw","lr":0.001,"wd":1.0},"seed":%d,"tag":"%s"},"data":{"metadata":{"frac":"0.3","p":"7"}}}\n' "$famfield" "$id" "$layers" "$seed" "$tag"
	for pt in "$@"; do
		set -- $pt
		printf '{"record":"metrics","step":%d,"train_acc":%s,"test_acc":%s}\n' "$1" "$2" "$3"
	done
	echo '{"record":"final","status":"ok"}'
}

@test "summarize: a transformer run has its family, model, depth = layers and no width, after the MLPs" {
	tfm_log t1t1 2 0 grok transformer "0 0.1 0.0" "40 1.0 0.1" "400 1.0 1.0" > t.jsonl
	run summarize t.jsonl a.jsonl
	assert_success
	assert_equal "${#lines[@]}" 3
	assert_jq '.family == "mlp" and .run_id == "aaaa" and .model.width == 8' <<<"${lines[1]}"
	r=${lines[2]}
	assert_equal "$(jq -c '[.run_id, .family, .recipe, .depth, .width, .encoding, .model.layers, .model.attn_coeff]' <<<"$r")" \
	    '["t1t1","transformer","grok",2,null,null,2,0.5]'
	assert_equal "$(jq -c '[.memorisation_step, .generalisation_step, .grokking_delay, .status]' <<<"$r")" '[40,400,360,"ok"]'
}

@test "summarize: a transformer log from before the header's family is the trainer's family" {
	tfm_log t0t0 1 0 nanda - "0 0.1 0.0" "10 1.0 1.0" > t.jsonl
	run summarize t.jsonl
	assert_success
	assert_jq '.family == "transformer" and .depth == 1' <<<"${lines[1]}"
}

@test "summarize --group-by: runs of two families never share a group, even of one recipe and depth" {
	tfm_log t1t1 2 0 grok transformer "0 0.1 0.0" "40 1.0 0.1" "400 1.0 1.0" > t1.jsonl
	tfm_log t2t2 2 1 grok transformer "0 0.1 0.0" "60 1.0 0.1" "600 1.0 1.0" > t2.jsonl
	run summarize --group-by recipe,depth a.jsonl b.jsonl t1.jsonl t2.jsonl
	assert_success
	assert_equal "${#lines[@]}" 3
	assert_equal "$(jq -c '[.family, .recipe, .depth, .runs]' <<<"${lines[1]}")" '["mlp","grok",2,2]'
	assert_equal "$(jq -c '[.family, .recipe, .depth, .runs, .generalisation_step.mean]' <<<"${lines[2]}")" \
	    '["transformer","grok",2,2,500]'
	# The tables: family in the last column, the columns before where they were.
	run summarize --group-by recipe,depth --tsv a.jsonl b.jsonl t1.jsonl t2.jsonl
	assert_success
	assert_equal "$(head -1 <<<"$output" | awk -F'\t' '{ print $1, $2, $3, $NF }')" 'recipe depth runs family'
	assert_equal "$(sed -n 3p <<<"$output" | awk -F'\t' '{ print $1, $2, $3, $NF }')" 'grok 2 2 transformer'
	run summarize --tsv a.jsonl t1.jsonl
	assert_success
	assert_equal "$(cut -f1,2,3,7,8 <<<"${lines[0]}")" "$(printf 'recipe\tdepth\tseed\tmemorisation_step\tgeneralisation_step')"
	assert_equal "$(awk -F'\t' '{ print $2, $7, $NF }' <<<"${lines[2]}")" '2 40 transformer'
}

@test "summarize on real logs: train-transformer and hess-eig of one run" {
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-transformer --data d.st --d-model 8 --heads 2 --d-mlp 16 --layers 2 --steps 20 --log-every 10 \
		--tag nanda --ckpt-dir ck > log.jsonl
	hess-eig --data d.st --top 1 ck/*.safetensors > h.jsonl
	run summarize log.jsonl h.jsonl
	assert_success
	assert_equal "${#lines[@]}" 2
	assert_equal "$(jq -c '[.family, .recipe, .depth, .width, .last_step, .model.d_model, (.hessian.peak | type)]' <<<"${lines[1]}")" \
	    '["transformer","nanda",2,null,20,8,"object"]'
	assert_equal "$(jq '.hessian.peak.top' <<<"${lines[1]}")" \
	    "$(jq -s 'map(select(.record == "hessian") | .eigenvalues[0]) | max' h.jsonl)"
}
