#!/usr/bin/env bash
# Runs a command inside a Linux VM that QEMU emulates (TCG, no /dev/kvm
# needed) with a CPU that offers AMD SVM and nested paging, so the VM's
# kernel loads kvm_amd and has a /dev/kvm: the KVM tests run there on a
# machine without one.
#
#   scripts/nested-kvm.sh [--timeout S] [--memory SIZE] [--smp N] -- COMMAND...
#
# The VM runs Debian's stock kernel (the package linux-image-amd64 depends
# on, fetched with apt-get download and unpacked under $BUILD/nested, never
# installed); a small busybox initramfs loads virtio, 9p and kvm_amd. Its
# root is this machine's own root, shared read-only over virtio-9p, so every
# program and library is there; the repository is shared writable at the
# same path, so build outputs and logs come back. /tmp, /run, /var/tmp and
# /root are empty tmpfs inside.  COMMAND runs in the repository's root as
# root; the exit status is COMMAND's.  The VM's console goes to stdout and
# to $BUILD/nested/console.log.
#
# Exit status: COMMAND's; 77 (skipped, with the reason) when the kernel
# cannot be fetched, busybox-static or QEMU is missing, or QEMU's CPU gives
# the VM no /dev/kvm; 124 when the VM ran past --timeout; 125 when the VM
# ended without reporting a status.
set -euo pipefail
cd "$(dirname "$0")/.."

timeout_s=1800
memory=${NESTED_MEMORY:-6G}
smp=${NESTED_SMP:-2}
usage() { echo "usage: $0 [--timeout S] [--memory SIZE] [--smp N] -- COMMAND..." >&2; exit 64; }
while (($#)); do
	case $1 in
	--timeout) timeout_s=${2:?}; shift 2 ;;
	--memory) memory=${2:?}; shift 2 ;;
	--smp) smp=${2:?}; shift 2 ;;
	--) shift; break ;;
	*) usage ;;
	esac
done
(($#)) || usage
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || usage

BUILD=${BUILD:-build}
N=$BUILD/nested
repo=$(pwd -P)
mkdir -p "$N"
# The VM finds the cache and this run's directory by their paths in the repository.
ndir=$(realpath --relative-to="$repo" "$N")
case $ndir in ..*) echo "nested: $N must be inside the repository" >&2; exit 64 ;; esac

skip() { echo "skipped: $*"; exit 77; }
note() { echo "nested: $*" >&2; }

case $repo in
*[[:space:]]*) skip "the repository's path has blanks, which the kernel command line cannot carry" ;;
esac
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (scripts/deps.sh)"
qemu-system-x86_64 -cpu help | grep -qw svm || skip "this QEMU cannot emulate SVM"
BUSYBOX=/bin/busybox
{ [ -x $BUSYBOX ] && ! readelf -l $BUSYBOX 2>/dev/null | grep -q 'program interpreter'; } ||
	skip "$BUSYBOX is missing or not static (busybox-static, scripts/deps.sh)"

# --- The kernel and its modules: Debian's, unpacked, cached. ---------------
fetch_kernel() {
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -nE 's/^ *Depends: (linux-image-[0-9][^ ]*)$/\1/p' | head -n1)
	if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
		apt-get update -qq >&2 || true
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -nE 's/^ *Depends: (linux-image-[0-9][^ ]*)$/\1/p' | head -n1)
	fi
	[ -n "$pkg" ] || skip "apt-cache does not know linux-image-amd64"
	note "fetching $pkg"
	rm -rf "$N/deb" "$N/linux.new"
	mkdir -p "$N/deb"
	(cd "$N/deb" && apt-get download -q "$pkg" >&2) || skip "cannot download $pkg from the archive"
	dpkg-deb -x "$N"/deb/"$pkg"_*.deb "$N/linux.new"
	rm -rf "$N/deb" "$N/linux"
	mv "$N/linux.new" "$N/linux"
}
ls "$N"/linux/boot/vmlinuz-* >/dev/null 2>&1 || fetch_kernel
vmlinuz=$(ls "$N"/linux/boot/vmlinuz-* | head -n1)
kver=${vmlinuz##*/vmlinuz-}
moddir=$N/linux/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || $BUSYBOX depmod -b "$N/linux" "$kver"

# --- The initramfs: busybox, /init and the modules the shares need. --------
initrd=$N/initramfs-$kver.cpio.gz
if [ ! -f "$initrd" ] || [ scripts/nested-kvm-init.sh -nt "$initrd" ] || [ $BUSYBOX -nt "$initrd" ]; then
	note "building $initrd"
	root=$N/initramfs
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,dev,proc,sys,newroot,lib/modules/"$kver"}
	cp $BUSYBOX "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	ln -s ../bin/busybox "$root/sbin/modprobe"
	cp scripts/nested-kvm-init.sh "$root/init"
	chmod 755 "$root/init"
	# These modules and everything they depend on (modules.dep lists it).
	declare -A want=()
	for m in virtio_pci 9pnet_virtio 9p; do
		line=$(grep -E "/$m\\.ko(\\.[a-z]+)?:" "$moddir/modules.dep") ||
			{ echo "nested: $m is not in $moddir" >&2; exit 1; }
		for f in ${line/:/}; do want[$f]=1; done
	done
	for f in "${!want[@]}"; do
		mkdir -p "$root/lib/modules/$kver/${f%/*}"
		cp "$moddir/$f" "$root/lib/modules/$kver/$f"
	done
	$BUSYBOX depmod -b "$root" "$kver"
	(cd "$root" && find . | $BUSYBOX cpio -o -H newc 2>/dev/null) | gzip -1 >"$initrd.new"
	mv "$initrd.new" "$initrd"
	rm -rf "$root"
fi

# --- This run: the command, and where its status comes back. --------------
run=$(mktemp -d "$N/run.XXXXXX")
trap 'rm -rf "$run"' EXIT
{
	echo "cd $(printf %q "$repo") || exit 125"
	printf 'exec'
	printf ' %q' "$@"
	echo
} >"$run/cmd"

console=$N/console.log
note "booting the VM (TCG, $smp vCPUs, $memory); console in $console"
rc=0
start=$SECONDS
# QEMU's stdin is /dev/null: its console only writes.
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp "$smp" -m "$memory" \
	-nodefaults -no-user-config -display none -no-reboot \
	-serial stdio -monitor none \
	-kernel "$vmlinuz" -initrd "$initrd" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off ferry.repo=$repo ferry.dir=$ndir ferry.run=$ndir/${run##*/}" \
	-fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
	-fsdev local,id=repo,path="$repo",security_model=none,multidevs=remap \
	-device virtio-9p-pci,fsdev=repo,mount_tag=repo \
	</dev/null 2>&1 | sed -u 's/\r$//' | tee "$console" || rc=$?
note "the VM ran $((SECONDS - start))s"
if [ -f "$run/status" ]; then
	rc=$(cat "$run/status")
	((rc == 77)) && grep -q '^nested-init: ' "$console" && skip "$(grep '^nested-init: ' "$console" | tail -n1)"
	exit "$rc"
fi
if ((rc == 124 || rc == 137)); then
	note "the VM ran past ${timeout_s}s"
	exit 124
fi
note "the VM ended without a status (see $console)"
exit 125
