#!/usr/bin/env bash
# make bench: every performance figure the tests do not assert, in one run,
# each goal marked met or NOT met, and every goal again in one table at the
# end. One section a line below: `run NAME "what it measures" COMMAND...`.
#
#   squashfs      our writer against mksquashfs -comp zstd, same tree, level
#                 and block size, at level 1 and 15 (bench/squashfs/run.sh)
#   download      updater/fetch streaming a 1 GiB TUF target into a file
#                 (throughput, peak RSS) next to curl | dd on the same server
#   poll          an idle poll on a new TCP connection, TLS included, against
#                 plumb serve and nginx: bytes per poll and per device-month
#   delta         plumb's delta against bsdiff, xdelta3, zstd --patch-from,
#   delta-debian  casync, OSTree and the full image, on the kernel pair and
#                 on the Debian 12 security roll-up pair (bench/delta/run.sh)
#   levels        the image compression level curve behind the recipe
#                 default: full image size, delta size, apply speed, memory
#   wake          REST polling vs MQTT (mosquitto) vs a held HTTPS stream,
#                 WAKE_DEVICES simulated devices (default 1000; the study in
#                 docs/wake.md used 10000, about 15 minutes; bench/wake/run.sh)
#   fleet         10,000 simulated devices (own identity keys, real HTTPS
#                 polls and mutual-TLS reports) against plumb serve on
#                 SQLite, PostgreSQL and two processes sharing PostgreSQL:
#                 check-ins/s, p50/p99, server CPU and RSS, database growth
#                 (bench/fleet/run.sh; FLEET_* variables in bench/fleet/doc.go)
#
# A section reports a goal by printing one line of five tab-separated
# fields: "goal", the figure, what was measured, the target, and "met" or
# "NOT met". A section that fails is reported as such in the summary and
# the run goes on.
#
# SKIP (space separated section names) leaves sections out; ONLY runs just
# those. KEEP_PAIR=1 reuses the delta pairs already built. Everything is
# also logged to $BENCH_OUT/bench.log (default out/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_OUT=${BENCH_OUT:-$PWD/out/bench}
export PLUMB_CACHE=${PLUMB_CACHE:-$PWD/.cache}
mkdir -p "$BENCH_OUT"
log=$BENCH_OUT/bench.log
: >"$log"
started=$(date +%s)

# run NAME DESCRIPTION COMMAND...: one section, timed; a failure is a goal
# line marked NOT met so the summary shows it.
run() {
  local name=$1 desc=$2 t0 rc=0
  shift 2
  case " ${SKIP:-} " in *" $name "*) return 0 ;; esac
  if [ -n "${ONLY:-}" ]; then case " $ONLY " in *" $name "*) ;; *) return 0 ;; esac; fi
  echo
  echo "== $name: $desc"
  t0=$(date +%s)
  "$@" || rc=$?
  echo "-- $name: $(($(date +%s) - t0)) s"
  if [ $rc != 0 ]; then
    printf 'goal\t%s: the section\tFAILED (exit %s; see the log above)\tit runs\tNOT met\n' "$name" "$rc"
  fi
}

# The recipe default, as levels.sh names it: LEVEL, or LEVEL@BLOCK when the
# default block size is not 128 KiB.
level=$(sed -n 's/.*DefaultLevel *= *\([0-9]*\).*/\1/p' builder/recipe/recipe.go)
block=$(sed -n 's/.*DefaultBlockSize *= *\([0-9]*\) \* \([KM]\)iB.*/\1\2/p' builder/recipe/recipe.go)
[ "$block" = 128K ] || level=$level@$block
{
  run squashfs "plumb's writer vs mksquashfs, demo rootfs tree, 128 KiB blocks, level 1 and 15" bash bench/squashfs/run.sh
  run download "1 GiB TUF target streamed into a file-backed slot vs curl | dd, same local HTTPS server" sh bench/download.sh
  run poll "idle poll (conditional GET -> 304) on a new TCP connection, TLS included" bash bench/poll/run.sh
  run delta "kernel pair: plumb delta vs bsdiff, xdelta3, zstd --patch-from, casync, ostree, full image" env PAIR=kernel bash bench/delta/run.sh
  run delta-debian "Debian 12 security roll-up pair: the same table" env PAIR=debian bash bench/delta/run.sh
  run levels "compression level curve (kernel pair; recipe default = $level)" env DEFAULT_LEVEL="$level" bash bench/delta/levels.sh
  run wake "how devices learn of a release: polling (plumb serve, nginx proxy_cache), MQTT over TLS (mosquitto), held SSE stream; ${WAKE_DEVICES:-1000} devices" bash bench/wake/run.sh
  run fleet "${FLEET_DEVICES:-10000} simulated devices vs plumb serve: server on CPU 0, load generator on CPU 1" bash bench/fleet/run.sh
} 2>&1 | tee -a "$log"

echo
echo "== summary: every goal of this run ($(($(date +%s) - started)) s in all; log $log)"
awk -F'\t' '
  $1 == "goal" && NF == 5 { n++; f[n] = $2; m[n] = $3; t[n] = $4; s[n] = $5
    if (length($2) > wf) wf = length($2); if (length($3) > wm) wm = length($3); if (length($4) > wt) wt = length($4) }
  END {
    if (!n) { print "  (no goals: every section failed or was skipped)"; exit }
    printf "  %-*s | %-*s | %-*s | %s\n", wf, "figure", wm, "measured", wt, "target", "goal"
    for (i = 1; i <= n; i++) printf "  %-*s | %-*s | %-*s | %s\n", wf, f[i], wm, m[i], wt, t[i], s[i]
  }' "$log" | tee -a "$log"
