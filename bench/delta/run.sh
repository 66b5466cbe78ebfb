#!/usr/bin/env bash
# The delta benchmark: plumb's delta next to bsdiff, xdelta3, zstd
# --patch-from (on the squashfs image, an ext4 image and a tar of the tree),
# casync, OSTree static deltas and the full image, on one pair:
#
#   PAIR=kernel (default): bench/delta/pair.sh, the demo recipe with Debian
#     cloud kernel 6.1.0-55, then -56 (same userspace)
#   PAIR=debian: bench/delta/debian/pair.sh, a Debian 12 server userspace
#     (189 packages) and cloud kernel at the point release's versions, then
#     at bookworm-security/-updates' (versions pinned in manifest.tsv)
#
# Prints one table:
#
#   tool, bytes, ratio to plumb's bytes, create s, apply s, apply peak RSS
#
# then where plumb's bytes go (per category of file, from
# PLUMB_DELTA_TRACE), then the issue's targets for plumb, met or not (the
# machine's load changes the times: plumb's apply CPU time is printed beside
# its wall time).
#
# KEEP_PAIR=1 reuses an existing pair in $OUT (default out/bench/delta, or
# out/bench/delta-debian). TOOLS and KINDS select the other tools (see
# others.sh); the Debian pair skips ext4 by default (a 1 GiB image: bsdiff
# would need ~17 GiB of memory). APPLY_RT=1 runs every tool's apply (plumb's
# too) under chrt -f 10, SCHED_FIFO: on a machine shared with other work,
# apply times as if the tool had the cores. Needs bin/plumb (make build).
set -euo pipefail
cd "$(dirname "$0")/../.."
pair=${PAIR:-kernel}
case $pair in
kernel)
  export OUT=${OUT:-$PWD/out/bench/delta}
  pairsh=bench/delta/pair.sh
  export KINDS=${KINDS:-sqfs ext4 tar}
  what="kernel 6.1.0-55 -> 6.1.0-56, same userspace"
  ;;
debian)
  export OUT=${OUT:-$PWD/out/bench/delta-debian}
  pairsh=bench/delta/debian/pair.sh
  export KINDS=${KINDS:-sqfs tar}
  what="Debian 12 server, 189 packages + kernel: point release -> security roll-up, kernel 6.1.0-50 -> 6.1.0-57"
  ;;
*) echo "PAIR: expected kernel or debian, got $pair" >&2; exit 2 ;;
esac

if [ "${KEEP_PAIR:-}" = 1 ] && [ -e "$OUT/v2/rootfs.tar" ]; then
  echo "== reusing the pair in $OUT" >&2
else
  bash "$pairsh" >&2
fi

rows=$OUT/results.tsv
: >"$rows"
echo "== plumb delta (builder/delta)" >&2
#: see bench/delta/codec_plumb.go.
# The per-file trace depends only on the images and the codec's source: it
# is kept under a hash of both and made again when either changes.
tkey=$( (cat "$OUT/v1/rootfs.sqfs" "$OUT/v2/rootfs.sqfs" builder/delta/*.go format/delta/*.go format/blockcodec/*.go) | sha256sum | cut -c1-16)
trace=$OUT/trace-$tkey.tsv
if ! go run ./bench/delta -tsv -old "$OUT/v1/rootfs.sqfs" -new "$OUT/v2/rootfs.sqfs" >>"$rows"; then
  echo "plumb delta: FAILED (see above); ratios are left out" >&2
elif [ -s "$trace" ] && [ "${OTHERS_FRESH:-}" != 1 ]; then
  echo "== per-file trace: reusing $trace (same images and codec source)" >&2
else
  echo "== plumb delta again, traced per file (builder/delta/FORMAT.md)" >&2
  PLUMB_DELTA_TRACE=$trace.tmp go run ./bench/delta -old "$OUT/v1/rootfs.sqfs" -new "$OUT/v2/rootfs.sqfs" >&2 && mv "$trace.tmp" "$trace"
fi
bash bench/delta/others.sh >>"$rows" # reuses its rows when nothing changed (see there)

echo
echo "delta benchmark, $pair pair: $OUT/v1 -> v2 ($what)"
awk -F'\t' '
  function num(x) { return x == "-" ? "-" : sprintf("%.2f", x) }
  function mib(x) { return x == "-" ? "-" : sprintf("%.1f MiB", x / 1024) }
  { tool[NR] = $1; bytes[NR] = $2; c[NR] = $3; a[NR] = $4; rss[NR] = $5
    if ($1 == "plumb delta") plumb = $2 }
  END {
    printf "%-24s %12s %9s %9s %9s %12s\n", "tool", "bytes", "x plumb", "create s", "apply s", "apply RSS"
    for (i = 1; i <= NR; i++) {
      r = plumb > 0 && bytes[i] != "-" ? sprintf("%.2f", bytes[i] / plumb) : "-"
      printf "%-24s %12s %9s %9s %9s %12s\n", tool[i], bytes[i], r, num(c[i]), num(a[i]), mib(rss[i])
    }
  }' "$rows"
[ ! -s "$OUT/others.note" ] || cat "$OUT/others.note"

# Where plumb's bytes go: the traced encode (flushed after each file, so
# slightly larger than the bundle) summed per category.
if [ -s "$trace" ]; then
  echo
  echo "where plumb's bytes go ($pair pair; traced encode, flushed per file):"
  awk -F'\t' -f "$(dirname "$0")/categories.awk" "$trace"
fi

# The issue's targets, on this pair (goal lines: bench/run.sh's summary).
# The image's zstd level: squashfs compressor options, after the 96-byte
# superblock and its 2-byte metadata header (zstd: a 4-byte level).
level=$(od -An -tu4 -j 98 -N 4 "$OUT/v2/rootfs.sqfs" | tr -d ' ')
awk -F'\t' -v pair="$pair level $level" -v target="$(stat -c %s "$OUT/v2/rootfs.sqfs")" '
  { sub(/ \*$/, "", $1) }
  $1 == "plumb delta" { pb = $2; pc = $3; pa = $4; pr = $5; pcpu = $6; next }
  $1 == "zstd sqfs" { zc = $3 }
  $2 == "-" { sub(/ \(not measured\)$/, "", $1); missing = missing ", " $1; next }
  $1 != "full rootfs.sqfs" && (small == "" || $2 < small) { small = $2; sname = $1 }
  function ok(c) { return c ? "met" : "NOT met" }
  END {
    if (pb == "") { print "plumb delta failed: no targets"; exit 1 }
    print ""
    if (missing != "") missing = "; not measured:" substr(missing, 2)
    if (small != "") printf "goal\t%s pair: delta size\t%.3f x the smallest other (plumb %d B, %s %d B%s)\t<= 0.9 x\t%s\n", pair, pb / small, pb, sname, small, missing, ok(pb <= 0.9 * small) (missing != "" ? " (of the measured)" : "")
    printf "goal\t%s pair: apply speed\t%.0f MB/s of target (%d B in %.2f s wall, %.2f s CPU)\t>= 100 MB/s\t%s\n", pair, target / 1e6 / pa, target, pa, pcpu, ok(target / 1e6 / pa >= 100)
    printf "goal\t%s pair: apply memory\t%.1f MiB peak RSS\t<= 64 MiB\t%s\n", pair, pr / 1024, ok(pr <= 65536)
  }' "$rows"
