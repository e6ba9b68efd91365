#!/usr/bin/env bash
# Migration over TLS (--tls-creds, credentials from scripts/tls-certs.sh):
# a pre-copy with --verify over tcp, a post-copy over unix whose connection
# is cut and resumed over TLS again; then every refusal, each with the
# source's guest running on and a message that says why: wrong CA, wrong
# name, expired, not yet valid, no client certificate where one is
# required, plain against TLS both ways, a source not in --tls-authz, PSK
# mismatch.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v certtool >/dev/null || skip "certtool (gnutls-bin) is not installed"
C=$T/tls
scripts/tls-certs.sh "$C" >/dev/null || fail "cannot make test credentials"

# Pre-copy over TLS, checked end to end.
start_dest pre-d "tcp:127.0.0.1:$(random_port)" --tls-creds "$C/server"; D=$FERRY_PID; uri=$DEST_URI
start_source pre-s 1 256M "workload=verify wss=32M period=20ms"; S=$FERRY_PID
"$FERRY" migrate "$T/pre-s.ctl" "$uri" --verify --json --tls-creds "$C/client" >"$T/pre.json" 2>"$T/pre.err" ||
	{ cat "$T/pre.json" "$T/pre.err" "$T/pre-d.log"; fail "TLS pre-copy failed"; }
[ "$(json_field "$T/pre.json" status)" = completed ] || fail "TLS pre-copy not completed"
json_field "$T/pre.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "TLS pre-copy: no verified digest"
grep -q "TLS session with the source: (TLS1.3).*AES-128-GCM" "$T/pre-d.log" ||
	{ cat "$T/pre-d.log"; fail "the destination did not log a TLS 1.3 AES-GCM session"; }
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "TLS pre-copy: source exit $RC"
wait_line "$T/pre-d.serial" '^hb ' 10
first=$(last_beat "$T/pre-d.serial")
wait_beats "$T/pre-d.serial" "$((first + 10))"
"$FERRY" quit "$T/pre-d.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T/pre-s.serial" "$T/pre-d.serial" || fail "TLS pre-copy: corruption"
log "pre-copy over TLS (tcp) verified"

# Post-copy over TLS (unix, the name checked is --tls-hostname's), cut and
# resumed: the resume shakes hands again with the first migration's credentials.
start_dest pc-d "unix:$T/pc.mig" --tls-creds "$C/server" --resume-timeout 60s; D=$FERRY_PID
start_source pc-s 1 256M "workload=verify wss=64M fill=random period=20ms" --test-hooks; S=$FERRY_PID
"$FERRY" migrate "$T/pc-s.ctl" "unix:$T/pc.mig" --mode postcopy --prepage 0 --postcopy-bandwidth 16M \
	--verify --json --tls-creds "$C/client" --tls-hostname localhost >"$T/pc.json" & M=$!; PIDS+=("$M")
wait_migration "$T/pc-s.ctl" postcopy-active 15
wait_migration_ge "$T/pc-s.ctl" pages-pushed 64 10
"$FERRY" call "$T/pc-s.ctl" x-test-migration-break >/dev/null
rc=0; wait "$M" || rc=$?
[ "$rc" -eq 4 ] || { cat "$T/pc.json" "$T/pc-d.log"; fail "broken TLS post-copy: exit $rc, want 4"; }
for ((i = 0; i < 200; i++)); do [ -S "$T/pc.mig" ] && break; sleep 0.05; done
[ -S "$T/pc.mig" ] || { cat "$T/pc-d.log"; fail "destination does not listen again"; }
"$FERRY" migrate "$T/pc-s.ctl" "unix:$T/pc.mig" --resume --json >"$T/pc2.json" ||
	{ cat "$T/pc2.json" "$T/pc-d.log"; fail "--resume over TLS did not finish the migration"; }
[ "$(json_field "$T/pc2.json" status)" = completed ] || fail "resumed TLS post-copy not completed"
json_field "$T/pc2.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "resumed: no verified digest"
[ "$(grep -c "TLS session with the source" "$T/pc-d.log")" -ge 2 ] ||
	{ cat "$T/pc-d.log"; fail "the resume did not run over TLS"; }
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "TLS post-copy: source exit $RC"
first=$(last_beat "$T/pc-d.serial")
wait_beats "$T/pc-d.serial" "$((first + 10))"
"$FERRY" quit "$T/pc-d.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T/pc-d.serial" || fail "TLS post-copy: corruption"
log "post-copy over TLS (unix), cut, resumed over TLS, verified"

# Refusals: one source runs through them all.
start_source bad-s 1 128M "workload=verify wss=16M period=20ms"; S=$FERRY_PID
# refuse NAME "DEST ARGS" "MIGRATE ARGS" SOURCE-REGEX DEST-REGEX
refuse() {
	local name=$1 dargs=$2 margs=$3 src_re=$4 dst_re=$5 rc=0
	# shellcheck disable=SC2086
	start_dest "$name-d" "tcp:127.0.0.1:$(random_port)" $dargs; local d=$FERRY_PID uri=$DEST_URI
	# shellcheck disable=SC2086
	timeout 60 "$FERRY" migrate "$T/bad-s.ctl" "$uri" --json $margs >"$T/$name.json" 2>"$T/$name.err" || rc=$?
	[ "$rc" -eq 1 ] || { cat "$T/$name.json" "$T/$name.err"; fail "$name: ferry migrate exit $rc, want 1"; }
	[ "$(json_field "$T/$name.json" status)" = failed ] || { cat "$T/$name.json"; fail "$name: not failed"; }
	grep -qE -- "$src_re" "$T/$name.json" || { cat "$T/$name.json"; fail "$name: the source does not say '$src_re'"; }
	wait_line "$T/$name-d.log" "$dst_re" 10
	assert_source_runs bad-s
	assert_no_guest "$T/$name-d.serial"
	if kill -0 "$d" 2>/dev/null; then
		# A TLS destination refused the peer and waits on; a signal ends it.
		kill -TERM "$d"; wait_exit "$d" 10
		[ "$RC" -eq 143 ] || fail "$name: destination exit $RC after SIGTERM, want 143"
	else
		wait_exit "$d" 10
		[ "$RC" -eq 65 ] || { cat "$T/$name-d.log"; fail "$name: destination exit $RC, want 65"; }
	fi
	log "$name: refused: $(sed -nE 's/.*"error": *"([^"]*)".*/\1/p' "$T/$name.json" | head -n1)"
}
refuse wrong-ca "--tls-creds $C/server" "--tls-creds $C/client-otherca" \
	"issuer is unknown" "refused a source.*alert"
refuse wrong-name "--tls-creds $C/server-wrongname" "--tls-creds $C/client" \
	"does not match" "refused a source.*alert"
refuse hostname "--tls-creds $C/server" "--tls-creds $C/client --tls-hostname other.example" \
	"does not match" "refused a source.*alert"
refuse expired "--tls-creds $C/server-expired" "--tls-creds $C/client" \
	"expired" "refused a source"
refuse not-yet-valid "--tls-creds $C/server-notyet" "--tls-creds $C/client" \
	"not yet" "refused a source"
refuse no-client-cert "--tls-creds $C/server" "--tls-creds $C/client-nocert" \
	"[Cc]ertificate" "refused a source.*sent no certificate"
refuse plain-to-tls "--tls-creds $C/server" "" \
	"TLS alert: it requires TLS" "connected without TLS"
refuse tls-to-plain "" "--tls-creds $C/client" \
	"does not speak TLS" "source speaks TLS"
echo "CN=someone-else" >"$T/authz"
refuse authz "--tls-creds $C/server --tls-authz $T/authz" "--tls-creds $C/client" \
	"Access was denied" "refused a source.*not in --tls-authz"
refuse psk-mismatch "--tls-creds $C/psk" "--tls-creds $C/psk-other" \
	"PSK" "refused a source.*PSK"

# After all that, the source still migrates over TLS to a good destination.
start_dest last-d "tcp:127.0.0.1:$(random_port)" --tls-creds "$C/psk"; D=$FERRY_PID; uri=$DEST_URI
"$FERRY" migrate "$T/bad-s.ctl" "$uri" --verify --json --tls-creds "$C/psk" >"$T/last.json" ||
	{ cat "$T/last.json" "$T/last-d.log"; fail "PSK migration after the refusals failed"; }
wait_exit "$S" 10
[ "$RC" -eq 0 ] || fail "PSK migration: source exit $RC"
wait_line "$T/last-d.serial" '^hb ' 10
"$FERRY" quit "$T/last-d.ctl"; wait_exit "$D" 10
! grep -q CORRUPT "$T"/*.serial || fail "corruption"
assert_no_sanitizer "$T"/*.log
echo "TLS: pre-copy, post-copy and resume over TLS; 10 refusals, each with its reason"
