#!/usr/bin/env bash
# serial: two kernels in emulated ring 0 at once need both cores
#
# Early boot of Debian's own kernel: its PVH vmlinux (extracted from the
# bzImage of the linux-image package, downloaded with apt-get and cached
# under $BUILD/linux-cache) boots in ferry and, side by side, in QEMU's
# microvm, with earlyprintk=serial.  The kernel's first lines must show it
# parsed what ferry gave it: its version, the command line, the e820 map
# ferry wrote, the memory size and, once it gets that far, --vcpus CPUs.
# On kvm-pvm the kernel stops soon after "Memory:" (an instruction the
# ring-0 emulator lacks), so that is where the test stops too.
. "$(dirname "$0")/lib.sh"
require_kvm

MEM_MB=512 VCPUS=2 LIMIT=60
CMDLINE="earlyprintk=serial console=ttyS0 loglevel=8 nokaslr"
cache=$BUILD/linux-cache
mkdir -p "$cache"

# The kernel: downloaded and unpacked once (never installed on the host).
rc=0; scripts/debian-kernel.sh "$cache" >"$T/fetch.log" 2>&1 || rc=$?
[ "$rc" -ne 77 ] || skip "$(tail -n 1 "$T/fetch.log")"
[ "$rc" -eq 0 ] || { cat "$T/fetch.log"; fail "cannot unpack Debian's kernel"; }
KERNEL=$cache/vmlinux

start_ferry linux --kernel "$KERNEL" --memory "${MEM_MB}M" --vcpus "$VCPUS" \
	--cmdline "$CMDLINE" --serial "file:$T/ferry.serial"
ferry_pid=$FERRY_PID
qemu=
if command -v qemu-system-x86_64 >/dev/null; then
	# QEMU itself, not a timeout(1) around it: cleanup's SIGKILL of a
	# wrapper would leave QEMU running a kernel that never finishes here.
	qemu-system-x86_64 -M microvm,acpi=off -no-user-config -nodefaults \
		-enable-kvm -cpu host,-arch-capabilities -m "$MEM_MB" -smp "$VCPUS" \
		-display none -serial "file:$T/qemu.serial" -no-reboot \
		-kernel "$KERNEL" -append "$CMDLINE" >"$T/qemu.log" 2>&1 &
	qemu=$!
	PIDS+=("$qemu")
fi

wait_line "$T/ferry.serial" 'Memory: [0-9]+K/[0-9]+K available' "$LIMIT"
out=$T/ferry.serial

grep -qE 'Linux version [0-9]+\.[0-9]+' "$out" || fail "no 'Linux version' line"
# The command line, exactly (ferry adds virtio-mmio entries only for devices).
got=$(sed -nE 's/.*Command line: (.*)\r?$/\1/p' "$out" | head -n1 | tr -d '\r')
[ "$got" = "$CMDLINE" ] || fail "kernel command line '$got', ferry gave '$CMDLINE'"
# The e820 map, exactly ferry's: low RAM, the legacy hole, RAM from 1 MiB.
top=$(printf '0x%016x' $((MEM_MB * 1024 * 1024 - 1)))
printf '%s\n' "[mem 0x0000000000000000-0x000000000009ffff] usable" \
	"[mem 0x00000000000a0000-0x00000000000fffff] reserved" \
	"[mem 0x0000000000100000-${top}] usable" >"$T/e820.want"
sed -nE 's/.*BIOS-e820: (\[mem [^]]*\] [a-z]+).*/\1/p' "$out" | tr -d '\r' >"$T/e820.got"
diff -u "$T/e820.want" "$T/e820.got" || fail "the kernel's e820 map is not ferry's"
# Its memory: every usable page of --memory, less nothing it was not given.
total_k=$(sed -nE 's/.*Memory: [0-9]+K\/([0-9]+)K available.*/\1/p' "$out" | head -n1)
[ "$total_k" -gt $(((MEM_MB - 16) * 1024)) ] && [ "$total_k" -le $((MEM_MB * 1024)) ] ||
	fail "the kernel counts ${total_k}K of RAM; ferry gave it ${MEM_MB} MiB"
# The CPUs it found in the MP table, once it printed them.
if grep -qE 'Allowing [0-9]+ CPUs' "$out"; then
	grep -qE "Allowing $VCPUS CPUs" "$out" ||
		fail "the kernel allows $(grep -oE 'Allowing [0-9]+ CPUs' "$out"), ferry gave $VCPUS"
	log "the kernel found $VCPUS CPUs"
fi
log "ferry: $(grep -oE 'Linux version [^ ]+' "$out" | head -n1), e820 and command line as given, ${total_k}K RAM"

if [ -n "$qemu" ]; then
	wait_line "$T/qemu.serial" 'Memory: [0-9]+K/[0-9]+K available' "$LIMIT"
	qgot=$(sed -nE 's/.*Command line: (.*)\r?$/\1/p' "$T/qemu.serial" | head -n1 | tr -d '\r')
	case $qgot in "$CMDLINE"*) ;; *) fail "under QEMU the command line is '$qgot'" ;; esac
	log "QEMU microvm, side by side: the same kernel reached 'Memory:'; its e820:"
	sed -nE 's/.*BIOS-e820: (.*)/#   \1/p' "$T/qemu.serial" | tr -d '\r'
else
	log "qemu-system-x86_64 is not installed: ferry only"
fi
kill -KILL "$ferry_pid" 2>/dev/null || true
[ -z "$qemu" ] || kill -KILL "$qemu" 2>/dev/null || true
echo "Debian's kernel parsed ferry's boot data: version, command line, e820, memory"
