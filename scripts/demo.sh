#!/bin/bash
# Set up wormhole and run its main job on this machine: build it, share a
# sample folder with `wormhole host`, mount it with `wormhole mount`, use
# it, copy it with `wormhole get` (twice: the second moves nothing), and
# clean up.  Debian 12, as root (FUSE mounts need it here).
#
#   scripts/demo.sh [DIR]     share DIR instead of a generated sample
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

scripts/deps.sh build
cmake -S "$ROOT" -B "$ROOT/build-release" -DCMAKE_BUILD_TYPE=Release -DWH_TESTS=OFF >/dev/null
cmake --build "$ROOT/build-release" -j2 >/dev/null
WH="$ROOT/build-release/wormhole"

work=$(mktemp -d /tmp/wormhole-demo.XXXXXX)
host_pid=
cleanup() {
	if mountpoint -q "$work/mnt" 2>/dev/null; then
		"$WH" unmount "$work/mnt" || fusermount3 -u -z "$work/mnt" || true
	fi
	[ -n "$host_pid" ] && kill "$host_pid" 2>/dev/null && wait "$host_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

share=${1:-}
if [ -z "$share" ]; then
	share="$work/share"
	mkdir -p "$share/renders/shot042" "$share/docs"
	head -c $((32 * 1024 * 1024)) /dev/urandom >"$share/renders/shot042/take1.mov"
	echo "Shot list: 042, 043" >"$share/docs/notes.txt"
	ln -s docs/notes.txt "$share/README-link"
fi
mkdir -p "$work/mnt"

echo "== wormhole host $share"
"$WH" host "$share" --listen 127.0.0.1:0 --no-signal >"$work/host.out" 2>"$work/host.log" &
host_pid=$!
for _ in $(seq 100); do
	grep -q '^listening: ' "$work/host.out" 2>/dev/null && break
	sleep 0.05
done
cat "$work/host.out"
code=$(sed -n 's/^join code: //p' "$work/host.out")
addr=$(sed -n 's/^listening: //p' "$work/host.out")

echo "== wormhole mount $code $work/mnt --peer $addr"
"$WH" mount "$code" "$work/mnt" --peer "$addr"
"$WH" status

echo "== ls -lR through the mount"
ls -lR "$work/mnt"
echo "== diff -r against the shared folder"
diff -r --no-dereference "$share" "$work/mnt" && echo "identical" || { echo "the mount differs from the share" >&2; exit 1; }
if [ -f "$work/mnt/renders/shot042/take1.mov" ]; then
	echo "== copy a 32 MiB file out of the mount"
	time cp "$work/mnt/renders/shot042/take1.mov" "$work/copy.mov"
	cmp "$work/copy.mov" "$share/renders/shot042/take1.mov" && echo "copy verified"
fi

echo "== wormhole unmount"
"$WH" unmount "$work/mnt"

echo "== wormhole get: the whole share, then again (nothing crosses the wire)"
"$WH" get "$code" . "$work/copy" --peer "$addr" --cache-dir "$work/cache" --json
"$WH" get "$code" . "$work/copy" --peer "$addr" --cache-dir "$work/cache" --json
diff -r --no-dereference "$share" "$work/copy" && echo "identical" || { echo "the copy differs from the share" >&2; exit 1; }
echo "== host log"
cat "$work/host.log"
echo "demo finished: OK"
