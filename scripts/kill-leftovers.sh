#!/bin/bash
# Kill the processes left behind by a test run: those whose executable is
# DIR/wormhole, DIR/tests/wh_* or DIR/fuzz/fuzz_* (the libFuzzer targets
# of a -DWH_FUZZ=ON build) for one of the build directories given.
#
#   scripts/kill-leftovers.sh DIR...
#
# Matching the executable of each process exactly (not a pattern over
# command lines) spares everything else of the same checkout, e.g. a
# benchmark running from build-bench/ while the tests run from build/.
set -u
[ $# -gt 0 ] || { echo "usage: $0 DIR..." >&2; exit 2; }
dirs=()
for d in "$@"; do
	r=$(realpath -m -- "$d") && dirs+=("$r")
done
for p in /proc/[0-9]*; do
	pid=${p#/proc/}
	[ "$pid" = $$ ] && continue
	exe=$(readlink "$p/exe" 2>/dev/null) || continue
	exe=${exe% (deleted)}
	for d in "${dirs[@]}"; do
		case "$exe" in
		"$d/wormhole" | "$d"/tests/wh_* | "$d"/fuzz/fuzz_*)
			kill -9 "$pid" 2>/dev/null
			break ;;
		esac
	done
done
exit 0
