#!/usr/bin/env bats
# gen-modadd: labels, splits, determinism, metadata, and every bad option.

load test_helper

@test "gen-modadd --help prints the synopsis to stdout and exits 0" {
	run gen-modadd --help
	assert_success
	assert_line --index 0 --partial "usage: gen-modadd [-p P] [--op OP]"
	assert_output --partial "Exit status: 0 success, 1 runtime error"
}

@test "gen-modadd --version" {
	run gen-modadd --version
	assert_success
	assert_output --regexp '^gen-modadd [0-9]+\.[0-9]+\.[0-9]+$'
}

@test "gen-modadd: the header has the documented layout" {
	gen-modadd -p 97 -o d.st
	run st_header d.st
	assert_success
	h=$output
	assert_equal "$(jq -r '.__metadata__.p' <<<"$h")" 97
	assert_equal "$(jq -r '.__metadata__.op' <<<"$h")" add
	assert_equal "$(jq -r '.__metadata__.frac' <<<"$h")" 0.3
	assert_equal "$(jq -r '.__metadata__.split' <<<"$h")" random
	assert_equal "$(jq -r '.__metadata__.seed' <<<"$h")" 0
	assert_equal "$(jq -r '.__metadata__.format' <<<"$h")" modadd-v1
	assert_equal "$(jq -r '.__metadata__.generator' <<<"$h")" "gen-modadd $(gen-modadd --version | cut -d' ' -f2)"
	assert_equal "$(jq -c '.["train.x"].shape' <<<"$h")" "[2823,2]"
	assert_equal "$(jq -c '.["train.y"].shape' <<<"$h")" "[2823]"
	assert_equal "$(jq -c '.["test.x"].shape' <<<"$h")" "[6586,2]"
	assert_equal "$(jq -r 'del(.__metadata__) | [.[].dtype] | unique | join(",")' <<<"$h")" "I32"
	# header padded to 8 bytes, file exactly header + data
	n=$(od -An -t u8 -N 8 d.st | tr -d ' ')
	assert_equal $((n % 8)) 0
	assert_equal "$(stat -c %s d.st)" $((8 + n + 4 * (2823 * 3 + 6586 * 3)))
}

@test "gen-modadd: stdout and -o give the same bytes" {
	gen-modadd -p 13 --seed 4 -o a.st
	gen-modadd -p 13 --seed 4 > b.st
	cmp a.st b.st
}

# Labels of every op, recomputed by awk.
check_op() {
	local op=$1 p=$2 expr=$3
	gen-modadd -p "$p" --op "$op" -o d.st
	{ pairs d.st train; pairs d.st test; } > all.txt
	awk -v p="$p" "function inv(y,  r, i) { for (i = 1; i < p; i++) if ((y * i) % p == 1) return i }
		{ x = \$1; y = \$2; want = $expr; want = ((want % p) + p) % p; if (\$3 != want) { print \"bad: \" \$0 \" want \" want; bad = 1 } }
		END { exit bad }" all.txt
}

@test "gen-modadd --op add: labels are (x + y) mod p" { check_op add 11 'x + y'; }
@test "gen-modadd --op sub: labels are (x - y) mod p" { check_op sub 11 'x - y'; }
@test "gen-modadd --op mul: labels are (x * y) mod p" { check_op mul 11 'x * y'; }
@test "gen-modadd --op div: labels are x * y^-1 mod p" { check_op div 11 'x * inv(y)'; }
@test "gen-modadd --op x2+y2" { check_op x2+y2 13 'x * x + y * y'; }
@test "gen-modadd --op x2+xy+y2" { check_op x2+xy+y2 13 'x * x + x * y + y * y'; }
@test "gen-modadd --op x3+xy" { check_op x3+xy 13 'x * x * x + x * y'; }

@test "gen-modadd: every pair appears exactly once across train and test" {
	gen-modadd -p 23 --frac 0.4 -o d.st
	{ pairs d.st train; pairs d.st test; } | cut -d' ' -f1,2 | sort > got.txt
	for x in $(seq 0 22); do for y in $(seq 0 22); do echo "$x $y"; done; done | sort > want.txt
	diff got.txt want.txt
}

@test "gen-modadd --op div omits y = 0 and keeps every other pair" {
	gen-modadd -p 7 --op div -o d.st
	{ pairs d.st train; pairs d.st test; } > all.txt
	assert_equal "$(wc -l < all.txt)" 42
	run awk '$2 == 0' all.txt
	assert_success
	assert_output ''
}

@test "gen-modadd: split sizes are round(frac * N)" {
	gen-modadd -p 10 --frac 0.25 -o d.st
	assert_equal "$(st_header d.st | jq -c '.["train.y"].shape')" "[25]"
	assert_equal "$(st_header d.st | jq -c '.["test.y"].shape')" "[75]"
	gen-modadd -p 97 --frac 0.5 -o e.st
	assert_equal "$(st_header e.st | jq -c '.["train.y"].shape')" "[4705]"   # 4704.5 rounds away from zero
}

@test "gen-modadd: the same seed gives the same bytes, another seed other pairs" {
	gen-modadd -p 31 --seed 5 -o a.st
	gen-modadd -p 31 --seed 5 -o b.st
	gen-modadd -p 31 --seed 6 -o c.st
	cmp a.st b.st
	pairs a.st train > a.txt
	pairs c.st train > c.txt
	assert_equal "$(wc -l < c.txt)" "$(wc -l < a.txt)"
	assert_files_differ a.txt c.txt
	assert_equal "$(st_header c.st | jq -r .__metadata__.seed)" 6
}

@test "gen-modadd --split label: the held-out labels are exactly the test set" {
	gen-modadd -p 17 --split label --holdout 1,2 -o d.st
	run awk '$3 != 1 && $3 != 2' <(pairs d.st test)
	assert_output ''
	run awk '$3 == 1 || $3 == 2' <(pairs d.st train)
	assert_output ''
	assert_equal "$(pairs d.st test | wc -l)" 34
	assert_equal "$(pairs d.st train | wc -l)" 255
	assert_equal "$(st_header d.st | jq -r .__metadata__.holdout)" "1,2"
	assert_equal "$(st_header d.st | jq -r .__metadata__.split)" "label"
}

# Every bad option: its exact message and exit status 2.
bad() {
	run gen-modadd "$@" -o out.st
	assert_failure 2
	assert_line --index 0 "$EXPECTED"
	assert_line --index 1 "Try 'gen-modadd --help' for more information."
	assert_not_exist out.st
}

@test "gen-modadd: p too small" { EXPECTED="gen-modadd: -p: 1 is out of range (allowed: 2..4096)" bad -p 1; }
@test "gen-modadd: p too large" { EXPECTED="gen-modadd: -p: 4097 is out of range (allowed: 2..4096)" bad -p 4097; }
@test "gen-modadd: p not a number" { EXPECTED="gen-modadd: -p: '9x' is not an integer (allowed: 2..4096)" bad -p 9x; }
@test "gen-modadd: composite p with div" {
	EXPECTED="gen-modadd: --op div needs a prime modulus, but -p 12 = 2 x 6" bad -p 12 --op div
}
@test "gen-modadd: frac 0" { EXPECTED="gen-modadd: --frac: 0 is out of range (allowed: strictly between 0 and 1)" bad --frac 0; }
@test "gen-modadd: frac 1" { EXPECTED="gen-modadd: --frac: 1 is out of range (allowed: strictly between 0 and 1)" bad --frac 1; }
@test "gen-modadd: frac negative" { EXPECTED="gen-modadd: --frac: -0.2 is out of range (allowed: strictly between 0 and 1)" bad --frac -0.2; }
@test "gen-modadd: frac not a number" { EXPECTED="gen-modadd: --frac: 'half' is not a number" bad --frac half; }
@test "gen-modadd: frac nan" { EXPECTED="gen-modadd: --frac: 'nan' is not a finite number" bad --frac nan; }
@test "gen-modadd: frac too small for p" {
	EXPECTED="gen-modadd: --frac 0.01 of 9 pairs gives 0 training pairs; both splits need at least one" bad -p 3 --frac 0.01
}
@test "gen-modadd: unknown op" {
	EXPECTED="gen-modadd: --op: unknown value 'pow' (allowed: add, sub, mul, div, x2+y2, x2+xy+y2, x3+xy)" bad --op pow
}
@test "gen-modadd: unknown split" {
	EXPECTED="gen-modadd: --split: unknown value 'half' (allowed: random, label)" bad --split half
}
@test "gen-modadd: holdout label out of range" {
	EXPECTED="gen-modadd: --holdout: 97 is out of range (allowed: 0..96)" bad --split label --holdout 1,97
}
@test "gen-modadd: holdout label repeated" {
	EXPECTED="gen-modadd: --holdout: 2 listed twice" bad --split label --holdout 2,2
}
@test "gen-modadd: holdout of every label" {
	EXPECTED="gen-modadd: --holdout 0,1 holds out every pair; nothing is left to train on" bad -p 2 --split label --holdout 0,1
}
@test "gen-modadd: holdout without the label split" { EXPECTED="gen-modadd: --holdout needs --split label" bad --holdout 1; }
@test "gen-modadd: label split without holdout" {
	EXPECTED="gen-modadd: --split label needs --holdout LABELS (example: --holdout 1,2)" bad --split label
}
@test "gen-modadd: frac with the label split" {
	EXPECTED="gen-modadd: --frac applies to --split random only; --split label splits by --holdout" bad --split label --holdout 1 --frac 0.5
}
@test "gen-modadd: seed out of range" {
	EXPECTED="gen-modadd: --seed: -1 is out of range (allowed: 0..9007199254740991)" bad --seed -1
}
@test "gen-modadd: a stray argument" { EXPECTED="gen-modadd: unexpected argument 'extra'" bad extra; }
@test "gen-modadd: an unknown option" {
	run gen-modadd --bogus
	assert_failure 2
	assert_line --index 0 --partial "unrecognized option '--bogus'"
	assert_line --index 1 "Try 'gen-modadd --help' for more information."
}

@test "gen-modadd: a full disk is a runtime error (exit 1)" {
	[ -c /dev/full ] || skip "this machine has no /dev/full"
	run gen-modadd -p 97 -o /dev/full
	assert_failure 1
	assert_output "gen-modadd: error writing /dev/full: No space left on device"
	run bash -c 'gen-modadd -p 97 > /dev/full'
	assert_failure 1
	assert_output "gen-modadd: error writing standard output: No space left on device"
}

# An unwritable directory, for every tool: tests/faults.bats.

@test "gen-modadd -o replaces an existing file atomically, leaving no temporary" {
	echo old > d.st
	gen-modadd -p 5 -o d.st
	assert_equal "$(st_header d.st | jq -r .__metadata__.p)" 5
	assert_equal "$(ls -A | grep -c tmp)" 0
}

@test "gen-modadd refuses to write binary data to a terminal" {
	command -v script >/dev/null || skip "script(1) is not installed"
	run script -qec "gen-modadd -p 5" /dev/null
	assert_failure 2
	assert_output --partial "gen-modadd: refusing to write binary data to a terminal; pipe it or use -o FILE"
}
