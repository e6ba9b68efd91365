#!/usr/bin/env bash
# A save file carries the guest's CPU (CONFIG's CPUID): restoring it where
# the host offers less (--cpu-model FILE, here without SSE3..CX16) is refused by
# name before anything runs, as an incoming migration is; the same file
# restores where the host offers enough, and a baseline guest restores on
# the baseline.
. "$(dirname "$0")/lib.sh"
require_kvm

CMD="workload=verify wss=8M period=20ms"
cat >"$T/v2.model" <<'MODEL'
fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36
clflush mmx fxsr sse sse2 sse3 ssse3 cx16 sse4_1 sse4_2 popcnt x2apic
tsc_deadline_timer lahf_lm syscall nx lm
MODEL
# Which of these a host-model guest has depends on the KVM (some offer no
# SSE3); CX16 at least, and the refusal lists leaf 1's features first.
LESS='sse3|ssse3|sse4_1|sse4_2|popcnt|cx16'
sed -E "s/\\b($LESS)\\b//g" "$T/v2.model" >"$T/old.model"

# 1. A host-model guest, saved, restored on a "host" without them: refused.
start_source s1 1 64M "$CMD"; s1=$FERRY_PID
"$FERRY" save "$T/s1.ctl" "$T/s1.sav" || fail "save failed"
wait_exit "$s1" 30
rc=0
"$FERRY" run --restore "$T/s1.sav" --cpu-model "$T/old.model" --serial "file:$T/r1.serial" \
	>"$T/r1.log" 2>&1 || rc=$?
[ "$rc" -eq 69 ] || { cat "$T/r1.log"; fail "refusal: exit $rc, want 69"; }
grep -Eq "cannot run on this host.*\b($LESS)\b" "$T/r1.log" ||
	{ cat "$T/r1.log"; fail "refusal: none of $LESS named"; }
assert_no_guest "$T/r1.serial"
log "refused: $(grep -o 'lacks .*' "$T/r1.log" | head -n1)"

# 2. The same file where the host offers all it had: restores and runs on.
start_ferry r2 --restore "$T/s1.sav" --serial "file:$T/r2.serial" --control "$T/r2.ctl"
r2=$FERRY_PID
wait_control "$T/r2.ctl"
# The guest counts on from where it was saved.
wait_line "$T/r2.serial" '^hb ' 20
n=$(last_beat "$T/r2.serial")
wait_beats "$T/r2.serial" "$((n + 5))" 20
"$FERRY" quit "$T/r2.ctl"
wait_exit "$r2" 10

# 3. A baseline guest restores on a baseline host.
start_source s3 1 64M "$CMD" --cpu-model baseline; s3=$FERRY_PID
"$FERRY" save "$T/s3.ctl" "$T/s3.sav" || fail "baseline save failed"
wait_exit "$s3" 30
start_ferry r3 --restore "$T/s3.sav" --cpu-model "$T/v2.model" --serial "file:$T/r3.serial" \
	--control "$T/r3.ctl"
r3=$FERRY_PID
wait_control "$T/r3.ctl"
wait_line "$T/r3.serial" '^hb ' 20
"$FERRY" quit "$T/r3.ctl"
wait_exit "$r3" 10
! grep -q CORRUPT "$T"/*.serial || fail "corruption"
assert_no_sanitizer "$T"/*.log
echo "restore: refusal by name, host and baseline guests restore"
