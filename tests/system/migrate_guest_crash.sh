#!/usr/bin/env bash
# The source's guest dies during a live migration: a triple fault (the
# probe's crash=), or its own exit (seconds=).  The migration ends failed,
# never cancelled, and says why ("on the source, the guest crashed (...)");
# `ferry migrate --json` shows it; the source logs a crash dump (registers,
# segments, pending events, its last exits); the destination refuses
# without ever running the guest; no sanitizer report.
. "$(dirname "$0")/lib.sh"
require_kvm

# Slow enough that the migration is still live when the guest dies; the
# verify workload keeps dirtying pages, so it never converges in 1 ms.
SLOW="--bandwidth 4M --downtime 1ms"
CMD="workload=verify wss=16M period=20ms"

# The report's error text (json_field stops at its first comma).
json_error() { sed -nE 's/.*"error": *"([^"]*)".*/\1/p' "$1" | head -n1; }

# die NAME HOW WANT_ERROR WANT_SOURCE_EXIT: HOW is the probe's key (crash=8 or seconds=8).
die() {
	local name=$1 how=$2 want=$3 want_src=$4 s d m rc st
	start_dest "$name-dst" "unix:$T/$name.mig"; d=$FERRY_PID
	start_source "$name-src" 1 128M "$CMD $how"; s=$FERRY_PID
	"$FERRY" migrate "$T/$name-src.ctl" "unix:$T/$name.mig" $SLOW --json \
		>"$T/$name.json" 2>"$T/$name.err" & m=$!; PIDS+=("$m")
	# Live before the guest dies (it dies 8 s after it started running).
	wait_migration "$T/$name-src.ctl" active 6
	rc=0; wait "$m" || rc=$?
	st=$(json_field "$T/$name.json" status)
	[ "$rc" -eq 1 ] && [ "$st" = failed ] ||
		{ cat "$T/$name.json" "$T/$name.err"; fail "$name: migrate exit $rc, status '$st'"; }
	case $(json_error "$T/$name.json") in
	"on the source, $want"*) ;;
	*) cat "$T/$name.json"; fail "$name: the error is not 'on the source, $want...'" ;;
	esac
	grep -q "Migration: *failed" "$T/$name.err" && fail "$name: report on stderr" || true
	wait_exit "$s" 20
	[ "$RC" -eq "$want_src" ] || { tail -n 40 "$T/$name-src.log"; fail "$name: source exit $RC, want $want_src"; }
	grep -qF "failed: on the source, $want" "$T/$name-src.log" ||
		{ tail -n 40 "$T/$name-src.log"; fail "$name: the source did not log why the migration failed"; }
	! grep -q "the guest runs on here" "$T/$name-src.log" ||
		fail "$name: the source claims its dead guest runs on"
	wait_exit "$d" 40
	[ "$RC" -ne 0 ] || fail "$name: destination exited 0"
	grep -q "guest was not started" "$T/$name-dst.log" ||
		{ cat "$T/$name-dst.log"; fail "$name: destination did not say the guest was not started"; }
	assert_no_guest "$T/$name-dst.serial"
	log "$name: $(json_error "$T/$name.json"); source exit $want_src, destination exit $RC"
}

# 1. Triple fault: failed with the crash's reason; the source exits 80 and
#    its log holds the crash dump.
die crash crash=8 "the guest crashed (vCPU 0: guest triple fault (shutdown) at rip 0x" 80
grep -q "probe: crash=8: triple fault now" "$T/crash-src.serial" || fail "crash: the probe never crashed"
for want in "its state:" "rip 0x[0-9a-f]{16} rflags" " cs  sel 0x0008 " " tr  sel " \
	"idt base 0x0000000000000000 limit 0x0000" "cr0 0x" "exception injected" \
	"triple fault pending" "last 16 of [0-9]+ exits, oldest first:"; do
	grep -qE "vCPU 0: .*$want" "$T/crash-src.log" ||
		{ tail -n 40 "$T/crash-src.log"; fail "crash: no '$want' in the crash dump"; }
done
# The ring ends with the exit that killed it.
grep -E "^ferry: error: vCPU 0:     " "$T/crash-src.log" | tail -n 1 | grep -qE "shutdown +rip 0x" ||
	{ tail -n 20 "$T/crash-src.log"; fail "crash: the last exit in the ring is not the shutdown"; }
[ "$(grep -cE "^ferry: error: vCPU 0:     " "$T/crash-src.log")" -eq 16 ] ||
	fail "crash: the ring does not list 16 exits"

# 2. The guest exits by itself: failed, "the guest exited with status 0"; the source exits 0.
die exit seconds=8 "the guest exited with status 0" 0

assert_no_sanitizer "$T"/*.log "$T"/*.err
echo "a source guest that died mid-migration failed it with the reason; no guest started"
