#!/usr/bin/env bash
# Bad command lines and bad inputs: a clear message, a meaningful exit
# status, never a crash.
. "$(dirname "$0")/lib.sh"

# expect STATUS PATTERN CMD...: CMD exits with STATUS and says PATTERN.
expect() {
	local want=$1 re=$2; shift 2
	local rc=0
	"$@" >"$T/out" 2>&1 || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$T/out"; fail "'$*' exited $rc, want $want"; }
	grep -qiE -e "$re" "$T/out" || { cat "$T/out"; fail "'$*' did not say '$re'"; }
	! grep -q "Sanitizer" "$T/out" || { cat "$T/out"; fail "'$*' tripped a sanitizer"; }
	log "ok: $* -> $rc"
}

printf 'this is not an ELF file\n' >"$T/text"
head -c 100 /bin/true >"$T/truncated"

expect 64 "usage" "$FERRY"
expect 0 "usage" "$FERRY" --help
expect 0 "--memory" "$FERRY" run --help
expect 64 "unknown command" "$FERRY" frobnicate
expect 64 "unrecognized|invalid" "$FERRY" run --kernel "$PROBE" --bogus
expect 64 "required" "$FERRY" run
expect 64 "bad --memory" "$FERRY" run --kernel "$PROBE" --memory 12Q
expect 64 "multiple of 2M from 16M" "$FERRY" run --kernel "$PROBE" --memory 8M
expect 64 "bad --vcpus" "$FERRY" run --kernel "$PROBE" --vcpus 0
expect 64 "bad --vcpus" "$FERRY" run --kernel "$PROBE" --vcpus 65
expect 66 "cannot read kernel" "$FERRY" run --kernel "$T/nonexistent"
expect 69 "cannot reach ferry" "$FERRY" status "$T/nobody.sock"
expect 64 "JSON object" "$FERRY" call "$T/nobody.sock" status '[1,2]'
expect 64 "--compress takes none, lz4, zstd, delta or adaptive" \
	"$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --compress gzip
expect 64 "bad --compress-level" "$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --compress-level 20
expect 64 "bad --xbzrle-cache" "$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --xbzrle-cache 1k

if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	expect 65 "not an ELF" "$FERRY" run --kernel "$T/text"
	expect 65 "cannot boot" "$FERRY" run --kernel "$T/truncated"
	expect 65 "not a PVH kernel" "$FERRY" run --kernel /bin/true
	expect 65 "command line too long" "$FERRY" run --kernel "$PROBE" \
		--cmdline "$(head -c 5000 /dev/zero | tr '\0' a)"
	expect 64 "bad --serial" "$FERRY" run --kernel "$PROBE" --serial tty:/dev/null

	# A control socket that another live ferry holds is refused.
	start_ferry holder --kernel "$PROBE" --cmdline "workload=idle" \
		--serial "file:$T/holder.serial" --control "$T/busy.sock"
	wait_control "$T/busy.sock"
	expect 71 "in use by another process" "$FERRY" run --kernel "$PROBE" \
		--serial "file:$T/x.serial" --control "$T/busy.sock"
	# ... while a stale file left by a dead one is replaced.
	kill -KILL "$FERRY_PID"; wait "$FERRY_PID" 2>/dev/null || true
	[ -S "$T/busy.sock" ] || fail "the killed ferry's socket file is gone; test is moot"
	start_ferry reuse --kernel "$PROBE" --cmdline "workload=idle" \
		--serial "file:$T/reuse.serial" --control "$T/busy.sock"
	wait_control "$T/busy.sock"
	"$FERRY" quit "$T/busy.sock"
	wait_exit "$FERRY_PID" 10
	[ "$RC" -eq 0 ] || fail "quit gave exit status $RC"
else
	log "no /dev/kvm: skipping the checks that boot a VM"
fi
echo "all CLI error checks passed"
