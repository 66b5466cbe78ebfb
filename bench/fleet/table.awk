# The fleet benchmark's lines (go test -bench Fleet) as a table, and one
# goal line per configuration.
/^BenchmarkFleet\// {
  split($1, p, "/"); name = p[2]; sub(/-[0-9]+$/, "", name)
  delete v
  for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
  if (!hdr++) printf "%-11s %7s %8s %8s %9s %8s %9s %9s %9s %8s %9s %9s %8s %8s %9s\n", "config", "devices", "max ci/s", "srv%core", "ci/s/core", "ci/s", "p50 ms", "p99 ms", "srvCPUs", "pgCPUs", "cores", "cores/1k", "RSS MB", "hist B/rep", "B/dev/day"
  printf "%-11s %7d %8.0f %8.0f %9.0f %8.0f %9.1f %9.1f %9.3f %8.3f %9.3f %9.4f %8.0f %8.0f %9.0f\n", name, v["devices"], v["max-ci/s"], v["srv%core@max"], v["ci/s/srv-core"], v["ci/s@goal"], v["p50-ms@goal"], v["p99-ms@goal"], v["serveCPUs/1kci"], v["pgCPUs/1kci"], v["srv-cores@goal"], v["srv-cores/1kdev"], v["serveRSS-MB"], v["hist-B/report"], v["hist-B/dev/day"]
  rate = 100000 / 300
  ok = v["goal-ci/s"] >= 333 && v["ci/s@goal"] >= 0.97 * rate && v["p99-ms@goal"] < 200
  printf "goal\t100k devices at a 5-min poll, %s (server on one core)\t%.0f check-ins/s (+%.0f%% reports), p99 %.1f ms (at most %.0f/s; %.3f server CPU-s per 1,000)\t>= %.0f/s at p99 < 200 ms\t%s\n", name, v["ci/s@goal"], 100 * v["report-frac"], v["p99-ms@goal"], v["max-ci/s"], v["serveCPUs/1kci"] + v["pgCPUs/1kci"], rate, ok ? "met" : "NOT met"
}
END {
  if (hdr) print "(max ci/s: check-ins/s as fast as the load generator's core drove them, srv%core the server side's CPU then, ci/s/core what one server core takes at its measured CPU per check-in; ci/s, p50, p99: at the goal rate, from each check-in's scheduled start; srvCPUs/pgCPUs: CPU-s per 1,000 check-ins of plumb serve / PostgreSQL; cores: server side at the goal rate; cores/1k: per 1,000 devices at a 5-min poll; RSS: plumb serve peak, summed; hist B/rep: history table growth per report; B/dev/day: history per device per day at this report rate)"
}
