#!/usr/bin/env bash
# The compression-level curve behind the recipe default (recipes/README.md,
# "compression"): for each zstd level, the pair's two trees (pair.sh, or
# OUT=... for the Debian pair) are packed by plumb's squashfs writer
# (bench/squashfs, 128 KiB blocks), then plumb's delta v1 -> v2 is made
# and applied (bench/delta: bundle bytes, apply wall and CPU seconds, apply
# peak RSS). One line per level:
#
#   level, full v2 image bytes, vs level 15, delta bytes, apply s, apply CPU s,
#   MB/s of target, apply RSS
#
# CPU-bound MB/s is the target's bytes over half the apply's CPU seconds:
# the speed on two free cores, an upper bound when the machine is shared.
# LEVELS overrides the list; an entry LEVEL@BLOCK (6@1M) packs with that
# squashfs block size instead of 128 KiB (a design point: larger blocks let
# a faster level reach the same size). A device pays the delta on every update and
# the full image on a first install or a fallback; the apply re-compresses
# every changed block at the image's level.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-$PWD/out/bench/delta}
levels=${LEVELS:-1 3 6 9 12 13 15 6@1M 9@1M}
for v in v1 v2; do
  [ -d "$out/$v/tree" ] || { echo "$out/$v/tree missing: run bench/delta/pair.sh" >&2; exit 1; }
done
work=$out/levels
mkdir -p "$work"
rows=$work/levels.tsv
: >"$rows"
for l in $levels; do
  block=128K
  case $l in *@*) block=${l#*@} ;; esac
  bytes=$(numfmt --from=iec "$block")
  for v in v1 v2; do
    if [ ! -s "$work/$v.$l.sqfs" ]; then
      echo "== level $l: packing $v" >&2
      rm -rf "$work/tmp" && mkdir -p "$work/tmp"
      go run ./bench/squashfs -tree "$out/$v/tree" -level "${l%@*}" -block "$bytes" -out "$work/tmp" -only-ours >&2
      mv "$work/tmp/ours.sqfs" "$work/$v.$l.sqfs"
    fi
  done
  echo "== level $l: plumb delta" >&2
  line=$(go run ./bench/delta -tsv -old "$work/v1.$l.sqfs" -new "$work/v2.$l.sqfs")
  printf '%s\t%s\t%s\n' "$l" "$(stat -c %s "$work/v2.$l.sqfs")" "$line" >>"$rows"
done
awk -F'\t' -v def="${DEFAULT_LEVEL:-15}" '
  $1 == "15" { ref = $2 }
  { l[NR] = $1; full[NR] = $2; b[NR] = $4; a[NR] = $6; rss[NR] = $7; cpu[NR] = $8 }
  END {
    printf "%6s %12s %9s %10s %8s %8s %9s %14s %10s\n", "level", "full bytes", "vs 15", "delta", "apply s", "CPU s", "MB/s", "CPU-bound MB/s", "apply RSS"
    for (i = 1; i <= NR; i++) {
      vs = ref > 0 ? sprintf("%+.1f%%", 100 * (full[i] / ref - 1)) : "-"
      printf "%6s %12d %9s %10d %8.2f %8.2f %9.0f %14.0f %6.1f MiB\n", l[i], full[i], vs, b[i], a[i], cpu[i], full[i] / 1e6 / a[i], full[i] / 1e6 / (cpu[i] / 2), rss[i] / 1024
      if (l[i] == def) d = i
    }
    if (!d || !ref) { print "the default level " def " or level 15 was not measured: no goals"; exit }
    mbs = full[d] / 1e6 / a[d]
    printf "goal\tdefault settings (level %s): apply speed\t%.0f MB/s of target (%.2f s wall, %.2f s CPU)\t>= 100 MB/s\t%s\n", def, mbs, a[d], cpu[d], (mbs >= 100 ? "met" : "NOT met")
    printf "goal\tdefault settings (level %s): apply memory\t%.1f MiB peak RSS\t<= 64 MiB\t%s\n", def, rss[d] / 1024, (rss[d] <= 65536 ? "met" : "NOT met")
    printf "goal\tdefault settings (level %s): full image\t%+.1f%% vs level 15\t<= +5%%\t%s\n", def, 100 * (full[d] / ref - 1), (full[d] <= 1.05 * ref ? "met" : "NOT met")
  }' "$rows"
