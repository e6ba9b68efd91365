#!/bin/sh
# /init of the initramfs that scripts/nested-kvm.sh boots under QEMU (TCG).
# Runs as PID 1 under busybox: loads virtio, 9p and kvm_amd, mounts the
# host's root (read-only) and the repository (writable) from 9p shares,
# runs the command the host left in the repository in a chroot, writes its
# exit status next to it and powers off.
#
# Kernel command line: ferry.repo=PATH (the repository, at the same path
# as on the host), ferry.dir=DIR (the harness's cache, relative to the
# repository: DIR/linux holds the kernel's modules) and ferry.run=DIR (this
# run's directory, relative to the repository: cmd, status).
export PATH=/bin:/sbin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

repo= dir= run=
for arg in $(cat /proc/cmdline); do
	case $arg in
	ferry.dir=*) dir=${arg#ferry.dir=} ;;
	ferry.repo=*) repo=${arg#ferry.repo=} ;;
	ferry.run=*) run=${arg#ferry.run=} ;;
	esac
done

die() {
	echo "nested-init: $*"
	poweroff -f
	sleep 60
}

# The shares first (the initramfs holds these modules and their modules.dep).
modprobe -a virtio_pci 9pnet_virtio 9p || die "cannot load the virtio and 9p modules"

R=/newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot $R ||
	die "cannot mount the host's root"
[ -n "$repo" ] && [ -n "$dir" ] && [ -n "$run" ] || die "ferry.repo=, ferry.dir= or ferry.run= missing"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=mmap repo "$R$repo" ||
	die "cannot mount the repository at $repo"
status=$R$repo/$run/status

# The whole module tree of this kernel, for what the tests ask for (veth,
# sch_tbf...): the kernel runs /sbin/modprobe (busybox) in this initramfs,
# which reads /lib/modules/$(uname -r).
kver=$(uname -r)
if [ -f "$R$repo/$dir/linux/lib/modules/$kver/modules.dep" ]; then
	mount --bind "$R$repo/$dir/linux/lib/modules/$kver" "/lib/modules/$kver"
fi
# /dev/net/tun appears only once tun is loaded (nothing opens it to load it
# on demand): the tests' taps need it.  A kernel without it: they skip.
modprobe tun 2>/dev/null || echo "nested-init: no tun module: tests that need taps skip"

# 77 tells the host to skip: this CPU (QEMU's) offers no usable SVM.
if ! modprobe kvm_amd || [ ! -c /dev/kvm ]; then
	grep -qw svm /proc/cpuinfo || echo "nested-init: the CPU has no svm flag"
	echo 77 >"$status"
	die "no /dev/kvm: kvm_amd did not load"
fi

mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
# What udev would make: bash's <(...) needs /dev/fd.
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
for d in /tmp /run /var/tmp /root; do
	[ -d "$R$d" ] && mount -t tmpfs -o mode=1777 tmpfs "$R$d"
done
chmod 700 $R/root
mkdir -p $R/run/netns $R/run/lock
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null || true
ip link set lo up 2>/dev/null

echo "nested-init: /dev/kvm ready, running $repo/$run/cmd"
rc=0
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root TERM=dumb LANG=C.UTF-8 FERRY_NESTED=1 \
	/bin/bash "$repo/$run/cmd" </dev/console >/dev/console 2>&1 || rc=$?
echo "$rc" >"$status"
sync
echo "nested-init: command exited $rc"
poweroff -f
sleep 60
