#!/usr/bin/env bash
# make demo: the main job end to end on one machine.
#   build v1 and v2 of the default recipe, publish both to a local TUF
#   repository, serve it over HTTPS on 127.0.0.1, boot v1 in QEMU (OVMF +
#   swtpm), and watch plumbd pull v2 into slot b, reboot and commit it.
#   SECURE_BOOT=1 (make demo-secure): the verified recipe (dm-verity root
#   slots), its boot chain signed with OVMF's snakeoil db key, booted under
#   OVMF's Secure Boot build (docs/verified-boot.md).
set -euo pipefail
cd "$(dirname "$0")/.."
secure=()
vmflags=()
if [ "${SECURE_BOOT:-}" = 1 ]; then
	RECIPE=${RECIPE:-recipes/qemu-x86_64-verified.yaml}
	mkdir -p "${OUT:-$PWD/out}"
	key=${OUT:-$PWD/out}/snakeoil.key  # Debian's snakeoil db key, passphrase "snakeoil"
	openssl pkey -in /usr/share/ovmf/PkKek-1-snakeoil.key -passin pass:snakeoil -out "$key"
	secure=(--secure-boot-key "$key" --secure-boot-cert /usr/share/ovmf/PkKek-1-snakeoil.pem)
	vmflags=(--secure-boot)
fi
recipe=${RECIPE:-recipes/qemu-x86_64.yaml}
out=${OUT:-$PWD/out}/demo
cache=${PLUMB_CACHE:-$PWD/.cache}
port=${PORT:-18443}
v1=${V1:-1.0.0}
v2=${V2:-1.1.0}
plumb=bin/plumb

step() { printf '\n==> %s\n' "$*"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

rm -rf "$out"
mkdir -p "$out"
page="https://127.0.0.1:$port/ui/"
printf 'demo: the fleet page will be at %s (log in as admin; the password is printed once plumb serve starts)\n' "$page"

step "creating a TUF repository in $out/repo"
$plumb repo init "$out/repo"

# The VM's TPM (swtpm) has an EK certificate from swtpm-localca: the
# fleet service trusts that CA as it would a TPM manufacturer's, so the
# attestation's ek_certificate check runs instead of being "not checkable".
ekca=()
while read -r c; do ekca+=(--ek-ca "$c"); done < <($plumb vm tpm-ca)
[ ${#ekca[@]} -gt 0 ] || { echo "demo: plumb vm tpm-ca printed no certificate" >&2; exit 1; }

step "serving it on https://127.0.0.1:$port (the VM sees it as https://10.0.2.100/)"
$plumb serve "$out/repo" --addr "127.0.0.1:$port" --access-log=false "${ekca[@]}" > "$out/serve.log" 2>&1 &
pids+=($!)
# plumb serve makes the CA and, for its fleet service, the default
# organization's join token (DIR/join-token) that the image carries.
for _ in $(seq 100); do [ -s "$out/repo/tls/ca.pem" ] && [ -s "$out/repo/join-token" ] && [ -s "$out/repo/admin-password" ] && break; sleep 0.1; done
step "fleet page: $page  user admin  password $(cat "$out/repo/admin-password")"
echo "    (the browser warns about the development CA $out/repo/tls/ca.pem; watch the device join and update under Devices)"
fleet=(--server "https://127.0.0.1:$port/" --org default --ca "$out/repo/tls/ca.pem")
PLUMB_TOKEN=$($plumb fleet token create --dir "$out/repo" --org default --name demo --role viewer)
export PLUMB_TOKEN

agent=(--repository https://10.0.2.100/ --root-json "$out/repo/repository/metadata/1.root.json" --ca "$out/repo/tls/ca.pem" --join-token "$out/repo/join-token")
for v in "$v1" "$v2"; do
	step "building $recipe as version $v"
	$plumb build "$recipe" -o "$out/v$v" --cache "$cache" --version "$v" "${agent[@]}" "${secure[@]}"
	step "publishing $v"
	$plumb publish "$out/repo" --release "$out/v$v"
done
$plumb repo ls "$out/repo"

step "booting $v1 (console in $out/vm/console.log); plumbd will pull $v2"
start=$(date +%s)
# The VM runs until the fleet service has the device's report of the
# commit (plumbd reports right after it): the page then shows the whole
# story, joined to committed.
$plumb vm run "$out/v$v1/disk.img" --dir "$out/vm" --forward "443:$port" "${vmflags[@]}" \
	--timeout 10m > "$out/vm-run.log" 2>&1 &
vm=$!
pids+=($vm)
tail --pid="$vm" -n +1 -f "$out/vm-run.log" \
	| grep --line-buffered -E 'plumbd .* started|plumb: status|level=(INFO|WARN|ERROR) msg="(root mapped through dm-verity|metadata refreshed|downloading|slot written|slot installed|rebooting into|release committed|rolled back|update check failed)' \
	| stdbuf -oL cut -c1-200 &
shown=$!
pids+=($shown)
until $plumb fleet devices "${fleet[@]}" > "$out/fleet-devices.txt" 2>&1; grep -q "committed $v2" "$out/fleet-devices.txt"; do
	if ! kill -0 "$vm" 2>/dev/null; then
		echo "demo: the VM stopped before the fleet service saw $v2 committed (see $out/vm-run.log)" >&2
		exit 1
	fi
	sleep 1
done
took=$(( $(date +%s) - start ))
kill "$vm" 2>/dev/null || true
wait "$vm" 2>/dev/null || true
wait "$shown" 2>/dev/null || true
echo
echo "demo: $v1 -> $v2 committed on slot b and reported to the fleet service, ${took}s after power-on"
step "the fleet service saw it join and update (plumb fleet devices / events; the same on $page)"
$plumb fleet devices "${fleet[@]}" || true
dev=$($plumb fleet devices "${fleet[@]}" --json | sed -n 's/.*"id": *"\([a-z0-9-]*\)".*/\1/p' | head -1)
if [ -n "$dev" ]; then
	$plumb fleet events "$dev" "${fleet[@]}" || true
	echo "device page: ${page}o/default/devices/$dev"
fi
if [ -t 0 ]; then
	read -r -p "plumb serve keeps serving the page; press Enter to stop. " _ || true
fi
