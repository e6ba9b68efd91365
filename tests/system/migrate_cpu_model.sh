#!/usr/bin/env bash
# CPU compatibility: a destination that offers fewer CPU features (its
# --cpu-model FILE) refuses a guest that was given more, naming what it
# lacks, before any page moves, and the source runs on; a guest started
# with --cpu-model baseline migrates to that same destination.
. "$(dirname "$0")/lib.sh"
require_kvm

CMD="workload=verify wss=8M period=20ms"
# x86-64-v2, which every 64-bit host has, as a feature list.
cat >"$T/v2.model" <<'MODEL'
# the baseline model, written out: SSE4.2, POPCNT, CX16, no AVX, no XSAVE
fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36
clflush mmx fxsr sse sse2 sse3 ssse3 cx16 sse4_1 sse4_2 popcnt x2apic
tsc_deadline_timer lahf_lm syscall nx lm
MODEL
# Even less: no SSE3 to POPCNT, no CX16.  Which of them a host-model guest
# has depends on the KVM (some offer no SSE3 at all), but it has CX16 at
# least, and the refusal lists leaf 1's features first, so it names one.
LESS='sse3|ssse3|sse4_1|sse4_2|popcnt|cx16'
grep -v '^#' "$T/v2.model" | sed -E "s/\\b($LESS)\\b//g" >"$T/old.model"

# 1. A host-model guest to a destination offering less: refused by name.
start_dest d1 "unix:$T/1.mig" --cpu-model "$T/old.model"; d1=$FERRY_PID
start_source s1 1 64M "$CMD"
rc=0; "$FERRY" migrate "$T/s1.ctl" "unix:$T/1.mig" --json >"$T/1.json" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || { cat "$T/1.json" "$T/d1.log"; fail "refusal: migrate exit $rc, want 1"; }
grep -q "guest CPU not supported here" "$T/1.json" ||
	{ cat "$T/1.json"; fail "refusal: the source was not told why"; }
grep -Eq "lacks [^\"]*\b($LESS)\b" "$T/1.json" ||
	{ cat "$T/1.json"; fail "refusal: none of $LESS named"; }
wait_exit "$d1" 40
[ "$RC" -eq 65 ] || { cat "$T/d1.log"; fail "refusal: destination exit $RC, want 65"; }
grep -Eq "lacks .*\b($LESS)\b" "$T/d1.log" ||
	{ cat "$T/d1.log"; fail "refusal: the destination named none of $LESS"; }
assert_no_guest "$T/d1.serial"
assert_source_runs s1
log "host guest refused by a destination without SSE3..CX16: $(grep -o 'lacks [^"]*' "$T/1.json" | head -n1)"
"$FERRY" quit "$T/s1.ctl"

# 2. A baseline guest fits a destination that offers the baseline.
start_dest d2 "unix:$T/2.mig" --cpu-model "$T/v2.model"; d2=$FERRY_PID
start_source s2 1 64M "$CMD" --cpu-model baseline; s2=$FERRY_PID
"$FERRY" migrate "$T/s2.ctl" "unix:$T/2.mig" --json >"$T/2.json" 2>&1 ||
	{ cat "$T/2.json" "$T/d2.log"; fail "baseline: migrate failed"; }
wait_exit "$s2" 10
[ "$RC" -eq 0 ] || fail "baseline: source exit status $RC"
wait_control "$T/d2.ctl"
n=$(last_beat "$T/s2.serial")
wait_beats "$T/d2.serial" "$((n + 5))" 20
! grep -q CORRUPT "$T/d2.serial" || fail "baseline: guest saw corruption"
"$FERRY" quit "$T/d2.ctl"
wait_exit "$d2" 10
assert_no_sanitizer "$T/s1.log" "$T/d1.log" "$T/s2.log" "$T/d2.log"
echo "CPU models: refusal by name, baseline migrates"
