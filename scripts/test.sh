#!/bin/bash
# Set up and run every test of wormhole on Debian 12, as root.
#
#   scripts/test.sh [--quick] [--no-fuzz] [--no-asan] [--no-tsan]
#
# Stages: (1) a -Werror build with unit and end-to-end tests, (2) the same
# tests under AddressSanitizer + UndefinedBehaviorSanitizer, (3) the unit
# tests and the end-to-end tests of `get` (the most threads at work on one
# file) under ThreadSanitizer, (4) every libFuzzer target for a bounded
# time.  The last line is the total, "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

quick=0 fuzz=1 asan=1 tsan=1
for a in "$@"; do
	case "$a" in
	--quick) quick=1; fuzz=0; asan=0; tsan=0 ;;
	--no-fuzz) fuzz=0 ;;
	--no-asan) asan=0 ;;
	--no-tsan) tsan=0 ;;
	-h|--help) sed -n '2,11p' "$0"; exit 0 ;;
	*) echo "scripts/test.sh: unknown option '$a'" >&2; exit 2 ;;
	esac
done

scripts/deps.sh test || { echo "scripts/test.sh: installing dependencies failed" >&2; exit 1; }

passed=0 failed=0
logdir=$(mktemp -d /tmp/wormhole-test.XXXXXX)
# Every temporary file and mount point of this run lives under $logdir/tmp,
# so the cleanup below touches only what this run made: two runs (from two
# checkouts) can share a machine.
mkdir -p "$logdir/tmp"
export TMPDIR=$logdir/tmp

cleanup() {
	# never leave mounts or daemons behind, whatever happened
	grep ' fuse.wormhole ' /proc/self/mountinfo 2>/dev/null | awk '{print $5}' |
		while read -r m; do
			m=$(printf '%b' "$m")
			case "$m" in "$logdir"/*) fusermount3 -u -z "$m" 2>/dev/null ;; esac
		done
	# only what this run started (its TMPDIR) from its build directories:
	# not build-bench/, nor a fuzzer started by hand from build-fuzz/
	"$ROOT"/scripts/kill-leftovers.sh --env "TMPDIR=$logdir/tmp" \
		"$ROOT/build" "$ROOT/build-asan" "$ROOT/build-tsan" \
		"$ROOT/build-fuzz"
}
trap cleanup EXIT

# run_ctest NAME BUILD_DIR [ctest args...]: run and add up the counts
run_ctest() {
	local name=$1 dir=$2 out
	shift 2
	out="$logdir/$name.log"
	(cd "$dir" && ctest --output-on-failure "$@") 2>&1 | tee "$out"
	local line total nfail
	line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$out" | tail -1)
	if [ -z "$line" ]; then
		if grep -q 'No tests were found' "$out"; then
			echo "stage $name: no tests found" >&2
		else
			echo "stage $name: ctest did not finish" >&2
			failed=$((failed + 1))
		fi
		return
	fi
	nfail=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
	total=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
	passed=$((passed + total - nfail))
	failed=$((failed + nfail))
}

build() {
	local dir=$1
	shift
	cmake -S "$ROOT" -B "$dir" -DWH_WERROR=ON "$@" >"$logdir/cmake-$(basename "$dir").log" 2>&1 &&
		cmake --build "$dir" -j2 2>&1 | tail -n 40
	return "${PIPESTATUS[0]}"
}

echo "=== stage 1: build (gcc, -Werror) and run unit + end-to-end tests"
if build "$ROOT/build"; then
	run_ctest unit "$ROOT/build" -L unit -j2
	run_ctest e2e "$ROOT/build" -L e2e
else
	echo "stage 1: build failed" >&2
	failed=$((failed + 1))
fi
cleanup

if [ $asan = 1 ]; then
	echo "=== stage 2: the same tests under ASan + UBSan"
	mkdir -p "$logdir/sanitizer"
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$logdir/sanitizer/asan
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	if build "$ROOT/build-asan" -DWH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug; then
		run_ctest asan-unit "$ROOT/build-asan" -L unit -j2
		run_ctest asan-e2e "$ROOT/build-asan" -L e2e
		if ls "$logdir"/sanitizer/asan* >/dev/null 2>&1; then
			echo "sanitizer reports:" >&2
			cat "$logdir"/sanitizer/asan* >&2
			failed=$((failed + 1))
		fi
	else
		echo "stage 2: build failed" >&2
		failed=$((failed + 1))
	fi
	unset ASAN_OPTIONS UBSAN_OPTIONS
	cleanup
fi

if [ $tsan = 1 ]; then
	echo "=== stage 3: unit tests, get and the mounts' end-to-end tests under TSan"
	mkdir -p "$logdir/tsan"
	# (BLAKE3's CPU feature probe is a benign race on an int; the
	# portable disk I/O, since TSan sees what pread writes but not the
	# kernel's io_uring writes, nor liburing's own ring mappings.  The
	# tests whose time is mostly waiting on the network's timeouts, and
	# that run no thread the others do not, stay out: the stage's time)
	export TSAN_OPTIONS="halt_on_error=1 exitcode=66 log_path=$logdir/tsan/tsan suppressions=$ROOT/tests/tsan.supp"
	export WH_IO=posix
	if CC=clang build "$ROOT/build-tsan" -DWH_TSAN=ON -DCMAKE_BUILD_TYPE=Debug; then
		run_ctest tsan-unit "$ROOT/build-tsan" -L unit -j2
		run_ctest tsan-e2e "$ROOT/build-tsan" \
			-R '^e2e\.test_(get|small|small_same|zstd|hostile|mount|mount_noopen|mount_small|mount_store|prefetch|fs_local)$'
		if ls "$logdir"/tsan/tsan* >/dev/null 2>&1; then
			echo "ThreadSanitizer reports:" >&2
			cat "$logdir"/tsan/tsan* >&2
			failed=$((failed + 1))
		fi
	else
		echo "stage 3: build failed" >&2
		failed=$((failed + 1))
	fi
	unset TSAN_OPTIONS WH_IO
	cleanup
fi

if [ $fuzz = 1 ]; then
	echo "=== stage 4: libFuzzer targets (bounded time each)"
	if CC=clang build "$ROOT/build-fuzz" -DWH_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug; then
		run_ctest fuzz "$ROOT/build-fuzz" -L fuzz -j2
	else
		echo "stage 3: build failed" >&2
		failed=$((failed + 1))
	fi
fi

rm -rf "$logdir"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
