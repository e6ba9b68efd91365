#!/usr/bin/env bash
# Post-copy with --postcopy-preempt (docs/migration-stream.md, "Post-copy
# preempt"): the pages the guest faults on travel on a connection of their
# own.  A verified post-copy completes with the guest's own check intact
# and the preempt connection having carried requested pages; then the
# preempt connection alone is cut during post-copy: both sides pause as
# for the main one, --resume finishes on the main connection alone, and
# the guest never sees a wrong byte; a hybrid with --channels; over TLS.
# Function only: under emulation the latencies mean nothing.
. "$(dirname "$0")/lib.sh"
require_kvm

# A guest that walks 64 MiB of random pages while a slow push (16 MB/s,
# no prepaging) leaves most of them to its faults.
WALK="workload=verify wss=64M fill=random seed=11 period=20ms"

# The final report's numeric field, 0 when absent.
num() { local v; v=$(json_field "$1" "$2"); echo "${v:-0}"; }

# Verified post-copy with a preempt connection, over unix.
start_dest pre-d "unix:$T/pre.mig"; D=$FERRY_PID
start_source pre-s 1 256M "$WALK"; S=$FERRY_PID
"$FERRY" migrate "$T/pre-s.ctl" "unix:$T/pre.mig" --mode postcopy --postcopy-preempt --prepage 0 \
	--postcopy-bandwidth 16M --verify --json >"$T/pre.json" 2>"$T/pre.err" ||
	{ cat "$T/pre.json" "$T/pre.err" "$T/pre-d.log"; fail "post-copy with preempt failed"; }
[ "$(json_field "$T/pre.json" status)" = completed ] || fail "post-copy with preempt not completed"
json_field "$T/pre.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "no verified digest"
[ "$(json_field "$T/pre.json" postcopy-preempt)" = true ] || { cat "$T/pre.json"; fail "preempt not on"; }
pages=$(num "$T/pre.json" preempt-pages); reqs=$(num "$T/pre.json" preempt-requests)
log "preempt: $reqs requests, $pages pages, latency avg $(json_field "$T/pre.json" preempt-latency-avg-us) us," \
    "max $(json_field "$T/pre.json" preempt-latency-max-us) us; faults $(num "$T/pre.json" faults)"
[ "$pages" -gt 0 ] || { cat "$T/pre.json"; fail "no page travelled on the preempt connection"; }
[ "$reqs" -ge "$pages" ] || fail "more preempt pages ($pages) than requests ($reqs)"
[ "$(num "$T/pre.json" preempt-bytes)" -gt $((pages * 4096)) ] || fail "preempt-bytes too small"
grep -q "post-copy page requests will have a connection of their own" "$T/pre-d.log" ||
	{ cat "$T/pre-d.log"; fail "the destination did not take a preempt connection"; }
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "source exit $RC"
wait_line "$T/pre-d.serial" '^hb ' 10
first=$(last_beat "$T/pre-d.serial")
wait_beats "$T/pre-d.serial" "$((first + 10))"
"$FERRY" quit "$T/pre-d.ctl"; wait_exit "$D" 10
[ "$RC" -eq 0 ] || fail "destination exit $RC"
! grep -q CORRUPT "$T/pre-s.serial" "$T/pre-d.serial" || fail "corruption"
assert_no_sanitizer "$T/pre-s.log" "$T/pre-d.log"
log "post-copy with a preempt connection: verified, $pages pages on it"

# The preempt connection alone is cut in post-copy: the same as the main
# one breaking (both pause, exit 4), and --resume finishes without it.
start_dest cut-d "unix:$T/cut.mig" --resume-timeout 60s; D=$FERRY_PID
start_source cut-s 1 256M "$WALK" --test-hooks; S=$FERRY_PID
"$FERRY" migrate "$T/cut-s.ctl" "unix:$T/cut.mig" --mode postcopy --postcopy-preempt --prepage 0 \
	--postcopy-bandwidth 8M --verify --json >"$T/cut.json" & M=$!; PIDS+=("$M")
wait_migration "$T/cut-s.ctl" postcopy-active 30
wait_migration_ge "$T/cut-s.ctl" preempt-pages 1 30
"$FERRY" call "$T/cut-s.ctl" x-test-migration-break '{"connection": "preempt"}' >/dev/null ||
	fail "cannot cut the preempt connection"
rc=0; wait "$M" || rc=$?
[ "$rc" -eq 4 ] || { cat "$T/cut.json" "$T/cut-d.log"; fail "preempt cut: ferry migrate exit $rc, want 4 (paused)"; }
grep -q '"status": *"postcopy-paused"' "$T/cut.json" || fail "source not in postcopy-paused"
for ((i = 0; i < 200; i++)); do [ -S "$T/cut.mig" ] && break; sleep 0.05; done
[ -S "$T/cut.mig" ] || { cat "$T/cut-d.log"; fail "destination does not listen again"; }
grep -q "lost the source" "$T/cut-d.log" || { cat "$T/cut-d.log"; fail "destination did not pause"; }
# Whichever side saw the cut first names it (the other may see main go first).
json_field "$T/cut.json" error | grep -q preempt ||
	grep -q "lost the source (the post-copy preempt connection" "$T/cut-d.log" ||
	{ cat "$T/cut.json" "$T/cut-d.log"; fail "neither side names the preempt connection"; }
"$FERRY" migrate "$T/cut-s.ctl" "unix:$T/cut.mig" --resume --json >"$T/cut2.json" ||
	{ cat "$T/cut2.json" "$T/cut-d.log"; fail "--resume did not finish the migration"; }
[ "$(json_field "$T/cut2.json" status)" = completed ] || fail "resumed migration not completed"
[ "$(num "$T/cut2.json" resumes)" -ge 1 ] || fail "no resume counted"
json_field "$T/cut2.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "resumed: no verified digest"
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "resumed: source exit $RC"
first=$(last_beat "$T/cut-d.serial")
wait_beats "$T/cut-d.serial" "$((first + 10))"
"$FERRY" quit "$T/cut-d.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T/cut-s.serial" "$T/cut-d.serial" || fail "preempt cut: corruption"
assert_no_sanitizer "$T/cut-s.log" "$T/cut-d.log"
log "preempt connection cut in post-copy: paused, resumed on the main connection, verified"
# Hybrid with --channels: the extra connections carry the pre-copy passes
# and close at the switch; the preempt connection, accepted with them, serves
# post-copy.
start_dest hy-d "unix:$T/hy.mig"; D=$FERRY_PID
start_source hy-s 1 256M "$WALK"; S=$FERRY_PID
"$FERRY" migrate "$T/hy-s.ctl" "unix:$T/hy.mig" --channels 2 --mode hybrid --postcopy-after 2 \
	--postcopy-preempt --bandwidth 64M --postcopy-bandwidth 16M --prepage 0 --verify --json \
	>"$T/hy.json" 2>"$T/hy.err" || { cat "$T/hy.json" "$T/hy.err" "$T/hy-s.log" "$T/hy-d.log"
	grep -v "^hb " "$T/hy-s.serial" | tail -n 5; fail "hybrid: migrate failed"; }
[ "$(json_field "$T/hy.json" status)" = completed ] || fail "hybrid: not completed"
json_field "$T/hy.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "hybrid: no verified digest"
[ "$(json_field "$T/hy.json" postcopy-preempt)" = true ] || { cat "$T/hy.json"; fail "hybrid: preempt not on"; }
grep -q "receiving on 2 channels" "$T/hy-d.log" || fail "hybrid: the destination did not use 2 channels"
# Re-sends count on every connection, the preempt one too: every page sent
# but the first copy of each of the 65536 pages of 256 MiB.
sent=$(( $(num "$T/hy.json" normal-pages) + $(num "$T/hy.json" zero-pages) ))
resent=$(num "$T/hy.json" pages-resent)
[ "$resent" -eq $((sent - 65536)) ] || { cat "$T/hy.json"
	fail "hybrid: $resent pages re-sent of $sent sent, not $((sent - 65536))"; }
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "hybrid: source exit $RC"
wait_line "$T/hy-d.serial" '^hb ' 10
first=$(last_beat "$T/hy-d.serial")
wait_beats "$T/hy-d.serial" "$((first + 10))"
"$FERRY" quit "$T/hy-d.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T/hy-s.serial" "$T/hy-d.serial" || fail "hybrid: corruption"
log "hybrid with 2 channels and preempt: verified, $(num "$T/hy.json" preempt-pages) pages on it," \
	"$resent re-sent"

# Over TLS (tcp): the preempt connection shakes hands like the main one.
if command -v certtool >/dev/null; then
	C=$T/tls
	scripts/tls-certs.sh "$C" >/dev/null || fail "cannot make test credentials"
	start_dest tls-d "tcp:127.0.0.1:$(random_port)" --tls-creds "$C/server"; D=$FERRY_PID; uri=$DEST_URI
	start_source tls-s 1 256M "$WALK"; S=$FERRY_PID
	"$FERRY" migrate "$T/tls-s.ctl" "$uri" --mode postcopy --postcopy-preempt --prepage 0 \
		--postcopy-bandwidth 16M --verify --json --tls-creds "$C/client" >"$T/tls.json" 2>"$T/tls.err" ||
		{ cat "$T/tls.json" "$T/tls.err" "$T/tls-d.log"; fail "TLS post-copy with preempt failed"; }
	[ "$(json_field "$T/tls.json" status)" = completed ] || fail "TLS: not completed"
	json_field "$T/tls.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "TLS: no verified digest"
	[ "$(num "$T/tls.json" preempt-pages)" -gt 0 ] || { cat "$T/tls.json"; fail "TLS: no preempt page"; }
	[ "$(grep -c "TLS session with the source" "$T/tls-d.log")" -ge 2 ] ||
		{ cat "$T/tls-d.log"; fail "TLS: the preempt connection did not shake hands"; }
	wait_exit "$S" 10
	[ "$RC" -eq 0 ] || fail "TLS: source exit $RC"
	wait_line "$T/tls-d.serial" '^hb ' 10
	first=$(last_beat "$T/tls-d.serial")
	wait_beats "$T/tls-d.serial" "$((first + 10))"
	"$FERRY" quit "$T/tls-d.ctl"; wait_exit "$D" 10
	! grep -q CORRUPT "$T/tls-s.serial" "$T/tls-d.serial" || fail "TLS: corruption"
	log "post-copy with preempt over TLS (tcp): verified, $(num "$T/tls.json" preempt-pages) pages on it"
else
	log "certtool (gnutls-bin) is not installed: the TLS case is left out"
fi
echo "post-copy preempt: requested pages on their own connection; a cut pauses and resumes"
