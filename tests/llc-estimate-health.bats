#!/usr/bin/env bats
# llc-estimate: the preconditioned and restricted samplers, --epsilon auto,
# and each record's chain health (MALA acceptance, drift, ESS, R-hat).

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 40 --log-every 40 --width 12 --ckpt-dir ck > log
	ck=ck/step-00000040.safetensors
}

@test "llc-estimate: every record carries the chains' health" {
	run llc-estimate --data d.st --chains 4 --draws 40 "$ck"
	assert_success
	l=${lines[1]}
	assert_equal "$(jq '[.rhat, .ess_bulk, .ess_llc, .llc_mcse] | map(type == "number" and . > 0) | all' <<<"$l")" true
	assert_equal "$(jq '.rhat < 2 and .ess_llc <= 160 * (160 | log10)' <<<"$l")" true
	assert_equal "$(jq '[.chains[] | .mala_mean >= 0 and .mala_mean <= 1 and .mala_min <= .mala_mean] | all' <<<"$l")" true
	assert_equal "$(jq '[.chains[] | (.drift_z | type) == "number" and .ess > 0] | all' <<<"$l")" true
	assert_equal "$(jq '[.chains[] | .precond_min == 1 and .precond_max == 1] | all' <<<"$l")" true
	assert_equal "$(jq -c '.settings | [.precond, .restrict, .moving_params == 0]' <<<"$l")" '["none",null,false]'
	assert_equal "$(jq '.settings.moving_params == .params' <<<"$l")" true
}

@test "llc-estimate: --precond none is the default sampler, rmsprop another, each fixed by its seed" {
	a=$(llc-estimate --data d.st --chains 3 --draws 20 "$ck" | tail -1 | jq -c .llc_per_chain)
	b=$(llc-estimate --data d.st --chains 3 --draws 20 --precond none "$ck" | tail -1 | jq -c .llc_per_chain)
	c=$(llc-estimate --data d.st --chains 3 --draws 20 --precond rmsprop "$ck" | tail -1 | jq -c .llc_per_chain)
	d=$(llc-estimate --data d.st --chains 3 --draws 20 --precond rmsprop "$ck" | tail -1 | jq -c .llc_per_chain)
	e=$(llc-estimate --data d.st --chains 3 --draws 20 --precond rmsprop --freeze --burn-in 5 "$ck" | tail -1)
	assert_equal "$a" "$b"
	assert_equal "$c" "$d"
	[ "$a" != "$c" ]
	assert_equal "$(jq -c .settings.rmsprop <<<"$e")" '{"alpha":0.99,"delta":0.1,"freeze":true}'
	# G = 1 / (sqrt(v) + delta) is at most 1 / delta.
	assert_equal "$(jq '[.chains[] | .precond_max <= 10 and .precond_min > 0] | all' <<<"$e")" true
}

@test "llc-estimate --epsilon auto: lambda_max is hess-eig's top eigenvalue, epsilon the smaller of the margin's and the MALA bound" {
	top=$(hess-eig --data d.st --top 1 "$ck" | tail -1 | jq '.eigenvalues[0]')
	l=$(llc-estimate --data d.st --chains 2 --draws 10 --epsilon auto "$ck" | tail -1)
	assert_equal "$(jq --argjson t "$top" '(.settings.epsilon_auto.lambda_max - $t) / $t | fabs < 1e-3' <<<"$l")" true
	assert_equal "$(jq '.settings | .epsilon_auto.epsilon_margin - 4 / (20 * (.nbeta * .epsilon_auto.lambda_max + .gamma)) | fabs < 1e-15' <<<"$l")" true
	# The MALA bound, independently: 2 Phi(-sqrt(eps^3 S / 16) / 2) = 0.97, S = (d - 1) gamma^3 + (nbeta lambda + gamma)^3.
	x=0.037608287661255936   # Phi^-1(1 - 0.97 / 2): python3 -c "from statistics import NormalDist; print(NormalDist().inv_cdf(0.515))"
	assert_equal "$(jq --argjson x $x '.settings | (.nbeta * .epsilon_auto.lambda_max + .gamma) as $a |
	    ((.moving_params - 1) * pow(.gamma; 3) + pow($a; 3)) as $S |
	    (.epsilon_auto.epsilon_mala - pow(64 * $x * $x / $S; 1 / 3)) / .epsilon_auto.epsilon_mala | fabs < 1e-9' <<<"$l")" true
	assert_equal "$(jq '.settings | .epsilon == ([.epsilon_auto.epsilon_margin, .epsilon_auto.epsilon_mala] | min) and .epsilon_auto.mala_target == 0.97' <<<"$l")" true
	# At margin 1000 the margin's bound is the smaller; RMSprop multiplies it by delta.
	l=$(llc-estimate --data d.st --chains 2 --draws 10 --epsilon auto --margin 1000 --precond rmsprop --rms-delta 0.5 "$ck" | tail -1)
	assert_equal "$(jq '.settings | .epsilon_auto.epsilon_margin < .epsilon_auto.epsilon_mala' <<<"$l")" true
	assert_equal "$(jq '.settings | .epsilon - 0.5 * 4 / (1000 * (.nbeta * .epsilon_auto.lambda_max + .gamma)) | fabs < 1e-15' <<<"$l")" true
	# --eps-scale multiplies the chosen step (the calibration grid's axis) and needs auto.
	l=$(llc-estimate --data d.st --chains 2 --draws 10 --epsilon auto --eps-scale 0.25 "$ck" | tail -1)
	assert_equal "$(jq '.settings | (.epsilon / ([.epsilon_auto.epsilon_margin, .epsilon_auto.epsilon_mala] | min) - 0.25 | fabs < 1e-15) and .epsilon_auto.scale == 0.25' <<<"$l")" true
	run llc-estimate --data d.st --epsilon 1e-3 --eps-scale 2 "$ck"
	assert_failure 2
	assert_output --partial "llc-estimate: --eps-scale scales --epsilon auto's step: it needs --epsilon auto"
	run llc-estimate --data d.st --epsilon auto --eps-scale 0 "$ck"
	assert_failure 2
	# At margin 1 the MALA bound is the smaller.
	l=$(llc-estimate --data d.st --chains 2 --draws 10 --epsilon auto --margin 1 "$ck" | tail -1)
	assert_equal "$(jq '.settings | .epsilon == .epsilon_auto.epsilon_mala and .epsilon_auto.epsilon_mala < .epsilon_auto.epsilon_margin' <<<"$l")" true
}

@test "llc-estimate: the step's AVX-512 build and the baseline give the same draws, plain and RMSprop with MALA" {
	# Width 64: 2187 parameters, more than one of the step's 2048-parameter blocks.
	train-mlp --data d.st --steps 5 --log-every 5 --width 64 --ckpt-dir ck64 > log64
	for f in "" "--precond rmsprop --mala-every 3"; do
		a=$(llc-estimate --data d.st --chains 2 --draws 30 --burn-in 5 $f ck64/step-00000005.safetensors | tail -1 |
		    jq -c '[.llc_per_chain, [.chains[] | .mala_mean, .mala_batch_mean, .precond_min]]')
		b=$(GROK_SGLD_BASELINE=1 llc-estimate --data d.st --chains 2 --draws 30 --burn-in 5 $f ck64/step-00000005.safetensors |
		    tail -1 | jq -c '[.llc_per_chain, [.chains[] | .mala_mean, .mala_batch_mean, .precond_min]]')
		assert_equal "$a" "$b"
	done
	assert_equal "$(jq -r '[.[0][] | type] | unique | join(",")' <<<"$a")" number
}

@test "llc-estimate --restrict: the moving set is a tensor's or a layer's parameters; an unknown name is an error" {
	w0=$(st_header "$ck" | jq '.["layers.0.weight"].shape | .[0] * .[1]')
	l1=$(st_header "$ck" | jq '(.["layers.1.weight"].shape | .[0] * .[1]) + .["layers.1.bias"].shape[0]')
	l=$(llc-estimate --data d.st --chains 2 --draws 10 --restrict layers.0.weight "$ck" | tail -1)
	assert_equal "$(jq .settings.moving_params <<<"$l")" "$w0"
	assert_equal "$(jq -r .settings.restrict <<<"$l")" layers.0.weight
	l=$(llc-estimate --data d.st --chains 2 --draws 10 --restrict layers.1,layers.1.bias "$ck" | tail -1)
	assert_equal "$(jq .settings.moving_params <<<"$l")" "$l1"
	run llc-estimate --data d.st --chains 2 --draws 10 --restrict layers.9 "$ck"
	assert_failure 1
	assert_output --partial "llc-estimate: --restrict: $ck has no tensor or group called 'layers.9'"
}

@test "llc-estimate: the new options' bad values are usage errors" {
	run llc-estimate --data d.st --precond adam "$ck"
	assert_failure 2
	assert_output --partial "--precond"
	run llc-estimate --data d.st --precond rmsprop --rms-alpha 1 "$ck"
	assert_failure 2
	assert_output --partial "--rms-alpha: 1 is not in [0, 1)"
	run llc-estimate --data d.st --freeze "$ck"
	assert_failure 2
	assert_output --partial "--freeze holds RMSprop's preconditioner: it needs --precond rmsprop"
	run llc-estimate --data d.st --epsilon auto --margin 0 "$ck"
	assert_failure 2
	run llc-estimate --data d.st --epsilon fast "$ck"
	assert_failure 2
	run llc-estimate --data d.st --epsilon auto --lanczos-steps 1 "$ck"
	assert_failure 2
}

# The health rule, recomputed from the record's own diagnostics.
rule_flags='[
	(if [.chains[] | .nonfinite_fraction > 0] | any then "nonfinite" else empty end),
	(if [.chains[] | .exploded_fraction > 0] | any then "exploded" else empty end),
	(if [.chains[] | (.drift_z | fabs) > $s.max_drift] | any then "drift" else empty end),
	(if $s.min_mala > 0 and ([.chains[] | (if .mala_batch_n > 0 then .mala_batch_mean else .mala_mean end) < $s.min_mala] | any) then "mala" else empty end),
	(if .rhat > $s.max_rhat then "rhat" else empty end),
	(if $s.min_ess > 0 and .ess_llc < $s.min_ess then "ess" else empty end),
	(if .llc_mean < 0 then "negative" else empty end),
	(if .llc_mean / .settings.nbeta > .settings.explode then "nonlocal" else empty end),
	(if $s.min_relax > 0 and (.relaxation_steps == null or .settings.burn_in < $s.min_relax * .relaxation_steps) then "short" else empty end)]'

@test "llc-estimate: the record's flags are its health rule applied to its own diagnostics" {
	for args in "" "--max-rhat 1.001 --max-drift 0.5" "--min-mala 0 --min-ess 0 --max-drift 1e6 --max-rhat 1e6" \
	    "--mala-every 0 --min-mala 0.6" "--mala-every 3 --min-mala 0.99" "--epsilon 1e-6 --min-mala 0.999" \
	    "--explode 1e-3" "--burn-in 5 --min-relax 1" "--burn-in 50 --min-relax 1"; do
		l=$(llc-estimate --data d.st --chains 4 --draws 60 $args "$ck" | tail -1)
		assert_equal "$(jq -c '.flags | type' <<<"$l")" '"array"'
		assert_equal "$(jq -c '.settings.health as $s | '"$rule_flags" <<<"$l")" "$(jq -c .flags <<<"$l")"
		assert_equal "$(jq '.healthy == (.flags == [])' <<<"$l")" true
		assert_equal "$(jq '.chains_flagged == ([.chains[] | select(.flags != [])] | length)' <<<"$l")" true
	done
	assert_equal "$(jq -c .settings.health <<<"$(llc-estimate --data d.st --chains 2 --draws 10 "$ck" | tail -1)")" \
	    '{"max_rhat":1.01,"max_drift":4,"min_mala":0.9,"min_ess":100,"mala_every":10,"min_relax":0}'
}

@test "llc-estimate: each health rule flags when its threshold is out of reach, and not when it is off" {
	base="--data d.st --chains 3 --draws 60 --max-rhat 1e6 --max-drift 1e6 --min-mala 0 --min-ess 0"
	l=$(llc-estimate $base "$ck" | tail -1)
	assert_equal "$(jq -c '[.healthy, .flags, .chains_flagged]' <<<"$l")" '[true,[],0]'
	l=$(llc-estimate $base --max-drift 1e-9 "$ck" | tail -1)
	assert_equal "$(jq -c '[.healthy, .flags, [.chains[].flags[]]]' <<<"$l")" '[false,["drift"],["drift","drift","drift"]]'
	l=$(llc-estimate $base --min-mala 1 "$ck" | tail -1)
	assert_equal "$(jq -c '[.flags, [.chains[].flagged]]' <<<"$l")" '[["mala"],[true,true,true]]'
	l=$(llc-estimate $base --min-ess 1e12 "$ck" | tail -1)
	assert_equal "$(jq -c '[.flags, .chains_flagged]' <<<"$l")" '[["ess"],0]'
	l=$(llc-estimate $base --max-rhat 1 --chains 2 --draws 8 --seed 1 "$ck" | tail -1)
	assert_equal "$(jq -c 'if .rhat > 1 then .flags == ["rhat"] else .flags == [] end' <<<"$l")" true
}

@test "llc-estimate: a chain that blows up is flagged nonfinite or exploded, and its null R-hat flags rhat" {
	run --separate-stderr llc-estimate --data d.st --chains 2 --draws 50 --epsilon 1 --gamma 1 --max-rhat 1e6 "$ck"
	assert_success
	l=${lines[1]}
	assert_equal "$(jq -c '.healthy' <<<"$l")" false
	assert_equal "$(jq -c '[.flags[] | select(. == "nonfinite" or . == "exploded")] | length > 0' <<<"$l")" true
	assert_equal "$(jq -c '[.chains[] | .left_basin == ((.flags | index("exploded")) != null or (.flags | index("nonfinite")) != null)] | all' <<<"$l")" true
	assert_equal "$(jq -c 'if .rhat == null then (.flags | index("rhat")) != null else true end' <<<"$l")" true
}

@test "llc-estimate --mala-every: the same-minibatch acceptance every K-th draw step, and no draw changes" {
	l=$(llc-estimate --data d.st --chains 2 --draws 30 --mala-every 3 "$ck" | tail -1)
	assert_equal "$(jq -c '[.chains[].mala_batch_n]' <<<"$l")" '[10,10]'
	assert_equal "$(jq '[.chains[] | .mala_batch_min <= .mala_batch_mean and .mala_batch_mean <= 1] | all' <<<"$l")" true
	l0=$(llc-estimate --data d.st --chains 2 --draws 30 --mala-every 0 "$ck" | tail -1)
	assert_equal "$(jq -c '[.chains[] | [.mala_batch_n, .mala_batch_mean]]' <<<"$l0")" '[[0,null],[0,null]]'
	assert_equal "$(jq -c '[.llc_per_chain, [.chains[].mala_mean]]' <<<"$l0")" "$(jq -c '[.llc_per_chain, [.chains[].mala_mean]]' <<<"$l")"
	run llc-estimate --data d.st --mala-every -1 "$ck"
	assert_failure 2
	assert_output --partial "--mala-every"
}

@test "llc-estimate: an estimate below 0 (chains that found a lower loss than w*'s) is flagged negative" {
	# At initialisation w* is no minimum: a cold chain (large nbeta) runs downhill.
	l=$(llc-estimate --data d.st --chains 2 --draws 40 --nbeta 10000 --epsilon 1e-5 ck/step-00000000.safetensors | tail -1)
	assert_equal "$(jq -c '[.llc_mean < 0, .flags, .healthy]' <<<"$l")" '[true,["negative"],false]'
	l=$(llc-estimate --data d.st --chains 2 --draws 40 --nbeta 100 --epsilon 1e-5 ck/step-00000000.safetensors | tail -1)
	assert_equal "$(jq -c '[.llc_mean > 0, (.flags | index("negative"))]' <<<"$l")" '[true,null]'
}

@test "llc-estimate: a posterior whose mean loss rise passes --explode is flagged nonlocal, not only exploded" {
	base="--data d.st --chains 2 --draws 40 --max-rhat 1e6 --max-drift 1e6 --min-mala 0 --min-ess 0"
	l=$(llc-estimate $base "$ck" | tail -1)
	rise=$(jq '.llc_mean / .settings.nbeta' <<<"$l")
	assert_equal "$(jq -c '[.llc_mean > 0, .flags]' <<<"$l")" '[true,[]]'
	# A margin under the mean rise: the mean is past it, so some draws are too.
	run --separate-stderr llc-estimate $base --explode "$(jq -n "$rise / 2")" "$ck"
	assert_success
	l=${lines[-1]}
	assert_equal "$(jq -c '[.flags, .healthy]' <<<"$l")" '[["exploded","nonlocal"],false]'
	# The warning says the step size cannot help a posterior that is not local.
	assert_stderr --partial "the posterior is not local"
	assert_stderr --partial "a smaller --epsilon does not change that"
	# A margin over the mean rise but under the largest draw's: exploded alone,
	# and the warning points at the step size.
	top=$(jq '([.chains[].loss_max] | max) - .init_loss' <<<"$l")
	run --separate-stderr llc-estimate $base --explode "$(jq -n "($rise + $top) / 2")" "$ck"
	assert_success
	assert_equal "$(jq -c '.flags' <<<"${lines[-1]}")" '["exploded"]'
	assert_stderr --partial "a smaller --epsilon or a larger --gamma keeps them local"
}

@test "llc-estimate: relaxation_steps is 1 / (epsilon gamma G_min); --min-relax flags a burn-in shorter than K of them" {
	base="--data d.st --chains 2 --draws 40 --max-rhat 1e6 --max-drift 1e6 --min-mala 0 --min-ess 0 --epsilon 1e-3 --gamma 100"
	l=$(llc-estimate $base "$ck" | tail -1)
	assert_equal "$(jq '.relaxation_steps - 10 | fabs < 1e-9' <<<"$l")" true
	assert_equal "$(jq -c '.flags' <<<"$l")" '[]'
	assert_equal "$(llc-estimate $base --burn-in 25 --min-relax 3 "$ck" | tail -1 | jq -c .flags)" '["short"]'
	assert_equal "$(llc-estimate $base --burn-in 35 --min-relax 3 "$ck" | tail -1 | jq -c .flags)" '[]'
	# Preconditioned: the least preconditioned parameter relaxes slowest.
	l=$(llc-estimate $base --precond rmsprop --freeze --burn-in 10 "$ck" | tail -1)
	assert_equal "$(jq '(.relaxation_steps * .settings.epsilon * .settings.gamma * ([.chains[].precond_min] | min) - 1) | fabs < 1e-6' <<<"$l")" true
	# No localisation: the slowest direction never relaxes, so the rule flags while it is on.
	l=$(llc-estimate $base --gamma 0 --burn-in 10 --min-relax 1 "$ck" | tail -1)
	assert_equal "$(jq -c '[.relaxation_steps, (.flags | index("short") != null)]' <<<"$l")" '[null,true]'
	l=$(llc-estimate $base --gamma 0 --burn-in 10 "$ck" | tail -1)
	assert_equal "$(jq -c '[.relaxation_steps, (.flags | index("short"))]' <<<"$l")" '[null,null]'
}

@test "llc-estimate: the health thresholds' bad values are usage errors" {
	run llc-estimate --data d.st --min-relax -1 "$ck"
	assert_failure 2
	assert_output --partial "--min-relax"
	run llc-estimate --data d.st --max-rhat 0.9 "$ck"
	assert_failure 2
	assert_output --partial "--max-rhat"
	run llc-estimate --data d.st --max-drift 0 "$ck"
	assert_failure 2
	assert_output --partial "--max-drift"
	run llc-estimate --data d.st --min-mala 1.5 "$ck"
	assert_failure 2
	assert_output --partial "--min-mala"
	run llc-estimate --data d.st --min-ess -1 "$ck"
	assert_failure 2
	assert_output --partial "--min-ess"
}
