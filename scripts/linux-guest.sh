#!/usr/bin/env bash
# linux-guest.sh [OUTDIR] - the Linux test image, from Debian packages only.
#
#   OUTDIR/vmlinuz            Debian's stock kernel (bzImage)
#   OUTDIR/vmlinux            its PVH ELF (for ferry's or QEMU's PVH entry)
#   OUTDIR/initramfs.cpio.gz  busybox-static and guest/linux/workload.c,
#                             built static, with an /init that runs the
#                             workload named on the kernel command line:
#                             workload=idle | cpu:THREADS | mem:THREADS:MIB
#
# Boot: ferry run --kernel OUTDIR/vmlinuz --initrd OUTDIR/initramfs.cpio.gz \
#         --memory 1G --vcpus 2 --cmdline "console=ttyS0 workload=cpu:2"
# The workload prints "hb N" every 100 ms on the console.  Nothing is
# installed on this host: packages are downloaded and unpacked.  Not part
# of make check (make linux-demo uses it).  Exit: 0 built, 77 the archive
# cannot be reached, 1 failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-build/linux-guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$here/debian-kernel.sh" "$out"

# busybox-static: downloaded and unpacked, one static binary.
if ! (cd "$tmp" && timeout 300 apt-get download busybox-static) >"$tmp/apt.log" 2>&1; then
	cat "$tmp/apt.log" >&2
	echo "cannot download busybox-static from the Debian archive"
	exit 77
fi
dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/bb"
root=$tmp/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp}
cp "$tmp/bb/bin/busybox" "$root/bin/busybox"
for app in sh mount echo cat grep sed poweroff sleep; do
	ln -s busybox "$root/bin/$app"
done

# The workloads, static, as in the probe guest.
gcc -std=gnu11 -O2 -static -pthread -Wall -Wextra -Werror \
	"$here/../guest/linux/workload.c" -o "$root/bin/workload" -lm

cat >"$root/init" <<'INIT'
#!/bin/sh
# The seeds' workloads on Linux: workload=idle | cpu:THREADS | mem:THREADS:MIB
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
w=idle
for arg in $(cat /proc/cmdline); do
	case $arg in workload=*) w=${arg#workload=} ;; esac
done
echo "linux-guest: $(cat /proc/sys/kernel/osrelease), $(grep -c ^processor /proc/cpuinfo) CPUs, workload $w"
case $w in
idle) /bin/workload idle ;;
cpu:*) /bin/workload cpu "${w#cpu:}" ;;
mem:*) t=${w#mem:}; /bin/workload mem "${t%%:*}" "${t#*:}" ;;
*) echo "linux-guest: unknown workload '$w'" ;;
esac
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 >"$out/initramfs.cpio.gz"
echo "linux-guest: $out/vmlinuz, $out/vmlinux, $out/initramfs.cpio.gz" \
	"($(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB)"
