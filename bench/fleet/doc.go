// Package fleet measures the fleet service at scale (issue 12 item 6): a
// simulated fleet (bench/sim) of at least 10,000 devices, each with its own
// P-256 identity key, polls timestamp.json (conditional GET) and posts
// signed status reports over mutual TLS to real `plumb serve` processes on
// 127.0.0.1, started by the benchmark and stopped by PID, on SQLite, on a
// real PostgreSQL (internal/testutil) and with two processes sharing one
// PostgreSQL. Devices join with the join token first.
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 60m ./bench/fleet
//
// Each configuration runs two phases after the join: as many check-ins
// as the server takes (the most check-ins per second and the CPU each
// costs), then the goal's rate (333 check-ins per second: 100,000 devices
// polling every 5 minutes) for its latencies. On a machine with 2 or more
// CPUs the server side (plumb serve and PostgreSQL) is pinned to CPU 0 and
// the load generator (this process) to CPU 1, so that they do not share a
// core, and each side's CPU time is read from /proc.
//
// Environment: FLEET_DEVICES (10000), FLEET_SECONDS per phase (30),
// FLEET_RATE (333), FLEET_REPORTS (fraction of check-ins that report,
// 0.1), FLEET_CONFIGS (sqlite,postgres,postgres-2), FLEET_PIN (1; 0 does
// not pin), FLEET_PROFILE (a directory: each server writes a CPU profile
// there), PLUMB (the plumb binary; default: built from this tree).
// bench/run.sh prints its figures as a table with the goal met or not.
package fleet
