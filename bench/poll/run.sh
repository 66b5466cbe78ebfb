#!/usr/bin/env bash
# make bench section poll: an idle poll (conditional GET -> 304) on a new
# TCP connection, TLS included, against plumb serve and nginx (poll_test.go):
# bytes per poll and per device-month.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-$PWD/out/bench}
mkdir -p "$out"
go test -run '^$' -bench IdlePoll -benchtime 20x -count 1 ./bench/poll | tee "$out/poll.txt" | grep -v '^Benchmark' || true
awk '
  /^BenchmarkIdlePoll\// {
    split($1, p, "/"); name = p[2]; sub(/-[0-9]+$/, "", name)
    for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
    printf "%-12s before %5d B  full handshake %5d B  resumed %5d B  after restart %5d B  with IP/TCP headers (est.) %5d B  %5.1f MB/month at 5 min, %4.1f at 15 min (IP est. %5.1f / %4.1f)\n", name, v["before-B/poll"], v["full-B/poll"], v["wire-B/poll"], v["restart-B/poll"], v["ip-B/poll"], v["MB/month@5min"], v["MB/month@15min"], v["ipMB/month@5min"], v["ipMB/month@15min"]
    ok = v["wire-B/poll"] <= 2048 && v["restart-B/poll"] <= 2048
    printf "goal\tidle poll, new TCP connection, %s\t%d B (%d after agent restart; %.1f MB/device-month at 5 min)\t<= 2048 B\t%s\n", name, v["wire-B/poll"], v["restart-B/poll"], v["MB/month@5min"], ok ? "met" : "NOT met"
    n++
  }
  END { if (!n) { print "poll: no benchmark lines (see above)"; exit 1 } }' "$out/poll.txt"
