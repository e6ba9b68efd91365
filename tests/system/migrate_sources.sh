#!/usr/bin/env bash
# Live sources behind the source table: the scratch source (tests only, a
# 1 MiB region enabled by --test-hooks and x-test-scratch) migrates next to
# RAM in SOURCE sections, arrives intact, and its pending bytes count in
# the convergence decision (query-migrate's per-source breakdown).
. "$(dirname "$0")/lib.sh"
require_kvm

scratch() { local a=${2:-'{}'}; "$FERRY" call "$1" x-test-scratch "$a"; }
digest_of() { sed -nE 's/.*"digest": *"([0-9a-f]{16})".*/\1/p' | head -n1; }
# A field of one source in a migrate --json report: src_field FILE SOURCE KEY
src_field() {
	tr -d '\n ' <"$1" | sed -nE "s/.*\"sources\":\{.*\"$2\":\{([^}]*)\}.*/\1/p" |
		sed -nE "s/.*\"$3\":([0-9]+).*/\1/p"
}

# 1: filled once, sent once, the destination holds the same bytes.
uri=unix:$T/a.mig
start_dest dst "$uri" --test-hooks
dst=$FERRY_PID
start_source src 1 64M "workload=verify wss=8M period=20ms" --test-hooks
src=$FERRY_PID
want=$(scratch "$T/src.ctl" '{"fill": 1234}' | digest_of)
[ -n "$want" ] || fail "x-test-scratch did not fill the source"
"$FERRY" migrate "$T/src.ctl" "$uri" --verify --json >"$T/a.json" 2>"$T/a.err" ||
	{ cat "$T/a.json" "$T/a.err" "$T/dst.log"; fail "migration with the scratch source failed"; }
[ "$(json_field "$T/a.json" status)" = completed ] || fail "not completed"
sent=$(src_field "$T/a.json" scratch sent-bytes)
[ "${sent:-0}" -ge 1048576 ] || { cat "$T/a.json"; fail "scratch sent ${sent:-nothing}, want >= 1 MiB"; }
wait_exit "$src" 10
got=$(scratch "$T/dst.ctl" | digest_of)
[ "$got" = "$want" ] || fail "destination scratch digest $got, source $want"
log "scratch arrived: digest $got, $sent bytes on the wire"
"$FERRY" quit "$T/dst.ctl"
wait_exit "$dst" 10

# 2: a scratch that is rewritten at every sync (a hot source) never fits a
# 5 ms downtime at 32 MB/s (1 MiB takes 31 ms): the policy must count it,
# so only --max-iterations ends the migration, and the last pass carries
# the last rewrite.
uri=unix:$T/b.mig
start_dest dst2 "$uri" --test-hooks
dst=$FERRY_PID
start_source src2 1 32M "workload=idle period=20ms" --test-hooks
src=$FERRY_PID
scratch "$T/src2.ctl" '{"fill": 77, "hot": true}' >/dev/null
"$FERRY" migrate "$T/src2.ctl" "$uri" --bandwidth 32M --downtime 5ms --max-iterations 4 \
	--keep-source --json >"$T/b.json" 2>"$T/b.err" ||
	{ cat "$T/b.json" "$T/b.err" "$T/dst2.log"; fail "migration with a hot scratch failed"; }
[ "$(json_field "$T/b.json" status)" = completed ] || fail "not completed"
[ "$(json_field "$T/b.json" iteration)" -eq 4 ] || { cat "$T/b.json"; fail "did not run to --max-iterations"; }
pend=$(src_field "$T/b.json" scratch pending-bytes)
peak=$(src_field "$T/b.json" scratch peak-pending-bytes)
# The report's own pending-bytes comes before those of its sources.
total=$(tr -d '\n ' <"$T/b.json" | grep -oE '"pending-bytes":[0-9]+' | head -n1 | cut -d: -f2)
[ "${pend:-0}" -eq 1048576 ] && [ "${peak:-0}" -eq 1048576 ] ||
	{ cat "$T/b.json"; fail "scratch pending ${pend:-?} / peak ${peak:-?}, want 1 MiB at each decision"; }
[ "${total:-0}" -ge 1048576 ] || { cat "$T/b.json"; fail "the policy summed ${total:-?} bytes, without the scratch"; }
want=$(scratch "$T/src2.ctl" | digest_of)
got=$(scratch "$T/dst2.ctl" | digest_of)
[ "$got" = "$want" ] || fail "hot scratch: destination digest $got, source $want"
log "hot scratch: pending $pend bytes at each decision (policy total $total), 4 passes, digest $got"
# The guest runs at dst2 now: the copy kept paused here must not run too.
! "$FERRY" resume "$T/src2.ctl" >"$T/resume.out" 2>&1 || fail "resume of the migrated-away copy was obeyed"
grep -q "never runs on both hosts" "$T/resume.out" || { cat "$T/resume.out"; fail "resume refused without the reason"; }
"$FERRY" quit "$T/dst2.ctl"
wait_exit "$dst" 10
"$FERRY" quit "$T/src2.ctl" || true
assert_no_sanitizer "$T/src.log" "$T/dst.log" "$T/src2.log" "$T/dst2.log"
echo "scratch source migrated and counted"
