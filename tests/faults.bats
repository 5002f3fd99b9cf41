#!/usr/bin/env bats
# Faults every tool must survive: a closed pipe, a full disk, a missing
# directory; a clear message, the right exit status, no partial file.

load test_helper

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	gen-modadd -p 11 --frac 0.5 -o d.st
	train-mlp --data d.st --steps 20 --log-every 10 --width 8 --ckpt-dir ck > log
}

@test "a closed pipe ends train-mlp quickly and quietly" {
	start=$SECONDS
	run bash -c 'set -o pipefail; train-mlp --data d.st --steps 1000000 --width 8 | head -1'
	[ $((SECONDS - start)) -lt 20 ]
	[ "$(jq -r .record <<<"${lines[0]}")" = header ]
	[ "${#lines[@]}" -eq 1 ]   # nothing on stderr: SIGPIPE ends it like any Unix filter
}

@test "a full disk is exit 1 with a message for every tool that writes stdout" {
	for cmd in "hess-eig --data d.st --top 1 ck/step-00000020.safetensors" \
	    "gop-spectrum --data d.st --top 1 ck/step-00000020.safetensors" \
	    "summarize log"; do
		run bash -c "$cmd > /dev/full"
		[ "$status" -eq 1 ] || { echo "$cmd: status $status"; false; }
		[[ $output == *"No space left on device"* ]] || { echo "$cmd: $output"; false; }
	done
}

@test "a missing output directory is exit 1 and leaves nothing" {
	run train-mlp --data d.st --steps 5 --width 8 --out nodir/final.st
	assert_failure 1
	assert_output --partial "train-mlp: error writing nodir/final.st: No such file or directory"
	[ ! -e nodir ]
	run gop-spectrum --data d.st --spectrum nodir/s.st ck/step-00000020.safetensors
	assert_failure 1
	assert_output --partial "gop-spectrum: error writing nodir/s.st: No such file or directory"
	run gen-modadd -o nodir/d.st
	assert_failure 1
	assert_output "gen-modadd: nodir/d.st: No such file or directory"
}

@test "a checkpoint with a NaN weight is refused" {
	cp ck/step-00000020.safetensors nan.st
	n=$(od -An -t u8 -N 8 nan.st | tr -d ' ')
	printf '\000\000\300\177' | dd of=nan.st bs=1 seek=$((8 + n)) conv=notrunc status=none   # a float32 NaN
	run hess-eig --data d.st nan.st
	assert_failure 1
	assert_output --partial "hess-eig: nan.st: tensor 'layers.0.weight' holds a non-finite value at index 0"
}
