#!/usr/bin/env bash
# The delta benchmark: plumb's delta next to bsdiff, xdelta3, zstd
# --patch-from, casync, OSTree static deltas and the full image, on one
# realistic pair (bench/delta/pair.sh: the demo recipe with Debian cloud
# kernel 6.1.0-55, then -56). Prints one table:
#
#   tool, bytes, ratio to plumb's bytes, create s, apply s, apply peak RSS
#
# then the issue's four targets for plumb, met or not (the machine's load
# changes the times: plumb's apply CPU time is printed beside its wall time).
#
# KEEP_PAIR=1 reuses an existing pair in $OUT (default out/bench/delta).
# TOOLS selects the other tools (see others.sh). APPLY_RT=1 runs every
# tool's apply (plumb's too) under chrt -f 10, SCHED_FIFO: on a machine
# shared with other work, apply times as if the tool had the cores. Needs
# bin/plumb (make build).
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
echo "== builder/delta BenchmarkPair (encode + streamed apply, checked against v2)" >&2
PLUMB_DELTA_PAIR=$OUT go test -run '^$' -bench '^BenchmarkPair$' -benchtime 1x ./builder/delta >&2

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

# The issue's targets, on this pair.
awk -F'\t' -v target="$(stat -c %s "$OUT/v2/rootfs.sqfs")" '
  $1 == "plumb delta" { pb = $2; pc = $3; pa = $4; pr = $5; pcpu = $6; next }
  $1 == "zstd sqfs" { zc = $3 }
  $1 != "full rootfs.sqfs" && (small == "" || $2 < small) { small = $2; sname = $1 }
  function ok(c) { return c ? "met" : "NOT met" }
  END {
    if (pb == "") { print "plumb delta failed: no targets"; exit }
    print ""
    if (small != "") printf "size:   plumb %d bytes = %.3f x the smallest other (%s, %d): target <= 0.9: %s\n", pb, pb / small, sname, small, ok(pb <= 0.9 * small)
    printf "apply:  %.0f MB/s of target image (%d bytes in %.2f s, %.2f s of CPU): target >= 100: %s\n", target / 1e6 / pa, target, pa, pcpu, ok(target / 1e6 / pa >= 100)
    printf "memory: apply peak RSS %.1f MiB: target <= 64: %s\n", pr / 1024, ok(pr <= 65536)
    if (zc != "") printf "create: %.2f s = %.2f x zstd --patch-from on rootfs.sqfs (%.2f s): target <= 3: %s\n", pc, pc / zc, zc, ok(pc <= 3 * zc)
  }' "$rows"
