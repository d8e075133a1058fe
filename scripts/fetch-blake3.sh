#!/bin/sh
# Bring the official BLAKE3 C implementation into .deps/blake3/c without
# vendoring it: Debian ships it as source inside librust-blake3-dev; we
# download that package (without installing it and its Rust dependencies)
# and unpack only the C directory.  Idempotent.
set -eu
cd "$(dirname "$0")/.."
dest=.deps/blake3
[ -f "$dest/c/blake3.h" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download librust-blake3-dev >/dev/null 2>&1) || {
	apt-get update -q >/dev/null
	(cd "$tmp" && apt-get download librust-blake3-dev)
}
dpkg-deb -x "$tmp"/librust-blake3-dev_*.deb "$tmp/x"
src=$(ls -d "$tmp"/x/usr/share/cargo/registry/blake3-*/c | head -1)
[ -f "$src/blake3.h" ] || { echo "fetch-blake3: no c/ in the package" >&2; exit 1; }
mkdir -p "$dest"
rm -rf "$dest/c"
cp -r "$src" "$dest/c"
basename "$(dirname "$src")" >"$dest/VERSION"
echo "BLAKE3 C sources from Debian's librust-blake3-dev: $(cat "$dest/VERSION")"
