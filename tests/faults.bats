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
	# SIGPIPE ends it like any Unix filter: status 128 + 13, nothing on stderr
	assert_failure 141
	assert_between $((SECONDS - start)) 0 19
	assert_equal "${#lines[@]}" 1
	assert_equal "$(jq -r .record <<<"${lines[0]}")" header
}

@test "a full disk is exit 1 with a message for every tool that writes stdout" {
	[ -c /dev/full ] || skip "this machine has no /dev/full"
	for cmd in "hess-eig --data d.st --top 1 ck/step-00000020.safetensors" \
	    "gop-spectrum --data d.st --top 1 ck/step-00000020.safetensors" \
	    "llc-estimate --data d.st --chains 1 --draws 2 ck/step-00000020.safetensors" \
	    "train-mlp --data d.st --steps 3 --width 8" \
	    "gen-modadd -p 7" \
	    "summarize log"; do
		echo "# $cmd"
		run bash -c "$cmd > /dev/full"
		assert_failure 1
		assert_output --partial "No space left on device"
	done
}

@test "a full disk is exit 1 with a message for every file a tool writes" {
	[ -c /dev/full ] || skip "this machine has no /dev/full"
	c=ck/step-00000020.safetensors
	for cmd in "gen-modadd -o /dev/full" \
	    "train-mlp --data d.st --steps 3 --width 8 --out /dev/full" \
	    "train-mlp --data d.st --steps 3 --width 8 --state /dev/full" \
	    "hess-eig --data d.st --top 1 --eigvecs /dev/full $c" \
	    "gop-spectrum --data d.st --top 1 --spectrum /dev/full $c" \
	    "gop-spectrum --data d.st --top 1 --eigvecs 1 /dev/full $c" \
	    "llc-estimate --data d.st --chains 1 --draws 2 --trace /dev/full $c"; do
		echo "# $cmd"
		run bash -c "$cmd > /dev/null"
		assert_failure 1
		assert_output --partial "/dev/full: No space left on device"
	done
}

@test "a missing output directory is exit 1 and leaves nothing" {
	run train-mlp --data d.st --steps 5 --width 8 --out nodir/final.st
	assert_failure 1
	assert_output --partial "train-mlp: error writing nodir/final.st: No such file or directory"
	assert_not_exist nodir
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

# as_user CMD...: run CMD as an unprivileged user.  Root writes into a
# read-only directory regardless of its mode, so as root the command runs
# as nobody (setpriv, util-linux) from a world-readable copy of the tools.
as_user() {
	if [ "$(id -u)" -ne 0 ]; then
		"$@"
	else
		setpriv --reuid=65534 --regid=65534 --clear-groups env PATH="$pub/bin:$PATH" "$@"
	fi
}

@test "an unwritable directory: every tool that writes a file says so, exits 1 and leaves nothing" {
	if [ "$(id -u)" -eq 0 ] && ! command -v setpriv >/dev/null; then
		skip "running as root without setpriv(1) to drop privileges"
	fi
	pub=$(mktemp -d /tmp/grokkit-ro.XXXXXX)
	mkdir "$pub/bin" "$pub/ro"
	for t in gen-modadd train-mlp hess-eig gop-spectrum llc-estimate; do cp "$(command -v $t)" "$pub/bin/"; done
	cp d.st ck/step-00000020.safetensors "$pub/"
	chmod -R a+rX "$pub"
	chmod 555 "$pub/ro"
	cd "$pub"
	c=step-00000020.safetensors
	for cmd in "gen-modadd -o ro/d.st" \
	    "train-mlp --data d.st --steps 3 --width 8 --out ro/f.st" \
	    "train-mlp --data d.st --steps 3 --width 8 --state ro/s.st" \
	    "train-mlp --data d.st --steps 3 --width 8 --ckpt-dir ro/ck" \
	    "hess-eig --data d.st --top 1 --eigvecs ro/v.st $c" \
	    "gop-spectrum --data d.st --top 1 --spectrum ro/s.st $c" \
	    "gop-spectrum --data d.st --top 1 --eigvecs 1 ro/v.st $c" \
	    "llc-estimate --data d.st --chains 1 --draws 2 --trace ro/t.st $c"; do
		echo "# $cmd"
		run as_user $cmd
		assert_failure 1
		assert_output --partial "Permission denied"
		assert_equal "$(ls -A ro)" ""
	done
	cd / && rm -rf "$pub"
}

@test "kill -9 at random moments, 25 times: files on disk are whole, and resuming ends byte-identical" {
	gen-modadd -p 23 -o d23.st
	# About 8 s of training (25 kills take at most 6 s of it) with a state
	# written every 5 steps and a checkpoint every 50, so kills land in
	# writes as well as between them.
	args=(--data d23.st --steps 12000 --batch 64 --width 96 --log-every 5 --ckpt-every 50 --seed 4)
	train-mlp "${args[@]}" --ckpt-dir whole --out whole.st > /dev/null
	RANDOM=7   # the kill moments are random, but the same on every run of the test
	killed=0
	for trial in $(seq 25); do
		resume=()
		[ -e s.st ] && resume=(--resume s.st)
		train-mlp "${args[@]}" --ckpt-dir kck --out part.st --state s.st "${resume[@]}" > /dev/null 2>&1 &
		pid=$!
		sleep "0.$(printf '%03d' $((RANDOM % 250)))"
		kill -9 "$pid" 2>/dev/null && killed=$((killed + 1))
		wait "$pid" 2>/dev/null || true
		# Every file under its final name is whole: the state, and each
		# checkpoint byte-identical to the uninterrupted run's.
		echo "# trial $trial"
		if [ -e s.st ]; then
			run st_complete s.st
			assert_success
		fi
		for f in kck/*.safetensors; do
			[ -e "$f" ] || continue
			run cmp "$f" "whole/$(basename "$f")"
			assert_success
		done
		if [ -e part.st ]; then
			run cmp part.st whole.st
			assert_success
		fi
	done
	# (too few kills would leave the test checking little)
	assert_between "$killed" 20 25
	resume=()
	[ -e s.st ] && resume=(--resume s.st)
	train-mlp "${args[@]}" --ckpt-dir kck --out part.st --state s.st "${resume[@]}" > /dev/null
	cmp part.st whole.st
	diff <(ls kck) <(ls whole)
	for f in whole/*.safetensors; do cmp "$f" "kck/$(basename "$f")"; done
}

@test "a header claiming a huge model is refused before anything is allocated for it" {
	st_raw '{"__metadata__":{"p":"11","depth":"16","width":"8192","encoding":"onehot","loss":"ce","step":"0"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 4 > huge.st
	for t in hess-eig gop-spectrum llc-estimate; do
		run $t --data d.st --any-data huge.st
		assert_failure 1
		assert_line "$t: huge.st: a model of 1007034379 parameters, but the file holds only 4 bytes of tensor data"
	done
	run train-mlp --data d.st --init huge.st --steps 1
	assert_failure 1
	assert_output "train-mlp: --init: huge.st: missing tensor 'layers.0.weight' (model: p=11 depth=2 width=128 onehot)"
}

@test "every analysis tool's --help states the limits" {
	for t in hess-eig gop-spectrum llc-estimate; do
		run $t --help
		assert_output --partial "Limits: p <= 4096, MLP depth <= 16 and width <= 8192, transformer layers"
	done
}
