#!/usr/bin/env bash
# cleanroot.sh: run the README's commands the way a new user (or CI) would,
# in a clean Debian 12 root: `make demo`, then `make test`.
#
#   sudo bash scripts/cleanroot.sh [DIR]
#
# 1. debootstrap --variant=minbase bookworm into DIR (default
#    /var/tmp/plumb-cleanroot), plus git, make and ca-certificates; copy Go
#    from /usr/local/go and the host's CA certificates (the Go module proxy
#    and apt may sit behind a CA the host trusts).
# 2. git clone this checkout's committed HEAD into DIR/src/plumb.
# 3. In a private mount + PID namespace: bind DIR onto itself (so it is a
#    mount point), mount /proc, bind /dev and /sys, pivot_root into it. The
#    new / is a real mount, so the containerd tests' `unshare --propagation
#    private` works (a plain chroot fails with "cannot change root filesystem
#    propagation"). /dev is the host's: the installer tests need loop devices.
# 4. Inside: make demo (on PORT, default 28443), then make test. Each step's
#    wall time and result are printed and written to DIR/result.txt.
#
# Environment: MIRROR (default http://deb.debian.org/debian), PORT, KEEP=1
# keeps an existing DIR's Debian root (only the clone is redone), RUN=CMD
# runs CMD in the clone instead of make demo + make test (with KEEP=1: to
# re-run some tests on a newer commit in a root that already ran make). GOPROXY,
# GOFLAGS, GONOSUMDB, GOSUMDB, GOPRIVATE are passed in from the host. No
# host cache is shared: Go modules, the Go build cache and the Debian
# package cache all start empty, as on a new machine.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
root=$(realpath -m "${1:-/var/tmp/plumb-cleanroot}")
mirror=${MIRROR:-http://deb.debian.org/debian}
port=${PORT:-28443}

[ "$(id -u)" = 0 ] || { echo "cleanroot.sh: run as root (debootstrap, mounts, apt)" >&2; exit 1; }
for t in debootstrap unshare git; do
	command -v "$t" >/dev/null || { echo "cleanroot.sh: $t not found (apt-get install debootstrap util-linux git)" >&2; exit 1; }
done
[ -x /usr/local/go/bin/go ] || { echo "cleanroot.sh: no Go in /usr/local/go" >&2; exit 1; }

step() { printf '\n==> %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

if [ "${KEEP:-}" != 1 ] || [ ! -x "$root/usr/bin/make" ]; then
	step "debootstrap --variant=minbase bookworm into $root"
	rm -rf "$root"
	mkdir -p "$root"
	start=$(date +%s)
	debootstrap --variant=minbase --include=git,make,ca-certificates bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
		{ tail -20 "$root.debootstrap.log"; exit 1; }
	echo "debootstrap: $(( $(date +%s) - start ))s"
	# The same suites as the host's apt (bookworm-updates and security), so
	# package versions match what a maintained Debian 12 installs.
	cat > "$root/etc/apt/sources.list" <<-EOF
	deb $mirror bookworm main
	deb $mirror bookworm-updates main
	deb ${mirror%/debian}/debian-security bookworm-security main
	EOF
	step "copying Go $(/usr/local/go/bin/go env GOVERSION) and the host's CA certificates"
	cp -a /usr/local/go "$root/usr/local/go"
	# One file per certificate in /usr/local/share/ca-certificates, so
	# update-ca-certificates (run again by apt triggers) keeps them.
	mkdir -p "$root/usr/local/share/ca-certificates/host"
	awk -v d="$root/usr/local/share/ca-certificates/host" '
		/BEGIN CERTIFICATE/ { n++; f = sprintf("%s/host-%04d.crt", d, n) }
		f { print > f }
		/END CERTIFICATE/ { close(f); f = "" }' /etc/ssl/certs/ca-certificates.crt
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/hosts "$root/etc/hosts"

step "cloning $(git -C "$src" rev-parse --short HEAD) ($(git -C "$src" rev-parse --abbrev-ref HEAD)) into $root/src/plumb"
# The Debian package cache (make debs, plumb build) lives outside the
# clone, so KEEP=1 keeps it too.
if [ -d "$root/src/plumb/.cache" ] && [ ! -e "$root/var/cache/plumb" ]; then
	mv "$root/src/plumb/.cache" "$root/var/cache/plumb"
fi
rm -rf "$root/src/plumb"
mkdir -p "$root/src"
git clone -q --no-hardlinks "$src" "$root/src/plumb"
git -C "$root/src/plumb" checkout -q "$(git -C "$src" rev-parse HEAD)"

# What runs inside the new root, as PID 1 of its PID namespace.
cat > "$root/cleanroot-inner.sh" <<EOF
#!/bin/bash
set -u
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
export CACHE=/var/cache/plumb PLUMB_CACHE=/var/cache/plumb
export GOPROXY='$(go env GOPROXY 2>/dev/null || echo https://proxy.golang.org,direct)' GOFLAGS='${GOFLAGS:-}'
export GONOSUMDB='${GONOSUMDB:-}' GOSUMDB='${GOSUMDB:-}' GOPRIVATE='${GOPRIVATE:-}'
update-ca-certificates >/dev/null 2>&1
cd /src/plumb
: > /result.txt
run() {
	local name=\$1; shift
	printf '\n==> %s: %s\n' "\$(date -u +%H:%M:%S)" "\$*"
	local t0=\$(date +%s)
	"\$@" > "/\$name.log" 2>&1
	local rc=\$? t=\$(( \$(date +%s) - t0 ))
	tail -30 "/\$name.log"
	echo "\$name: exit \$rc after \${t}s" | tee -a /result.txt
	return \$rc
}
EOF
if [ -n "${RUN:-}" ]; then
	printf 'run custom bash -c %q\n' "$RUN" >> "$root/cleanroot-inner.sh"
else
	printf 'run demo env PORT=%s make demo\nrun test make test\n' "$port" >> "$root/cleanroot-inner.sh"
fi
chmod +x "$root/cleanroot-inner.sh"

step "entering $root (mount + PID namespace, pivot_root)"
start=$(date +%s)
set +e
unshare --mount --pid --fork --propagation private -- /bin/bash -euc '
	root=$1
	mount --bind "$root" "$root"
	mount -t proc proc "$root/proc"
	mount --rbind /dev "$root/dev"
	mount --rbind /sys "$root/sys"
	mount -t tmpfs -o mode=755 tmpfs "$root/run"
	mkdir -p "$root/.oldroot"
	cd "$root"
	pivot_root . .oldroot
	umount -l /.oldroot
	rmdir /.oldroot
	exec bash /cleanroot-inner.sh
' cleanroot "$root"
rc=$?
set -e
echo
echo "cleanroot.sh: $(tr '\n' ';' < "$root/result.txt") total $(( $(date +%s) - start ))s, exit $rc"
exit $rc
