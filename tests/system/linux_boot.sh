#!/usr/bin/env bash
# serial: two kernels in emulated ring 0 at once need both cores
#
# Early boot of Debian's own kernel: its PVH vmlinux (extracted from the
# bzImage of the linux-image package, downloaded with apt-get and cached
# under $BUILD/linux-cache) boots in ferry and, side by side, in QEMU's
# microvm, with earlyprintk=serial.  The kernel's first lines must show it
# parsed what ferry gave it: its version, the command line with the
# virtio-mmio entry of ferry's disk, the e820 map ferry wrote, the initrd
# where ferry put it, the memory size and --vcpus CPUs; QEMU, given the
# same kernel, must report the same version and CPUs.  On kvm-pvm the
# kernel stops soon after "Memory:" (an instruction the ring-0 emulator
# lacks), so that is where the test stops too.  Then the bzImage itself
# (the 64-bit boot protocol entry): its decompressor must read ferry's
# command line from the zero page (it says 'nokaslr' was seen); it would
# then take an hour to decompress in emulated ring 0, so the test ends.
. "$(dirname "$0")/lib.sh"
require_kvm

MEM_MB=512 VCPUS=2 LIMIT=120
CMDLINE="earlyprintk=serial console=ttyS0 loglevel=8 nokaslr"
cache=$BUILD/linux-cache
mkdir -p "$cache"

# The kernel: downloaded and unpacked once (never installed on the host).
rc=0; scripts/debian-kernel.sh "$cache" >"$T/fetch.log" 2>&1 || rc=$?
[ "$rc" -ne 77 ] || skip "$(tail -n 1 "$T/fetch.log")"
[ "$rc" -eq 0 ] || { cat "$T/fetch.log"; fail "cannot unpack Debian's kernel"; }
KERNEL=$cache/vmlinux

# An initrd (any bytes: the kernel only reserves it this early) and a disk,
# whose virtio-mmio entry ferry appends to the command line.
head -c 1418485 /dev/urandom >"$T/initrd.img"
truncate -s 8M "$T/disk.img"
start_ferry linux --kernel "$KERNEL" --memory "${MEM_MB}M" --vcpus "$VCPUS" \
	--cmdline "$CMDLINE" --serial "file:$T/ferry.serial" --initrd "$T/initrd.img" \
	--disk "path=$T/disk.img"
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
# The command line, exactly: ours, then the disk's virtio-mmio entry.
got=$(sed -nE 's/.*Command line: (.*)\r?$/\1/p' "$out" | head -n1 | tr -d '\r')
[[ $got =~ ^"$CMDLINE"\ virtio_mmio\.device=512@0x[0-9a-f]+:[0-9]+$ ]] ||
	fail "kernel command line '$got', ferry gave '$CMDLINE' and one virtio-mmio disk"
# The initrd: at the top of RAM, page-aligned, as ferry placed it.
size=$(stat -c %s "$T/initrd.img")
want=$(printf 'RAMDISK: \\[mem 0x%08x-0x%08x\\]' \
	$(((MEM_MB * 1024 * 1024 - size) & ~4095)) $((MEM_MB * 1024 * 1024 - 1)))
grep -qE "$want" "$out" ||
	fail "the kernel's initrd is not where ferry put it: $(grep -o 'RAMDISK: .*' "$out" || echo none)"
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
# The CPUs it found in the MP table (printed before "Memory:").
grep -qE "Allowing $VCPUS CPUs" "$out" ||
	fail "the kernel allows $(grep -oE 'Allowing [0-9]+ CPUs' "$out" || echo no CPUs), ferry gave $VCPUS"
version=$(grep -oE 'Linux version [^ ]+' "$out" | head -n1)
log "ferry: $version, e820, initrd and command line as given, ${total_k}K RAM, $VCPUS CPUs"

if [ -n "$qemu" ]; then
	wait_line "$T/qemu.serial" 'Memory: [0-9]+K/[0-9]+K available' "$LIMIT"
	qgot=$(sed -nE 's/.*Command line: (.*)\r?$/\1/p' "$T/qemu.serial" | head -n1 | tr -d '\r')
	case $qgot in "$CMDLINE"*) ;; *) fail "under QEMU the command line is '$qgot'" ;; esac
	qversion=$(grep -oE 'Linux version [^ ]+' "$T/qemu.serial" | head -n1)
	[ "$qversion" = "$version" ] || fail "QEMU ran '$qversion', ferry '$version'"
	grep -qE "Allowing $VCPUS CPUs" "$T/qemu.serial" ||
		fail "under QEMU the kernel allows $(grep -oE 'Allowing [0-9]+ CPUs' "$T/qemu.serial" ||
			echo no CPUs), not $VCPUS"
	log "QEMU microvm, side by side: the same kernel reached 'Memory:' with $VCPUS CPUs; its e820:"
	sed -nE 's/.*BIOS-e820: (.*)/#   \1/p' "$T/qemu.serial" | tr -d '\r'
else
	log "qemu-system-x86_64 is not installed: ferry only"
fi
kill -KILL "$ferry_pid" 2>/dev/null || true
[ -z "$qemu" ] || kill -KILL "$qemu" 2>/dev/null || true

# The bzImage, by the 64-bit boot protocol: the decompressor reads the
# command line through boot_params.cmd_line_ptr before anything else.
start_ferry bz --kernel "$cache/vmlinuz" --memory "${MEM_MB}M" --cmdline "$CMDLINE" \
	--serial "file:$T/bz.serial"
wait_line "$T/bz.serial" "KASLR disabled: 'nokaslr' on cmdline" "$LIMIT"
log "bzImage: the decompressor read ferry's command line from the zero page"
echo "Debian's kernel parsed ferry's boot data: version, command line, e820, initrd, memory, CPUs"
