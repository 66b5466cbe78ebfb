#!/usr/bin/env bash
# bench/wake/run.sh: the wake section of make bench (bench/run.sh): polling
# vs MQTT vs a held HTTPS stream with WAKE_DEVICES devices (default 1000).
# The study (docs/wake.md) is a comparison, not a goal: no goal line.
set -euo pipefail
out=${BENCH_OUT:-$PWD/out/bench}
mkdir -p "$out"
rc=0
WAKE_DEVICES=${WAKE_DEVICES:-1000} go test -run '^$' -bench Wake -benchtime 1x -count 1 -timeout 90m ./bench/wake >"$out/wake.txt" 2>&1 || rc=$?
if [ $rc != 0 ]; then
  echo "wake: the benchmark failed:"
  tail -40 "$out/wake.txt"
  exit $rc
fi
sed -n '/^wake: /,/^goos:/p' "$out/wake.txt" | grep -v '^wake-row\|^goos:'
grep -E 'RLIMIT|connected|reconnected' "$out/wake.txt" | sed 's/^ *//' || true
