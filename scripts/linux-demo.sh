#!/usr/bin/env bash
# make linux-demo: boot Debian's stock kernel (bzImage, with the initramfs
# of scripts/linux-guest.sh running a CPU workload on 2 vCPUs) in one ferry
# and live-migrate it to another while the workload runs.
#
# Where /dev/kvm is kvm-pvm (no hardware virtualization), a stock kernel
# cannot reach userspace, and this says so and why, and stops (exit 69).
set -euo pipefail
BUILD=${1:-build}
FERRY=$BUILD/ferry
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "linux-demo: /dev/kvm is not available to this user; ferry needs KVM." >&2
	exit 69
fi
if [ -d /sys/module/kvm_pvm ] || ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
	cat >&2 <<'WHY'
linux-demo: this host's KVM is kvm-pvm (no vmx/svm: no hardware virtualization),
and a stock Linux kernel cannot boot to userspace on it:
  - kvm-pvm runs guest ring 3 natively but emulates ring 0 at about 1 us per
    instruction, so the bzImage's decompressor alone takes over an hour;
  - the PVH vmlinux skips the decompressor and reaches "Linux version", its
    e820 map and "Memory: ..." in about 30 s, then the ring-0 emulator stops
    on an instruction it does not implement (lock cmpxchg16b in SLUB; after
    it xrstor, int3 self-tests, fwait, ldmxcsr).
What ferry can prove here it does in tests/system/linux_boot.sh (the kernel
parses ferry's boot data); the probe guest (make demo) migrates here.
Run make linux-demo where /dev/kvm is hardware virtualization.
WHY
	exit 69
fi
img=$BUILD/linux-guest
scripts/linux-guest.sh "$img"
dir=$(mktemp -d /tmp/ferry-linux-demo.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cmdline="console=ttyS0 workload=cpu:2"
echo "== destination: ferry run --incoming unix:$dir/mig"
"$FERRY" run --incoming "unix:$dir/mig" --serial "file:$dir/dst.serial" \
	--control "$dir/dst.sock" 2>"$dir/dst.log" &
pids+=($!)
echo "== source: Debian's kernel, 1 GiB, 2 vCPUs: $cmdline"
"$FERRY" run --kernel "$img/vmlinuz" --initrd "$img/initramfs.cpio.gz" --vcpus 2 \
	--memory 1G --cmdline "$cmdline" --serial "file:$dir/src.serial" \
	--control "$dir/src.sock" 2>"$dir/src.log" &
pids+=($!)
for _ in $(seq 1200); do grep -q '^hb 20' "$dir/src.serial" 2>/dev/null && break; sleep 0.1; done
if ! grep -q '^hb 20' "$dir/src.serial"; then
	echo "== the guest did not reach its workload in 120 s; its console:" >&2
	tail -n 30 "$dir/src.serial" >&2
	exit 1
fi
grep -E '^linux-guest:' "$dir/src.serial" | sed 's/^/   /'
echo "== ferry migrate $dir/src.sock unix:$dir/mig --verify --progress"
"$FERRY" migrate "$dir/src.sock" "unix:$dir/mig" --verify --progress
for _ in $(seq 100); do grep -q '^hb ' "$dir/dst.serial" 2>/dev/null && break; sleep 0.1; done
sleep 1
echo "== the workload on the destination:"
grep -m1 '^hb ' "$dir/dst.serial" | sed 's/^/   first heartbeat there: /'
tail -n 2 "$dir/dst.serial" | sed 's/^/   /'
"$FERRY" quit "$dir/dst.sock"
echo "== done: Debian's kernel moved with its workload running."
