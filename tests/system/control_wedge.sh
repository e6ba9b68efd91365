#!/usr/bin/env bash
# Control clients that try to wedge ferry: eight idle connections, and one
# that pipelines requests without reading the replies.  `ferry status` still
# answers (or says Busy in words, never "Broken pipe"), and SIGTERM ends
# ferry promptly while the non-reader is connected.
. "$(dirname "$0")/lib.sh"
require_kvm
command -v python3 >/dev/null || skip "python3 is not available"

sock=$T/vm.sock
start_ferry vm --kernel "$PROBE" --cmdline "workload=idle period=20ms" \
	--serial "file:$T/serial" --control "$sock"
vm=$FERRY_PID
wait_control "$sock"

# --- Eight idle connections -------------------------------------------------
python3 -c '
import socket, sys, time
socks = []
for i in range(8):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    socks.append(s)
print("connected", flush=True)
time.sleep(120)
' "$sock" >"$T/idle.out" 2>&1 &
PIDS+=("$!")
wait_line "$T/idle.out" '^connected' 10
rc=0; "$FERRY" status "$sock" >"$T/st" 2>&1 || rc=$?
if [ "$rc" -eq 0 ]; then
	grep -q '^status: *running' "$T/st" || { cat "$T/st"; fail "status did not say running"; }
else
	grep -q "in use" "$T/st" || { cat "$T/st"; fail "busy status was not said clearly (rc $rc)"; }
	! grep -qi "broken pipe" "$T/st" || fail "busy reported as a broken pipe"
fi
# Idle clients give way after 10 s: status is served within a bound.
ok=
for ((i = 0; i < 60; i++)); do
	if "$FERRY" status "$sock" >"$T/st" 2>&1; then ok=1; break; fi
	sleep 0.5
done
[ -n "$ok" ] || { cat "$T/st"; fail "status never served while idle clients held the slots"; }
log "idle connections give way"

# --- A client that pipelines and never reads --------------------------------
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.setblocking(False)
req = b"{\"execute\":\"status\"}\n" * 1000
sent = 0
end = time.time() + 10
while sent < 300000 and time.time() < end:
    try:
        sent += s.send(req)
    except BlockingIOError:
        time.sleep(0.01)
    except OSError:
        break
print("sent", sent, flush=True)
time.sleep(120)
' "$sock" >"$T/pipe.out" 2>&1 &
PIDS+=("$!")
wait_line "$T/pipe.out" '^sent' 20
timeout 10 "$FERRY" status "$sock" >"$T/st" 2>&1 || { cat "$T/st"; fail "status blocked behind a non-reader"; }
grep -q '^status: *running' "$T/st" || fail "status did not say running"
log "a non-reader does not block another client"

kill -TERM "$vm"
wait_exit "$vm" 10
[ "$RC" -eq 0 ] || { cat "$T/vm.log"; fail "SIGTERM: exit status $RC"; }
[ ! -e "$sock" ] || fail "control socket file left behind"
assert_no_sanitizer "$T/vm.log"
echo "control socket cannot be wedged"
