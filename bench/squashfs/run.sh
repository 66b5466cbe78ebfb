#!/usr/bin/env bash
# make bench section squashfs: plumb's squashfs writer against mksquashfs
# -comp zstd on the same tree (the demo recipe's rootfs, built, then
# unpacked as root so owners, modes and devices are kept), same level and
# block size (128 KiB), at level 1 and 15. Work files in $BENCH_OUT/squashfs.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-$PWD/out/bench}/squashfs
cache=${PLUMB_CACHE:-$PWD/.cache}
mkdir -p "$out"
bin/plumb build recipes/qemu-x86_64.yaml -o "$out/demo" --cache "$cache" -q
rm -rf "$out/tree"
unsquashfs -q -n -d "$out/tree" "$out/demo/rootfs.sqfs" >/dev/null
for level in 1 15; do
  go run ./bench/squashfs -tree "$out/tree" -level "$level"
done
