# Stand-ins for apt-get, dpkg-query, dpkg and sudo, so that tests can run
# tools/ensure-deps as on a machine without the project's packages and
# without touching the real package database.
#
# standins_install DIR: writes the stand-ins into DIR/bin, puts it first on
# PATH, and exports FAKE (their state, DIR/fake) and GROK_DEPS_LOCK.
# $FAKE/installed   the packages "installed", one a line (absent: none)
# $FAKE/unpacked    packages dpkg-query reports unpacked, not installed
# $FAKE/calls       what apt-get and dpkg were asked to do, one line each
# $FAKE/collisions  one line each time a stand-in found the lock held
# $FAKE/failures    a count: that many installs fail (as with no network)
# $FAKE/interrupted dpkg was killed mid-install: installs fail until
#                   dpkg --configure -a
# Like dpkg's lock-frontend, the lock is taken without waiting: a second
# apt-get or dpkg while one runs fails with apt's message and exit 100.

standins_install() {
	local bin=$1/bin
	FAKE=$1/fake
	GROK_DEPS_LOCK=$1/ensure-deps.lock
	mkdir -p "$bin" "$FAKE"

	cat > "$bin/standin-lock" <<'LOCK'
# sourced: take the fake dpkg lock or fail as apt does; release on exit
if ! mkdir "$FAKE/lock-frontend" 2>/dev/null; then
	echo "$(basename "$0") $*" >> "$FAKE/collisions"
	echo "E: Could not get lock $FAKE/lock-frontend. It is held by another process" >&2
	exit 100
fi
trap 'rmdir "$FAKE/lock-frontend"' EXIT
# long enough that an install started alongside finds the lock held
sleep 0.3
LOCK

	cat > "$bin/apt-get" <<'APT'
#!/bin/bash
set -u
cmd= pkgs=()
while [ $# -gt 0 ]; do
	case $1 in
	-o) shift ;;
	-*) ;;
	*) if [ -z "$cmd" ]; then cmd=$1; else pkgs+=("$1"); fi ;;
	esac
	shift
done
. "$(dirname "$0")/standin-lock"
echo "$cmd ${pkgs[*]}" >> "$FAKE/calls"
[ "$cmd" = install ] || exit 0
if [ -e "$FAKE/interrupted" ]; then
	echo "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem." >&2
	exit 100
fi
n=$(cat "$FAKE/failures" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ]; then
	echo $((n - 1)) > "$FAKE/failures"
	echo "E: Unable to fetch some archives" >&2
	exit 100
fi
for p in "${pkgs[@]}"; do
	echo "$p" >> "$FAKE/installed"
	if [ -e "$FAKE/unpacked" ]; then sed -i "/^$p\$/d" "$FAKE/unpacked"; fi
done
exit 0
APT

	cat > "$bin/dpkg" <<'DPKG'
#!/bin/bash
set -u
. "$(dirname "$0")/standin-lock"
echo "$*" | sed 's/^--//' >> "$FAKE/calls"
rm -f "$FAKE/interrupted"
DPKG

	cat > "$bin/dpkg-query" <<'QUERY'
#!/bin/bash
# dpkg-query -W -f='${Status}' PACKAGE
p=${!#}
if grep -qx -- "$p" "$FAKE/installed" 2>/dev/null; then
	printf 'install ok installed'
elif grep -qx -- "$p" "$FAKE/unpacked" 2>/dev/null; then
	printf 'install ok unpacked'
else
	echo "dpkg-query: no packages found matching $p" >&2
	exit 1
fi
QUERY

	printf '#!/bin/sh\nexec "$@"\n' > "$bin/sudo"
	chmod +x "$bin/apt-get" "$bin/dpkg" "$bin/dpkg-query" "$bin/sudo"
	PATH=$bin:$PATH
	export PATH FAKE GROK_DEPS_LOCK
}
