#!/bin/sh
# Streamed, verified TUF target download (updater/fetch) against
# `curl -sk URL | dd of=slot bs=1M` on the same local HTTPS server: 1 GiB
# target, written to a file. Prints MB/s for both and the Go side's peak RSS.
set -eu
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "curl not found: apt-get install curl" >&2; exit 1; }
go test ./updater/fetch/ -run '^$' -bench BenchmarkDownload1GiB -benchtime "${BENCHTIME:-3x}" -count 1
