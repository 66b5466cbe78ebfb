#!/bin/sh
# Plumb installer: PID 1 of the installer initramfs (made by plumb build).
# It loads the kernel modules, brings up the network and runs
# `plumbd install`, which writes the disk and reboots.
#
# Kernel command line:
#   plumb.disk=DEV|auto   the disk to install to (default auto: the only empty disk)
#   plumb.force=1         overwrite a disk that holds partitions or data
#   plumb.ip=ADDR/LEN,GW  static network setup (default: DHCP)
/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin /tmp /etc
/bin/busybox --install -s
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /sys/kernel/security
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
echo "plumb-installer: loading modules"
while read -r m; do insmod "$m" 2>/dev/null; done </lib/modules/load-order

disk=auto
force=
static=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	plumb.disk=*) disk=${arg#plumb.disk=} ;;
	plumb.force=1) force=--force ;;
	plumb.ip=*) static=${arg#plumb.ip=} ;;
	esac
done

ip link set lo up
ifc=
i=0
while [ -z "$ifc" ] && [ $i -lt 50 ]; do
	for n in /sys/class/net/*; do
		n=${n##*/}
		if [ "$n" != lo ] && [ -e "/sys/class/net/$n" ]; then
			ifc=$n
			break
		fi
	done
	[ -n "$ifc" ] || sleep 0.2
	i=$((i + 1))
done
if [ -z "$ifc" ]; then
	echo "plumb-installer: no network interface found"
else
	ip link set "$ifc" up
	if [ -n "$static" ]; then
		echo "plumb-installer: $ifc ${static%,*} via ${static#*,}"
		ip addr add "${static%,*}" dev "$ifc"
		ip route add default via "${static#*,}"
	else
		echo "plumb-installer: DHCP on $ifc"
		udhcpc -i "$ifc" -s /etc/udhcpc.script -n -q -t 10 -T 2 ||
			echo "plumb-installer: DHCP on $ifc failed"
	fi
fi

echo "plumb-installer: plumbd install --disk $disk $force"
plumbd install --disk "$disk" $force
rc=$?
if [ $rc = 0 ]; then
	sync
	reboot -f
fi
echo "plumb-installer: plumbd install failed (exit $rc); the disk is as the line above says; a shell follows"
exec sh
