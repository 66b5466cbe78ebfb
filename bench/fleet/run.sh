#!/usr/bin/env bash
# bench/fleet/run.sh: the fleet section of make bench (bench/run.sh):
# BenchmarkFleet, then its table and one goal line per configuration.
set -euo pipefail
out=${BENCH_OUT:-$PWD/out/bench}
mkdir -p "$out"
rc=0
go test -run '^$' -bench Fleet -benchtime 1x -count 1 -timeout 60m ./bench/fleet >"$out/fleet.txt" 2>&1 || rc=$?
grep -v '^Benchmark' "$out/fleet.txt" || true
[ $rc = 0 ] || exit $rc
awk -f bench/fleet/table.awk "$out/fleet.txt"
