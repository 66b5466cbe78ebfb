// Package poll measures what an idle device's poll costs on the wire: one
// conditional GET of timestamp.json answered 304, on a new TCP connection
// (NATs and servers drop idle connections within minutes, so at a 5-minute
// poll the connection is almost always new), TLS included. Its benchmark
// (poll_test.go) puts a counting TCP relay in front of `plumb serve` and of
// nginx (docs/nginx.md) and reports bytes per poll and per device-month:
//
//	go test -run '^$' -bench IdlePoll -benchtime 20x ./bench/poll
//
// There is no code here beyond the benchmark; bench/run.sh prints its table.
package poll
