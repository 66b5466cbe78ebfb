#!/usr/bin/env bash
# make bench: performance figures that tests do not assert.
#
# squashfs: our writer against mksquashfs -comp zstd at the same level, on
# the demo recipe's root filesystem tree (built, then unpacked as root so
# owners, modes and devices are kept).
#
# download: updater/fetch streaming a 1 GiB TUF target into a file
# (throughput, peak RSS) next to curl | dd on the same server.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-$PWD/out/bench}
cache=${PLUMB_CACHE:-$PWD/.cache}
level=$(sed -n 's/^ *level: *\([0-9]*\).*/\1/p' recipes/qemu-x86_64.yaml | head -n1)
mkdir -p "$out"

echo "== building the demo recipe"
bin/plumb build recipes/qemu-x86_64.yaml -o "$out/demo" --cache "$cache" -q
rm -rf "$out/tree"
unsquashfs -q -n -d "$out/tree" "$out/demo/rootfs.sqfs" >/dev/null

echo "== squashfs: plumb vs mksquashfs, zstd level $level, demo rootfs tree"
go run ./bench/squashfs -tree "$out/tree" -level "$level"

echo
echo "== download: 1 GiB TUF target streamed into a file-backed slot vs curl | dd, same local HTTPS server"
sh bench/download.sh

echo
echo "== delta: plumb delta vs bsdiff, xdelta3, zstd --patch-from, casync, ostree, full image (kernel 6.1.0-55 -> -56)"
bash bench/delta/run.sh
