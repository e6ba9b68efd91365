#!/usr/bin/env bash
# test-qemu.sh - boot the probe under QEMU and check it behaves.
#
#   guest/test-qemu.sh build/probe.elf
#
# Runs workload=verify on 2 vCPUs for 2 s on the pc machine, again on the
# microvm machine (no PC speaker gate at port 0x61: the TSC rate must come
# from kvmclock or CPUID), and once on pc without kvmclock (the PIT path).
# Each run expects heartbeats, the wss line, direct ring-3 port I/O, no
# CORRUPT, and QEMU exit status 1 (isa-debug-exit value 0 = success).
# Exit: 0 pass, 1 fail, 77 skipped (no /dev/kvm or no QEMU).
set -u

elf=${1:?usage: $0 path/to/probe.elf}
qemu=${QEMU:-qemu-system-x86_64}

if ! command -v "$qemu" >/dev/null 2>&1; then
	echo "test-qemu: SKIP: $qemu not found" >&2
	exit 77
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "test-qemu: SKIP: /dev/kvm not usable" >&2
	exit 77
fi
if [ ! -f "$elf" ]; then
	echo "test-qemu: FAIL: $elf not found" >&2
	exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT

fail() {
	echo "test-qemu: FAIL: $name: $*" >&2
	sed 's/^/  | /' "$out" | grep -v '^  | hb ' >&2
	exit 1
}

# run NAME TSC_SOURCE_REGEX CPU_FLAGS [QEMU args]
run() {
	local rc hbs
	name=$1
	local tsc_re=$2 cpu=$3
	shift 3
	# -arch-capabilities: plain "-cpu host" aborts on some kvm hosts (kvm-pvm).
	timeout 120 "$qemu" "$@" -enable-kvm -cpu "host,-arch-capabilities$cpu" -smp 2 -m 256 \
		-nodefaults -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel "$elf" -append "workload=verify wss=16M period=10ms seconds=2" \
		>"$out" 2>&1 </dev/null
	rc=$?
	hbs=$(grep -c '^hb [0-9]*$' "$out")
	[ "$rc" -eq 1 ] || fail "QEMU exit status $rc, want 1 (guest exit value 0)"
	grep -q '^probe: wss 0x[0-9a-f]* 0x[0-9a-f]*$' "$out" || fail "no 'probe: wss' line"
	grep -q '^probe: cpus 2 ' "$out" || fail "the AP did not come up"
	grep -qE "^probe: tsc [0-9]+ kHz from ($tsc_re)\$" "$out" ||
		fail "the TSC rate did not come from $tsc_re"
	grep -q '^CORRUPT' "$out" && fail "verify reported corruption"
	grep -q '^probe: port-io ring3$' "$out" || fail "ring-3 port I/O faulted"
	# 2 s at 10 ms is 200; allow for a busy host.
	[ "$hbs" -ge 50 ] || fail "only $hbs heartbeats"
	echo "test-qemu: $name: PASS ($hbs heartbeats, $(sed -nE 's/^probe: (tsc .*)/\1/p' "$out"))"
}

run pc '.*' ''
run microvm 'cpuid 0x40000010|kvmclock' '' -M microvm,acpi=off -no-user-config
run pc-no-kvmclock 'pit|cpuid 0x40000010' ',-kvmclock'
exit 0
