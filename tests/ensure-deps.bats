#!/usr/bin/env bats
# tools/ensure-deps as make -j runs it on a fresh machine, without a real
# apt: apt-get, dpkg-query and dpkg are stand-ins on PATH (standins.bash)
# that keep a fake package database and, like dpkg, take a lock and fail
# when it is held.

load test_helper
load standins

setup() {
	cd "$BATS_TEST_TMPDIR" || exit 1
	ROOT=$(cd "$BATS_TEST_DIRNAME/.." && pwd)
	standins_install "$BATS_TEST_TMPDIR"
}

# The packages each target wants, read from the script itself.
wanted() {
	bash -c 'build=; study=; test=; eval "$(grep -E "^(build|study|test)=" "$1")"; echo $build $study $test' _ \
		"$ROOT/tools/ensure-deps" | tr ' ' '\n' | sort
}

@test "ensure-deps: eight installs at once all succeed, one at a time, each package installed once" {
	pids=()
	for i in 1 2 3 4 5 6 7 8; do
		set=(build study test)
		"$ROOT/tools/ensure-deps" "${set[i % 3]}" > "out.$i" 2>&1 &
		pids+=($!)
	done
	failed=0
	for i in "${!pids[@]}"; do
		wait "${pids[i]}" || { failed=$((failed + 1)); cat "out.$((i + 1))"; }
	done
	assert_equal "$failed" 0
	# the stand-in never found its lock held: no two apt-get or dpkg at once
	assert_file_not_exist "$FAKE/collisions"
	# every wanted package, and none twice (each later install looked again)
	assert_equal "$(sort "$FAKE/installed")" "$(wanted)"
	# through the stand-in apt-get
	[ "$(grep -c '^install ' "$FAKE/calls")" -ge 1 ]
}

@test "ensure-deps: the stand-in fails two installs that overlap (what the lock prevents)" {
	# The check of the test above is only as good as the stand-in's lock.
	apt-get install -y pkg-a > a.out 2>&1 &
	sleep 0.1
	run apt-get install -y pkg-b
	wait
	assert_failure 100
	assert_output --partial "E: Could not get lock"
	assert_file_exist "$FAKE/collisions"
}

@test "ensure-deps: nothing missing, nothing run" {
	wanted > "$FAKE/installed"
	run "$ROOT/tools/ensure-deps" test
	assert_success
	assert_output ""
	assert_file_not_exist "$FAKE/calls"
}

@test "ensure-deps: a failed install exits 1 and leaves nothing the next try trips on" {
	echo 2 > "$FAKE/failures"   # the install and its retry both fail (e.g. no network)
	run timeout 20 "$ROOT/tools/ensure-deps" study
	assert_failure 1
	assert_line --index 0 "ensure-deps: installing: build-essential pkg-config libopenblas-dev libopenblas-pthread-dev liblapacke-dev libjansson-dev jq gnuplot-nox"
	assert_line "ensure-deps: apt-get could not install: build-essential pkg-config libopenblas-dev libopenblas-pthread-dev liblapacke-dev libjansson-dev jq gnuplot-nox"
	assert_file_not_exist "$FAKE/installed"
	# the lock is free again and the next run installs everything
	run timeout 20 "$ROOT/tools/ensure-deps" study
	assert_success
	assert_equal "$(sort "$FAKE/installed" | tr '\n' ' ')" "build-essential gnuplot-nox jq libjansson-dev liblapacke-dev libopenblas-dev libopenblas-pthread-dev pkg-config "
}

@test "ensure-deps: an install killed half-way is finished with dpkg --configure -a" {
	touch "$FAKE/interrupted"
	echo jq > "$FAKE/unpacked"   # unpacked, not configured: still missing
	run timeout 20 "$ROOT/tools/ensure-deps" study
	assert_success
	assert_equal "$(grep -c '^configure -a' "$FAKE/calls")" 1
	assert_file_not_exist "$FAKE/interrupted"
	assert_equal "$(grep -cx jq "$FAKE/installed")" 1
}

@test "ensure-deps: waits for the lock, and says so when another install holds it too long" {
	flock "$GROK_DEPS_LOCK" sleep 3 &
	sleep 0.2
	GROK_DEPS_WAIT=1 run "$ROOT/tools/ensure-deps" build
	assert_failure 1
	assert_output "ensure-deps: another install held $GROK_DEPS_LOCK for 1 s; try again when it is done"
	assert_file_not_exist "$FAKE/calls"
	wait
	# with time to wait, the same install goes through once the holder is done
	flock "$GROK_DEPS_LOCK" sleep 1 &
	sleep 0.2
	run "$ROOT/tools/ensure-deps" build
	assert_success
	wait
}

@test "ensure-deps: an unknown target is a usage error" {
	run "$ROOT/tools/ensure-deps" everything
	assert_failure 2
	assert_output "usage: ensure-deps build|study|test|ref|slurm"
}
