#!/usr/bin/env bash
# The probe's virtio-mmio drivers under QEMU's microvm: the disk workload
# (modern and legacy transports) writes, flushes and reads back its pattern,
# which must be in the image file afterwards; a block overwritten behind its
# back is caught as CORRUPT-DISK; the net workload answers ARP, ICMP echo
# and UDP echo from a client in a network namespace.
. "$(dirname "$0")/lib.sh"
QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || skip "$QEMU is not installed (scripts/deps.sh installs it)"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"

NS=ferry-qdev-$$
TAP=fqd$$
GUEST_IP=10.199.$(($$ % 250)).2
HOST_IP=${GUEST_IP%.2}.1
ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace (needs root)"
# Kill QEMU (lib.sh's cleanup) before the namespace and its tap go.
trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT

# microvm ARGS...: start QEMU in the background, serial to $T/$name.serial.
# Usage: microvm NAME CMDLINE [QEMU args]; pid in QEMU_PID.  Run in $NS so
# that a tap there can be opened.
microvm() {
	local name=$1 cmdline=$2; shift 2
	ip netns exec "$NS" "$QEMU" -M microvm,acpi=off -enable-kvm -cpu host,-arch-capabilities \
		-m 256 -nodefaults -no-user-config -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel "$PROBE" -append "$cmdline" "$@" >"$T/$name.serial" 2>&1 </dev/null &
	QEMU_PID=$!
	PIDS+=("$QEMU_PID")
}

# Wait for QEMU to end and check its status: expect NAME STATUS SECS.
expect_exit() {
	local name=$1 want=$2
	wait_exit "$QEMU_PID" "$3"
	[ "$RC" -eq "$want" ] || { grep -v '^hb ' "$T/$name.serial"; fail "$name: QEMU exit status $RC, want $want"; }
}

# The number in "probe: disk N generations, ..." (the report at seconds=).
generations() { sed -nE 's/^probe: disk ([0-9]+) generations,.*/\1/p' "$1"; }

# --- disk, virtio 1.x: the pattern reaches the image file ------------------
truncate -s 16M "$T/disk.img"
microvm disk-modern "workload=verify,disk wss=16M disk_blocks=512 period=50ms seconds=3" -smp 2 \
	-global virtio-mmio.force-legacy=false \
	-drive if=none,id=d0,file="$T/disk.img",format=raw -device virtio-blk-device,drive=d0
expect_exit disk-modern 1 60
S=$T/disk-modern.serial
grep -q '^probe: virtio-mmio 0x[0-9a-f]* size 0x[0-9a-f]* irq [0-9]*: version 2 device 2 (blk)$' "$S" ||
	{ cat "$S"; fail "disk-modern: no version-2 virtio-blk device found"; }
! grep -q CORRUPT "$S" || { grep -v '^hb ' "$S"; fail "disk-modern: corruption reported"; }
gens=$(generations "$S")
[ "${gens:-0}" -ge 3 ] || { grep -v '^hb ' "$S"; fail "disk-modern: ${gens:-no} generations, want >= 3"; }
nonce=$(sed -nE 's/^probe: disk .* nonce (0x[0-9a-f]+)$/\1/p' "$S")
[ -n "$nonce" ] || fail "disk-modern: no nonce printed"
# Every block of the working set holds (block, a generation >= 1, nonce):
# the writes reached the file, not just the guest's memory.
python3 - "$T/disk.img" 512 "$nonce" <<'PY' || fail "disk-modern: the image does not hold the guest's pattern"
import struct, sys
path, blocks, nonce = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16)
with open(path, "rb") as f:
    for b in range(blocks):
        blk, gen, n = struct.unpack("<QQQ", f.read(4096)[:24])
        if (blk, n) != (b, nonce) or gen < 1:
            sys.exit("block %d holds (%d, %d, 0x%x)" % (b, blk, gen, n))
PY
log "disk-modern: $gens generations, the image holds the pattern"

# --- disk, legacy transport (microvm's default) -----------------------------
microvm disk-legacy "workload=disk disk_blocks=128 period=50ms seconds=2" \
	-drive if=none,id=d0,file="$T/disk.img",format=raw -device virtio-blk-device,drive=d0
expect_exit disk-legacy 1 60
S=$T/disk-legacy.serial
grep -q ': version 1 device 2 (blk)$' "$S" || { cat "$S"; fail "disk-legacy: no legacy virtio-blk device found"; }
! grep -q CORRUPT "$S" || { grep -v '^hb ' "$S"; fail "disk-legacy: corruption reported"; }
gens=$(generations "$S")
[ "${gens:-0}" -ge 3 ] || { grep -v '^hb ' "$S"; fail "disk-legacy: ${gens:-no} generations, want >= 3"; }
log "disk-legacy: $gens generations"

# --- disk: a block changed behind the guest's back is caught ------------------
microvm disk-corrupt "workload=disk disk_blocks=64 period=50ms seconds=20" \
	-drive if=none,id=d0,file="$T/disk.img",format=raw -device virtio-blk-device,drive=d0
wait_line "$T/disk-corrupt.serial" '^probe: running$' 30
for ((i = 0; i < 2000; i++)); do
	kill -0 "$QEMU_PID" 2>/dev/null || break
	printf 'XXXXXXXX' | dd of="$T/disk.img" bs=1 seek=$((5 * 4096 + 64)) conv=notrunc status=none
done
expect_exit disk-corrupt 3 30
grep -q '^CORRUPT-DISK 5 off 0x40 want 0x[0-9a-f]* got 0x5858585858585858 generation [0-9]*$' \
	"$T/disk-corrupt.serial" || { grep -v '^hb ' "$T/disk-corrupt.serial"; fail "disk-corrupt: no CORRUPT-DISK 5 line"; }
log "disk-corrupt: $(grep ^CORRUPT-DISK "$T/disk-corrupt.serial")"

# --- net: ARP, ICMP echo and UDP echo from the namespace ------------------------
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip tuntap add dev "$TAP" mode tap
ip netns exec "$NS" ip addr add "$HOST_IP/24" dev "$TAP"
ip netns exec "$NS" ip link set "$TAP" up
microvm net "workload=verify,net wss=16M ip=$GUEST_IP udp_port=7 period=50ms seconds=12" -smp 2 \
	-global virtio-mmio.force-legacy=false \
	-netdev tap,id=n0,ifname="$TAP",script=no,downscript=no -device virtio-net-device,netdev=n0
S=$T/net.serial
wait_line "$S" '^probe: running$' 30
ip netns exec "$NS" python3 tests/tools/net_echo.py "$GUEST_IP" 7 >"$T/client.log" 2>&1 ||
	{ cat "$T/client.log"; grep -v '^hb ' "$S"; fail "net: the guest did not answer"; }
cat "$T/client.log"
mac=$(sed -nE 's/^probe: net 0x[0-9a-f]+ mac ([0-9a-f:]+) .*/\1/p' "$S")
ip netns exec "$NS" ip neigh show "$GUEST_IP" dev "$TAP" | grep -q "lladdr $mac" ||
	{ ip netns exec "$NS" ip neigh; fail "net: no ARP entry for $GUEST_IP at $mac"; }
expect_exit net 1 60
! grep -q CORRUPT "$S" || { grep -v '^hb ' "$S"; fail "net: corruption reported"; }
report=$(grep '^probe: net rx' "$S" | tail -n1)
[[ $report =~ arp\ [1-9].*icmp\ ([5-9]|[1-9][0-9]+)\ udp\ ([4-9]|[1-9][0-9]+)\  ]] ||
	fail "net: the guest's counts are off: $report"
log "net: $report"
echo "virtio-blk and virtio-net drivers work under microvm"
