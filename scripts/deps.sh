#!/bin/sh
# Install what wormhole needs to build, run and test on Debian 12.
# Usage: scripts/deps.sh [build|test|bench]   (default: build)
set -eu
what=${1:-build}
export DEBIAN_FRONTEND=noninteractive

pkgs="build-essential cmake pkg-config libngtcp2-dev libngtcp2-crypto-gnutls-dev
 libgnutls28-dev libsodium-dev libfuse3-dev fuse3 liburing-dev libsqlite3-dev
 libzstd-dev"
case "$what" in
test) pkgs="$pkgs libcmocka-dev python3 python3-pytest clang libclang-rt-14-dev
 attr coreutils diffutils findutils tar b3sum iproute2 nftables conntrack util-linux
 strace rsync" ;;
bench) pkgs="$pkgs openssh-server openssh-client sshfs rsync python3 b3sum
 iperf3 gnuplot-nox ethtool iputils-ping iproute2 util-linux" ;;
esac

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "wormhole: missing packages:$missing (run as root, or apt-get install them)" >&2
		exit 1
	fi
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q $missing
fi
# the BLAKE3 C sources, unpacked from Debian's package into .deps/
"$(dirname "$0")/fetch-blake3.sh"
