#!/bin/bash
# Kill the processes left behind by a test run: those whose executable is
# DIR/wormhole, DIR/tests/wh_* or DIR/fuzz/fuzz_* (the libFuzzer targets
# of a -DWH_FUZZ=ON build) for one of the build directories given, and,
# with --env NAME=VALUE, whose environment holds that entry.
#
#   scripts/kill-leftovers.sh [--env NAME=VALUE] DIR...
#
# Matching the executable of each process exactly (not a pattern over
# command lines) spares everything else of the same checkout, e.g. a
# benchmark running from build-bench/ while the tests run from build/;
# scripts/test.sh also passes the TMPDIR it gave its run, which every
# process the run started inherits, so that a fuzzer or a mount started
# by hand from the same build directory is spared too.
set -u
want=""
if [ "${1:-}" = "--env" ]; then
	[ $# -ge 2 ] || { echo "usage: $0 [--env NAME=VALUE] DIR..." >&2; exit 2; }
	want=$2
	shift 2
fi
[ $# -gt 0 ] || { echo "usage: $0 [--env NAME=VALUE] DIR..." >&2; exit 2; }
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
			if [ -z "$want" ] ||
			   tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF -- "$want"; then
				kill -9 "$pid" 2>/dev/null
			fi
			break ;;
		esac
	done
done
exit 0
