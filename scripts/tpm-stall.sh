#!/usr/bin/env bash
# tpm-stall.sh IMAGE [HOLD]: reproduce a TPM command that the kernel's
# driver gives up on while the TPM still executes it (docs/attestation.md,
# "The log always says what PCR 15 holds"). Boots IMAGE with bin/plumb vm
# run, stops its swtpm (SIGSTOP, by PID) when plumb-init prints "root found"
# and lets it go on after HOLD seconds (default 40, longer than hashing the
# root under TCG). plumb-init's PCR 15 extend then times out in the guest
# ("tpm tpm0: Operation Timed out", "read /dev/tpmrm0: timer expired"); the
# console shows what plumb-init made of it. Stops at plumbd's status line.
set -euo pipefail
cd "$(dirname "$0")/.."
img=${1:?usage: scripts/tpm-stall.sh IMAGE [HOLD]}
hold=${2:-40}
dir=$(mktemp -d /tmp/tpm-stall.XXXXXX)
log=$dir/console.txt
bin/plumb vm run "$img" --dir "$dir/vm" --timeout 10m --until 'plumb: status' >"$log" 2>&1 &
vm=$!
trap 'kill $vm 2>/dev/null || true' EXIT
until grep -q 'root found' "$log"; do
	kill -0 $vm 2>/dev/null || { cat "$log"; echo "tpm-stall: the VM ended before plumb-init found the root" >&2; exit 1; }
	sleep 0.1
done
tpm=
for stat in /proc/[0-9]*/stat; do
	read -r pid comm _ ppid _ <"$stat" 2>/dev/null || continue
	if [ "$comm" = "(swtpm)" ] && [ "$ppid" = "$vm" ]; then tpm=$pid; fi
done
[ -n "$tpm" ] || { echo "tpm-stall: no swtpm started by PID $vm" >&2; exit 1; }
echo "tpm-stall: root found; swtpm (PID $tpm) stopped for $hold s"
kill -STOP "$tpm"
sleep "$hold"
kill -CONT "$tpm"
wait $vm || true
trap - EXIT
grep -E 'tpm0|plumb-init: .*(measur|extend)|measure_error' "$log" || true
echo "tpm-stall: console in $log"
