#!/usr/bin/env bash
# The delta benchmark: plumb's delta next to bsdiff, xdelta3, zstd
# --patch-from, casync, OSTree static deltas and the full image, on one
# realistic pair (bench/delta/pair.sh: the demo recipe with Debian cloud
# kernel 6.1.0-55, then -56). Prints one table:
#
#   tool, bytes, ratio to plumb's bytes, create s, apply s, apply peak RSS
#
# KEEP_PAIR=1 reuses an existing pair in $OUT (default out/bench/delta).
# TOOLS selects the other tools (see others.sh). Needs bin/plumb (make build).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OUT=${OUT:-$PWD/out/bench/delta}

if [ "${KEEP_PAIR:-}" = 1 ] && [ -e "$OUT/v2/rootfs.ext4" ]; then
  echo "== reusing the pair in $OUT" >&2
else
  bash bench/delta/pair.sh >&2
fi

rows=$OUT/results.tsv
: >"$rows"
echo "== plumb delta (builder/delta)" >&2
#: see bench/delta/codec_plumb.go.
if ! go run ./bench/delta -tsv -old "$OUT/v1/rootfs.sqfs" -new "$OUT/v2/rootfs.sqfs" >>"$rows"; then
  echo "plumb delta: FAILED (see above); ratios are left out" >&2
fi
bash bench/delta/others.sh >>"$rows"

echo
echo "delta benchmark: $OUT/v1 -> v2 (kernel 6.1.0-55 -> 6.1.0-56, same userspace)"
awk -F'\t' '
  function num(x) { return x == "-" ? "-" : sprintf("%.2f", x) }
  function mib(x) { return x == "-" ? "-" : sprintf("%.1f MiB", x / 1024) }
  { tool[NR] = $1; bytes[NR] = $2; c[NR] = $3; a[NR] = $4; rss[NR] = $5
    if ($1 == "plumb delta") plumb = $2 }
  END {
    printf "%-24s %12s %9s %9s %9s %12s\n", "tool", "bytes", "x plumb", "create s", "apply s", "apply RSS"
    for (i = 1; i <= NR; i++) {
      r = plumb > 0 ? sprintf("%.2f", bytes[i] / plumb) : "-"
      printf "%-24s %12d %9s %9s %9s %12s\n", tool[i], bytes[i], r, num(c[i]), num(a[i]), mib(rss[i])
    }
  }' "$rows"
