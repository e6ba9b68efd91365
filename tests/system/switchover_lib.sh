# Switchover fault scenarios for migrate_switchover_*.sh.  Source it after
# lib.sh.  Each scenario migrates a fresh probe guest through
# mig_sec_relay, which drops, delays, repeats or cuts one message of the
# switchover (END, LOADED, GO, RESULT, ABORT) or stops one side for a while
# as that message passes, then checks where the guest ended up and that it
# never ran on both sides.
SRELAY=${SRELAY:-$BUILD/tools/mig_sec_relay}
SO_CMD="workload=verify wss=8M period=20ms"
SO_ARGS="--verify --switchover-timeout 1s"
END=6 GO=13 ABORT=14 RESULT=17 LOADED=24

# "running", "created", "paused", ... or "gone"; and the switchover state.
vm_status() { "$FERRY" status "$1" 2>/dev/null | sed -n 's/^status: *//p' | head -n1 || true; }
vm_switchover() { "$FERRY" status "$1" 2>/dev/null | sed -n 's/^switchover: *\([a-z-]*\).*/\1/p' || true; }

# Wait until CONTROL's switchover state is STATE (at most $3 s).
wait_switchover() {
	local ctl=$1 want=$2 limit=$3 i
	for ((i = 0; i < limit * 10; i++)); do
		[ "$(vm_switchover "$ctl")" = "$want" ] && return 0
		sleep 0.1
	done
	fail "$ctl: switchover is '$(vm_switchover "$ctl")', want '$want' after ${limit}s"
}

# The guest never ran on both sides: every heartbeat the destination
# printed comes after the last one the source printed, and nobody saw
# corruption.
never_both() {
	local s=$1 d=$2
	! grep -q CORRUPT "$s" "$d" 2>/dev/null || fail "the guest saw corruption"
	[ -s "$d" ] || return 0
	local last first
	last=$(last_beat "$s")
	first=$(sed -nE 's/^hb ([0-9]+)$/\1/p' "$d" | head -n1)
	[ -n "$first" ] || return 0
	[ "$first" -gt "${last:-0}" ] ||
		fail "both sides ran the guest: the source printed hb $last, the destination began at hb $first"
}

# The source guest runs on: status running and heartbeats move on.
source_runs() {
	local i st
	for ((i = 0; i < 50; i++)); do
		st=$(vm_status "$1.ctl")
		[ "$st" = running ] && break
		sleep 0.1
	done
	[ "$st" = running ] || fail "the source is '$st', not running"
	local n; n=$(last_beat "$1.serial")
	wait_beats "$1.serial" "$((n + 3))" 10
}

# An operator's 'ferry resume' at CONTROL is refused with a reason, and the
# VM stays STATE: in doubt, this copy may be the one that must not run.
refuses_resume() {
	local n=$1 ctl=$2 want=$3 out
	if out=$("$FERRY" resume "$ctl" 2>&1); then
		fail "$n: 'ferry resume' at $(basename "$ctl") was obeyed in doubt"
	fi
	case $out in
	*doubt*|*"not started"*) ;;
	*) fail "$n: 'ferry resume' refused without saying why: $out" ;;
	esac
	[ "$(vm_status "$ctl")" = "$want" ] || fail "$n: after a refused resume $(basename "$ctl") is '$(vm_status "$ctl")'"
}

# scenario NAME EXPECT FAULT...: EXPECT is where the guest must end up:
#   dest        at the destination; the source exits 0 (possibly after a
#               time in doubt settled by a late message)
#   source      at the source; the destination refuses and exits
#   doubt-both  nowhere yet: both in doubt, then settled by migrate-resolve
#               (run at the source, abandon at the destination)
#   doubt-src   at the destination; the source in doubt until abandoned
#   doubt-dst   at the source; the destination in doubt until abandoned
#   doubt-quit  like doubt-both, but the destination is told to quit
#   doubt-gone  at the source: GO never arrived and the destination gave up,
#               but the source cannot know; in doubt until told to run
# FAULTs are mig_sec_relay --fault specs; SRC and DST stand for the pids.
scenario() {
	local n=$1 expect=$2; shift 2
	local s=$T/s$n d=$T/d$n f faults=() rc=0
	start_dest "d$n" "unix:$T/$n.mig"; local dp=$FERRY_PID
	start_source "s$n" 1 64M "$SO_CMD"; local sp=$FERRY_PID
	for f in "$@"; do
		f=${f//SRC/$sp}
		faults+=(--fault "${f//DST/$dp}")
	done
	"$SRELAY" "$T/$n.relay" "unix:$T/$n.mig" "${faults[@]}" >"$T/$n.relay.out" 2>&1 &
	PIDS+=("$!")
	local i; for ((i = 0; i < 100; i++)); do [ -S "$T/$n.relay" ] && break; sleep 0.05; done
	"$FERRY" migrate "$s.ctl" "unix:$T/$n.relay" $SO_ARGS --json >"$T/$n.json" 2>"$T/$n.err" || rc=$?
	[ $# -eq 0 ] || grep -q '^fault' "$T/$n.relay.out" || fail "$n: the fault never fired"
	case $expect in
	dest)
		[ "$rc" -eq 0 ] || [ "$rc" -eq 5 ] || { cat "$T/$n.json" "$T/$n.err"; fail "$n: migrate exit $rc"; }
		wait_exit "$sp" 20
		[ "$RC" -eq 0 ] || fail "$n: source exit $RC, want 0"
		wait_beats "$d.serial" "$(($(last_beat "$s.serial") + 3))" 15
		[ "$(vm_status "$d.ctl")" = running ] || fail "$n: destination not running" ;;
	source)
		[ "$rc" -eq 1 ] || { cat "$T/$n.json" "$T/$n.err"; fail "$n: migrate exit $rc, want 1"; }
		wait_exit "$dp" 20
		[ "$RC" -ne 0 ] || fail "$n: destination exited 0"
		source_runs "$s"
		assert_no_guest "$d.serial" ;;
	doubt-both|doubt-quit)
		[ "$rc" -eq 5 ] || { cat "$T/$n.json" "$T/$n.err"; fail "$n: migrate exit $rc, want 5"; }
		wait_switchover "$s.ctl" in-doubt 10
		wait_switchover "$d.ctl" in-doubt 10
		[ "$(vm_status "$s.ctl")" = paused ] || fail "$n: source in doubt but '$(vm_status "$s.ctl")'"
		[ "$(vm_status "$d.ctl")" = created ] || fail "$n: destination in doubt but '$(vm_status "$d.ctl")'"
		refuses_resume "$n" "$s.ctl" paused
		refuses_resume "$n" "$d.ctl" created
		assert_no_guest "$d.serial"
		if [ "$expect" = doubt-quit ]; then
			"$FERRY" quit "$d.ctl"
		else
			"$FERRY" migrate-resolve "$d.ctl" abandon
		fi
		wait_exit "$dp" 10
		[ "$RC" -ne 0 ] || fail "$n: the abandoned destination exited 0"
		# Over a working link the destination's "no" settles the source too
		# (quickly); over a stalled one only the operator does.
		for ((i = 0; i < 10; i++)); do
			[ "$(vm_switchover "$s.ctl")" = in-doubt ] || break
			sleep 0.1
		done
		[ "$(vm_switchover "$s.ctl")" != in-doubt ] || "$FERRY" migrate-resolve "$s.ctl" run
		source_runs "$s"
		assert_no_guest "$d.serial" ;;
	doubt-src)
		[ "$rc" -eq 5 ] || { cat "$T/$n.json" "$T/$n.err"; fail "$n: migrate exit $rc, want 5"; }
		wait_switchover "$s.ctl" in-doubt 10
		[ "$(vm_status "$s.ctl")" = paused ] || fail "$n: source in doubt but '$(vm_status "$s.ctl")'"
		wait_beats "$d.serial" "$(($(last_beat "$s.serial") + 3))" 15
		# The guest runs at the destination: the source must not run it too.
		refuses_resume "$n" "$s.ctl" paused
		"$FERRY" migrate-resolve "$s.ctl" abandon
		wait_exit "$sp" 10
		[ "$RC" -eq 0 ] || fail "$n: abandoned source exit $RC" ;;
	doubt-gone)
		[ "$rc" -eq 5 ] || { cat "$T/$n.json" "$T/$n.err"; fail "$n: migrate exit $rc, want 5"; }
		wait_exit "$dp" 10
		[ "$RC" -ne 0 ] || fail "$n: destination exited 0"
		wait_switchover "$s.ctl" in-doubt 10
		[ "$(vm_status "$s.ctl")" = paused ] || fail "$n: source in doubt but '$(vm_status "$s.ctl")'"
		"$FERRY" migrate-resolve "$s.ctl" run
		source_runs "$s"
		assert_no_guest "$d.serial" ;;
	doubt-dst)
		[ "$rc" -eq 1 ] || { cat "$T/$n.json" "$T/$n.err"; fail "$n: migrate exit $rc, want 1"; }
		source_runs "$s"
		wait_switchover "$d.ctl" in-doubt 10
		"$FERRY" migrate-resolve "$d.ctl" abandon
		wait_exit "$dp" 10
		assert_no_guest "$d.serial" ;;
	esac
	never_both "$s.serial" "$d.serial"
	assert_no_sanitizer "$s.log" "$d.log"
	log "$n: $* -> $expect (migrate exit $rc)"
	kill -KILL "$sp" "$dp" 2>/dev/null || true
	wait "$sp" "$dp" 2>/dev/null || true
}
