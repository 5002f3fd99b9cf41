#!/usr/bin/env bats
# gop-spectrum's routes: the default record (each statistic by its
# cheapest exact route) against --full (every statistic from dsyevd's whole
# spectrum) on the same checkpoint, for a Gram of full rank and for one
# whose rows repeat (rank at most the distinct rows).

load test_helper
bats_require_minimum_version 1.5.0

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 40 --log-every 40 --width 12 --ckpt-dir ck > /dev/null
}

# repeat_rows IN OUT K: IN with every training row K times (test rows kept).
repeat_rows() {
	python3 - "$1" "$2" "$3" <<'EOF'
import json, struct, sys
src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = open(src, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
head = json.loads(raw[8:8 + n])
body = raw[8 + n:]
out, blob = {"__metadata__": head["__metadata__"]}, b""
for name in ("train.x", "train.y", "test.x", "test.y"):
    t = head[name]
    data = body[t["data_offsets"][0]:t["data_offsets"][1]]
    shape = list(t["shape"])
    if name.startswith("train."):
        data, shape[0] = data * k, shape[0] * k
    out[name] = {"dtype": t["dtype"], "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
    blob += data
h = json.dumps(out).encode()
h += b" " * (-len(h) % 8)
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + blob)
EOF
}

# same_as_full CHEAP FULL: every statistic the cheap record gives equals the
# full route's: rank and its tolerance, trace, Frobenius norm, participation
# ratio, stable rank and the top 10 to 1e-10 relative, and the low end
# (log-determinant, smallest, condition) where the cheap record has it.
same_as_full() {
	for part in gop centred; do
		assert_jq -n --argjson a "$1" --argjson b "$2" --arg p "$part" '
		    def rel(x; y): ((x | num) - (y | num) | fabs) <= 1e-10 * ((y | num) | fabs);
		    $a[$p] as $c | $b[$p] as $f |
		    $c.rank == $f.rank and rel($c.rank_tol; $f.rank_tol) and rel($c.trace; $f.trace)
		    and rel($c.frobenius; $f.frobenius) and rel($c.participation_ratio; $f.participation_ratio)
		    and rel($c.stable_rank; $f.stable_rank) and rel($c.spectral; $f.spectral)
		    and ($c.top | length) == 10 and ([$c.top, $f.top] | transpose | all(rel(.[0]; .[1])))
		    and ($c.logdet == null or (($c.logdet | num) - ($f.logdet | num) | fabs) <= 1e-9 * ([1, ($f.logdet | fabs)] | max))
		    and ($c.smallest == null or rel($c.smallest; $f.smallest))
		    and ($c.condition == null or rel($c.condition; $f.condition))'
	done
}

@test "gop-spectrum routes: full rank, every statistic but the entropy effective rank without the spectrum" {
	a=$(gop-spectrum --data d.st ck/step-00000040.safetensors | tail -1)
	b=$(gop-spectrum --data d.st --full ck/step-00000040.safetensors | tail -1)
	same_as_full "$a" "$b"
	assert_equal "$(jq -c '.gop.routes | [.trace, .frobenius, .top, .rank, .logdet, .smallest, .condition, .effective_rank]' <<<"$a")" \
	    '["matrix","matrix","lanczos","lanczos-inverse","cholesky","lanczos-inverse","lanczos/lanczos-inverse",null]'
	# the centred Gram loses the ones vector exactly: rank n - 1, its low end from K's own factor
	assert_equal "$(jq -c '[.n - .centred.rank, .centred.routes.logdet, .centred.routes.centring, .centred.smallest]' <<<"$a")" \
	    '[1,"cholesky","projection",null]'
	# started from K's top Ritz vectors, the centred top 10 takes fewer products than K's own
	assert_jq '.centred.routes.lanczos_products < .gop.routes.lanczos_products' <<<"$a"
	assert_jq '.gop.effective_rank == null and (.gop.logdet | num) == .gop.logdet and (.centred.condition | num) >= 1' <<<"$a"
	assert_jq '[.gop.routes, .centred.routes | to_entries[] | .value] | unique == ["spectrum"]' <<<"$b"
}

@test "gop-spectrum routes: rows that repeat, rank by inertia and no log-determinant without the spectrum" {
	repeat_rows d.st r.st 3
	a=$(gop-spectrum --data r.st --any-data ck/step-00000040.safetensors | tail -1)
	b=$(gop-spectrum --data r.st --any-data --full ck/step-00000040.safetensors | tail -1)
	assert_equal "$(jq .n <<<"$a")" 183
	same_as_full "$a" "$b"
	# 61 distinct gradients: rank 61 of 183 on both routes, the 61 the full-rank Gram of the unrepeated rows has
	assert_equal "$(jq -c '[.gop.rank, .gop.routes.rank, .gop.logdet, .gop.routes.logdet, .gop.condition]' <<<"$a")" \
	    '[61,"inertia",null,null,null]'
	c=$(gop-spectrum --data d.st ck/step-00000040.safetensors | tail -1)
	# repeating every row k times leaves K's non-zero spectrum unchanged (K = (1/kn) sum over k copies)
	assert_jq -n --argjson a "$a" --argjson c "$c" '[$a.gop.top, $c.gop.top] | transpose | all((.[0] - .[1] | fabs) <= 1e-10 * .[1])'
	# the full route's log-determinant over those 61 is the unrepeated Gram's, which the cheap route gives by Cholesky
	assert_jq -n --argjson b "$b" --argjson c "$c" '$c.gop.routes.logdet == "cholesky" and (($b.gop.logdet | num) - ($c.gop.logdet | num) | fabs) <= 1e-8 * ($c.gop.logdet | fabs)'
}

@test "gop-spectrum routes: --spectrum implies the full route, and its first eigenvalue is the cheap spectral norm" {
	a=$(gop-spectrum --data d.st ck/step-00000040.safetensors | tail -1)
	gop-spectrum --data d.st --spectrum s.st ck/step-00000040.safetensors > out
	assert_equal "$(head -1 out | jq .config.full)" true
	assert_jq '.gop.routes.logdet == "spectrum" and (.gop.effective_rank | num) >= 1' < <(tail -1 out)
	first=$(st_values s.st gop f8 8 | head -1)
	assert_jq -n --argjson a "$a" --argjson s "$first" '(($a.gop.spectral | num) - $s | fabs) <= 1e-10 * $s'
}

@test "gop-spectrum routes: --top past n / 4 takes dsyevr, the same numbers" {
	a=$(gop-spectrum --data d.st --top 10 ck/step-00000040.safetensors | tail -1)
	b=$(gop-spectrum --data d.st --top 20 ck/step-00000040.safetensors | tail -1)
	assert_equal "$(jq -c '[.gop.routes.top, .gop.routes.lanczos_products > 0]' <<<"$a")" '["lanczos",true]'
	assert_equal "$(jq -c '[.gop.routes.top, .gop.routes.lanczos_products]' <<<"$b")" '["dsyevr",0]'
	assert_jq -n --argjson a "$a" --argjson b "$b" '[$a.gop.top, $b.gop.top[:10]] | transpose | all((.[0] - .[1] | fabs) <= 1e-10 * .[1])'
	# the centred statistics: by projection through K's factor, and with a top past (n - 1) / 4 on the
	# deflated matrix (Householder, its own factorisation): the same numbers
	assert_equal "$(jq -c '[.centred.routes.centring, .centred.routes.top]' <<<"$a")" '["projection","lanczos"]'
	assert_equal "$(jq -c '[.centred.routes.centring, .centred.routes.top]' <<<"$b")" '["householder","dsyevr"]'
	assert_jq -n --argjson a "$a" --argjson b "$b" '
	    def rel(x; y; t): ((x | num) - (y | num) | fabs) <= t * ((y | num) | fabs);
	    $a.centred as $p | $b.centred as $h |
	    $p.rank == $h.rank and rel($p.trace; $h.trace; 1e-12) and rel($p.frobenius; $h.frobenius; 1e-12)
	    and rel($p.logdet; $h.logdet; 1e-9) and rel($p.condition; $h.condition; 1e-9)
	    and ([$p.top, $h.top[:10]] | transpose | all(rel(.[0]; .[1]; 1e-10)))'
}
