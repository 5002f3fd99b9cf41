# Shared by every tests/<tool>.bats: the tools of the build under test on
# PATH, a scratch directory per test, and readers of our file formats that
# do not use our own C code (so the tests check the tools independently).

#
# Every check is an assertion that prints what it expected and what it got
# (bats-assert, bats-file, and the assert_jq and assert_between below); a
# bare `! cmd` or `a && b` would not fail a test under bats' set -e.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'
load '/usr/lib/bats/bats-file/load'

GROK_BIN=${GROK_BIN:-$BATS_TEST_DIRNAME/../build/bin}
PATH=$GROK_BIN:$PATH
export PATH

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
}

# st_header FILE: the safetensors header as JSON, read with head/tail/jq.
st_header() {
	local n
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	tail -c +9 "$1" | head -c "$n" | jq -c .
}

# st_values FILE NAME TYPE: a tensor's elements one per line (od TYPE: d4, d8, f4, f8, u1).
st_values() {
	local n begin end
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	read -r begin end < <(st_header "$1" | jq -r --arg t "$2" '.[$t].data_offsets | "\(.[0]) \(.[1])"')
	[ "$end" -gt "$begin" ] || return 0
	tail -c +$((9 + n + begin)) "$1" | head -c $((end - begin)) | od -An -v -t "$3" -w"${4:-4}" | tr -s ' ' | sed 's/^ //'
}

# pairs FILE SPLIT: "x y label" lines of one split.
pairs() {
	paste -d ' ' <(st_values "$1" "$2.x" d4 8) <(st_values "$1" "$2.y" d4 4)
}

# st_raw HEADER NBYTES: a safetensors frame with that header and NBYTES zero
# data bytes, for hand-made malformed inputs.
st_raw() {
	local n=${#1}
	printf "$(printf '\\%03o' $((n & 255)) $(((n >> 8) & 255)) 0 0 0 0 0 0)"
	printf '%s' "$1"
	head -c "$2" /dev/zero
}

# metrics LOG: the metrics records without their timings, for comparisons.
metrics() {
	jq -c 'select(.record == "metrics") | del(.elapsed)' "$1"
}

# assert_stderr ARGS: assert_output on the $stderr of `run --separate-stderr`.
assert_stderr() {
	output=$stderr assert_output "$@"
}

# st_complete FILE: the file is one whole safetensors frame: its size is the
# 8-byte length, the header and exactly the data the header's offsets name.
st_complete() {
	local n size end
	size=$(stat -c %s "$1")
	[ "$size" -ge 8 ] || return 1
	n=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
	[ $((8 + n)) -le "$size" ] || return 1
	end=$(st_header "$1" | jq '[to_entries[] | select(.key != "__metadata__") | .value.data_offsets[1]] | max // 0') || return 1
	[ "$size" -eq $((8 + n + end)) ]
}

# jq definitions for numeric checks.  The tools write a non-finite number
# as null, and jq orders null before every number (null < 1e-3 is true), so
# a check on a number must go through num, which stops jq on anything that
# is not a number.
JQ_NUM='def num: if type == "number" then . else error("not a number: \(tojson)") end;'

# assert_jq [JQ_OPTION...] FILTER [FILE...]: FILTER (num defined), on FILE or stdin,
# gives exactly one value, true.  On failure, prints the filter and what jq
# gave.  (Not jq -e: jq 1.6 exits 4 when the last input gives no output.)
assert_jq() {
	local opts=() filter out rc=0
	while [[ $1 == -* ]]; do
		case $1 in
		--arg | --argjson | --slurpfile)
			opts+=("$1" "$2" "$3")
			shift 3
			;;
		*)
			opts+=("$1")
			shift
			;;
		esac
	done
	filter=$1
	shift
	out=$(jq "${opts[@]}" "$JQ_NUM $filter" "$@" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] || [ "$out" != true ]; then
		batslib_print_kv_single_or_multi 8 filter "$filter" result "$out" |
			batslib_decorate 'jq filter is not true' | fail
	fi
}

# assert_between VALUE LO HI: VALUE is a finite decimal number with
# LO <= VALUE <= HI (NaN, null, inf and empty fail).
assert_between() {
	if ! [[ $1 =~ ^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] ||
		! awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + 0) }'; then
		batslib_print_kv_single 8 value "$1" range "[$2, $3]" |
			batslib_decorate 'value is not a number in range' | fail
	fi
}

# assert_files_differ A B: the files' contents differ.
assert_files_differ() {
	if cmp -s "$1" "$2"; then
		batslib_print_kv_single 4 a "$1" b "$2" | batslib_decorate 'files are identical' | fail
	fi
}
