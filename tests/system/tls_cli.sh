#!/usr/bin/env bash
# The TLS options' usage errors (no KVM needed): each exits 64 with a
# message that names what is wrong, before any VM or connection exists.
. "$(dirname "$0")/lib.sh"
command -v certtool >/dev/null || skip "certtool (gnutls-bin) is not installed"
C=$T/tls
scripts/tls-certs.sh "$C" >/dev/null || fail "cannot make test credentials"

# expect_usage REGEX ARGS...: ferry ARGS exits 64 and says REGEX.
expect_usage() {
	local re=$1 rc=0; shift
	timeout 20 "$FERRY" "$@" >"$T/out" 2>&1 </dev/null || rc=$?
	[ "$rc" -eq 64 ] || { cat "$T/out"; fail "ferry $*: exit $rc, want 64"; }
	grep -qE -- "$re" "$T/out" || { cat "$T/out"; fail "ferry $*: no '$re' in the message"; }
}
port=$(random_port)
expect_usage "not a directory" run --incoming "tcp:127.0.0.1:$port" --tls-creds "$T/none"
expect_usage "needs server-cert.pem and server-key.pem" \
	run --incoming "tcp:127.0.0.1:$port" --tls-creds "$C/client"
expect_usage "go with --incoming" run --kernel "$PROBE" --tls-creds "$C/server"
expect_usage "takes on or off" run --incoming "tcp:127.0.0.1:$port" --tls-verify-peer maybe
mkdir -p "$T/noca"; cp "$C"/server/server-*.pem "$T/noca/"
expect_usage "tls-verify-peer on needs .*ca-cert.pem" \
	run --incoming "tcp:127.0.0.1:$port" --tls-creds "$T/noca" --tls-verify-peer on
printf 'ferry:abc\n' >"$T/keys.psk"; mkdir -p "$T/badpsk"; mv "$T/keys.psk" "$T/badpsk/"
expect_usage "line 1: use IDENTITY:HEXKEY" run --incoming "tcp:127.0.0.1:$port" --tls-creds "$T/badpsk"
expect_usage "--tls-authz needs --tls-creds" run --incoming "tcp:127.0.0.1:$port" --tls-authz "$T/none"
expect_usage "cannot read --tls-authz" \
	run --incoming "tcp:127.0.0.1:$port" --tls-creds "$C/server" --tls-authz "$T/none"
expect_usage "bad --tls-creds" migrate "$T/none.ctl" "tcp:127.0.0.1:$port" --tls-creds "$T/none"
echo "TLS usage errors: exit 64 with the reason"
