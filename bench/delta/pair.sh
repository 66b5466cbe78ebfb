#!/usr/bin/env bash
# The delta benchmark pair: two consecutive releases of the demo recipe that
# differ only in the Debian cloud kernel (6.1.0-55 -> 6.1.0-56) and the
# version, same userspace (busybox-static). Writes, for v in v1 v2:
#
#   $OUT/$v/rootfs.sqfs   the release's root image (plumb build)
#   $OUT/$v/tree/         the same tree unpacked (unsquashfs -d, as root)
#   $OUT/$v/rootfs.ext4   an ext4 image of that tree (mkfs.ext4 -d), fixed
#                         size $EXT4_SIZE, fixed UUID, hash seed and time
#   $OUT/$v/rootfs.tar    an uncompressed tar of that tree (sorted, fixed times)
#
# OUT defaults to out/bench/delta. Packages are cached in $PLUMB_CACHE/debs
# (default .cache/debs, the cache make debs and plumb build share). Needs
# bin/plumb (make build).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/out/bench/delta}
cache=${PLUMB_CACHE:-$PWD/.cache}
ext4_size=${EXT4_SIZE:-160M}
epoch=1767225600 # the recipes' epoch

need() { command -v "$1" >/dev/null || { echo "$1 not found: apt-get install $2" >&2; exit 1; }; }
need unsquashfs squashfs-tools
need mkfs.ext4 e2fsprogs
[ -x bin/plumb ] || { echo "bin/plumb not found: run make build" >&2; exit 1; }

mkdir -p "$out"
for v in v1 v2; do
  echo "== $v: plumb build bench/delta/$v.yaml"
  rm -rf "$out/$v.tmp"
  bin/plumb build "bench/delta/$v.yaml" -o "$out/$v.tmp" --cache "$cache" -q
  # Only rootfs.sqfs is benchmarked; drop the (sparse, 640 MiB) disk image.
  rm -f "$out/$v.tmp/disk.img"
  unsquashfs -q -n -d "$out/$v.tmp/tree" "$out/$v.tmp/rootfs.sqfs" >/dev/null
  # Same inode times in both images: mkfs.ext4 -d copies atime and ctime
  # from the source; atime is reset here, ctime cannot be (a few bytes per
  # inode of noise, the same for every tool).
  find "$out/$v.tmp/tree" -exec touch -h -a -d "@$epoch" {} +
  E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -F -d "$out/$v.tmp/tree" \
    -U 6c1f0e6a-2d5b-4e8e-9a51-7b2f2f3c0d11 -E hash_seed=3a0f8c2e-1b4d-4f6a-8e9c-5d7b1a2c3e4f \
    -L rootfs "$out/$v.tmp/rootfs.ext4" "$ext4_size" >/dev/null
  tar -C "$out/$v.tmp/tree" --sort=name --mtime="@$epoch" --numeric-owner --format=gnu -cf "$out/$v.tmp/rootfs.tar" .
  rm -rf "${out:?}/$v"
  mv "$out/$v.tmp" "$out/$v"
done
for v in v1 v2; do
  printf '%s: rootfs.sqfs %s bytes, tree %s files %s KiB, rootfs.ext4 %s bytes\n' "$v" \
    "$(stat -c %s "$out/$v/rootfs.sqfs")" "$(find "$out/$v/tree" | wc -l)" \
    "$(du -sk "$out/$v/tree" | cut -f1)" "$(stat -c %s "$out/$v/rootfs.ext4")"
done
