#!/usr/bin/env bash
# make bench: every performance figure the tests do not assert, in one run,
# each goal marked met or NOT met, and the goals again at the end.
#
#   squashfs  our writer against mksquashfs -comp zstd, same tree, level and
#             block size, at level 1 and 15 (the demo recipe's tree, built,
#             then unpacked as root so owners, modes and devices are kept)
#   download  updater/fetch streaming a 1 GiB TUF target into a file
#             (throughput, peak RSS) next to curl | dd on the same server
#   poll      an idle poll on a new TCP connection, TLS included, against
#             plumb serve and nginx: bytes per poll and per device-month
#   delta     plumb's delta against bsdiff, xdelta3, zstd --patch-from,
#             casync, OSTree and the full image, on both pairs (kernel-only,
#             and a Debian 12 security roll-up)
#   levels    the image compression level curve behind the recipe default:
#             full image size, delta size, apply speed and memory
#   wake      REST polling vs MQTT (mosquitto) vs a held HTTPS stream, with
#             WAKE_DEVICES simulated devices (default 1000; the study in
#             docs/wake.md used WAKE_DEVICES=10000, about 15 minutes)
#   fleet     10,000 simulated devices (own identity keys, real HTTPS polls
#             and mutual-TLS reports) against plumb serve processes on
#             SQLite, PostgreSQL and two processes sharing one PostgreSQL:
#             check-ins/s, p50/p99, server CPU and RSS, database growth
#             (bench/fleet; FLEET_* variables are in its doc.go)
#
# SKIP (space separated section names) leaves sections out; KEEP_PAIR=1
# reuses the delta pairs already built. The log is also in $out/bench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-$PWD/out/bench}
cache=${PLUMB_CACHE:-$PWD/.cache}
skip=" ${SKIP:-} "
mkdir -p "$out"
log=$out/bench.log
: >"$log"
section() { case $skip in *" $1 "*) return 1 ;; esac; echo; echo "== $1: $2"; }

{
if section squashfs "plumb's writer vs mksquashfs, demo rootfs tree, 128 KiB blocks, level 1 and 15"; then
  bin/plumb build recipes/qemu-x86_64.yaml -o "$out/demo" --cache "$cache" -q
  rm -rf "$out/tree"
  unsquashfs -q -n -d "$out/tree" "$out/demo/rootfs.sqfs" >/dev/null
  for level in 1 15; do
    go run ./bench/squashfs -tree "$out/tree" -level "$level"
  done
fi

if section download "1 GiB TUF target streamed into a file-backed slot vs curl | dd, same local HTTPS server"; then
  sh bench/download.sh
fi

if section poll "idle poll (conditional GET -> 304) on a new TCP connection, TLS included"; then
  go test -run '^$' -bench IdlePoll -benchtime 20x -count 1 ./bench/poll | tee "$out/poll.txt" | grep -v '^Benchmark' || true
  awk '
    /^BenchmarkIdlePoll\// {
      split($1, p, "/"); name = p[2]; sub(/-[0-9]+$/, "", name)
      for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
      printf "%-12s before %5d B  full handshake %5d B  resumed %5d B  after restart %5d B  with IP/TCP headers (est.) %5d B  %5.1f MB/month at 5 min, %4.1f at 15 min (IP est. %5.1f / %4.1f)\n", name, v["before-B/poll"], v["full-B/poll"], v["wire-B/poll"], v["restart-B/poll"], v["ip-B/poll"], v["MB/month@5min"], v["MB/month@15min"], v["ipMB/month@5min"], v["ipMB/month@15min"]
      ok = v["wire-B/poll"] <= 2048 && v["restart-B/poll"] <= 2048
      printf "goal: idle poll on a new TCP connection, %s: %d bytes (TLS included; %d after an agent restart), target <= 2048: %s\n", name, v["wire-B/poll"], v["restart-B/poll"], ok ? "met" : "NOT met"
    }' "$out/poll.txt"
fi

if section delta "kernel pair: plumb delta vs bsdiff, xdelta3, zstd --patch-from, casync, ostree, full image"; then
  PAIR=kernel bash bench/delta/run.sh
fi

if section delta-debian "Debian 12 security roll-up pair: the same table"; then
  PAIR=debian bash bench/delta/run.sh
fi

if section levels "compression level curve (kernel pair; recipe default = $(sed -n 's/.*DefaultLevel *= *\([0-9]*\).*/\1/p' builder/recipe/recipe.go))"; then
  DEFAULT_LEVEL=$(sed -n 's/.*DefaultLevel *= *\([0-9]*\).*/\1/p' builder/recipe/recipe.go) bash bench/delta/levels.sh
fi
if section wake "how devices learn of a release: polling (plumb serve, nginx proxy_cache), MQTT over TLS (mosquitto), held SSE stream; ${WAKE_DEVICES:-1000} devices"; then
  WAKE_DEVICES=${WAKE_DEVICES:-1000} go test -run '^$' -bench Wake -benchtime 1x -count 1 -timeout 90m ./bench/wake >"$out/wake.txt" 2>&1 || { echo "wake: the benchmark failed:"; tail -40 "$out/wake.txt"; }
  sed -n '/^wake: /,/^goos:/p' "$out/wake.txt" | grep -v '^wake-row\|^goos:'
  grep -E 'RLIMIT|connected|reconnected' "$out/wake.txt" | sed 's/^ *//' || true
fi
if section fleet "${FLEET_DEVICES:-10000} simulated devices vs plumb serve: server on CPU 0, load generator on CPU 1"; then
  go test -run '^$' -bench Fleet -benchtime 1x -count 1 -timeout 60m ./bench/fleet | tee "$out/fleet.txt" | grep -v '^Benchmark' || true
  awk -f bench/fleet/table.awk "$out/fleet.txt"
fi
} 2>&1 | tee -a "$log"

echo
echo "== goals (all sections of this run)"
grep '^goal: ' "$log" | sed 's/^goal: /  /' || echo "  (none: every section failed or was skipped)"
