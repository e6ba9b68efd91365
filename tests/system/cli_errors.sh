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
expect 66 "cannot read initrd" "$FERRY" run --kernel "$PROBE" --initrd "$T/nonexistent"
expect 64 "drop --kernel, --initrd" "$FERRY" run --incoming unix:"$T/x.sock" --initrd "$T/text"
printf 'fpu sse # comment\navx1024\n' >"$T/bad.model"
expect 64 "unknown feature 'avx1024'" "$FERRY" run --kernel "$PROBE" --cpu-model "$T/bad.model"
expect 64 "cannot open CPU model" "$FERRY" run --kernel "$PROBE" --cpu-model "$T/nonexistent"
expect 69 "cannot reach ferry" "$FERRY" status "$T/nobody.sock"
expect 64 "--standby goes with --incoming" "$FERRY" run --kernel "$PROBE" --standby
expect 64 "--standby goes with --incoming" "$FERRY" run --incoming "file:$T/text" --standby
expect 64 "go with --standby" "$FERRY" run --incoming unix:"$T/x.sock" --failover manual
expect 64 "--failover takes auto or manual" "$FERRY" run --incoming unix:"$T/x.sock" --standby --failover maybe
expect 64 "bad --failover-timeout" "$FERRY" run --incoming unix:"$T/x.sock" --standby --failover-timeout 10ms
expect 64 "shared storage is refused" "$FERRY" run --incoming unix:"$T/x.sock" --standby --disk path="$T/text"
expect 64 "usage" "$FERRY" replicate "$T/nobody.sock"
expect 64 "bad --interval" "$FERRY" replicate "$T/nobody.sock" unix:"$T/x" --interval 1ms
expect 69 "cannot reach ferry" "$FERRY" replicate "$T/nobody.sock" unix:"$T/x"
expect 69 "cannot reach ferry" "$FERRY" failover "$T/nobody.sock"
expect 64 "JSON object" "$FERRY" call "$T/nobody.sock" status '[1,2]'
expect 64 "--compress takes none, lz4, zstd, delta or adaptive" \
	"$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --compress gzip
expect 64 "bad --compress-level" "$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --compress-level 20
expect 64 "bad --xbzrle-cache" "$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --xbzrle-cache 1k
expect 64 "bad --net-epilogue" "$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --net-epilogue 11s
expect 64 "bad --net-epilogue" "$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --net-epilogue soon
expect 64 "--copy-storage-mode takes background or write-blocking" \
	"$FERRY" migrate "$T/nobody.sock" unix:"$T/x" --copy-storage --copy-storage-mode sometimes

# Ports out of range are refused, not wrapped or made random.
expect 64 "1\.\.65535" "$FERRY" run --incoming tcp:127.0.0.1:99999
expect 64 "1\.\.65535" "$FERRY" run --incoming tcp:127.0.0.1:65536
expect 64 "1\.\.65535" "$FERRY" run --incoming tcp:127.0.0.1:0
# A name that cannot resolve says so (.invalid never resolves: RFC 6761).
expect 64 "does not resolve" timeout 30 "$FERRY" run --incoming tcp:no-such-host.invalid:4444
# A kernel that is a FIFO would block the load forever: refused at once.
mkfifo "$T/fifo"
expect 66 "not a regular file" timeout 10 "$FERRY" run --kernel "$T/fifo"
expect 66 "not a regular file" "$FERRY" run --kernel "$T"
# A serial file in a directory that is not there: 73, not 69 ("no /dev/kvm").
expect 73 "does not exist" "$FERRY" run --kernel "$PROBE" --serial "file:$T/nonexistent/dir/x"
expect 73 "not a directory" "$FERRY" run --kernel "$PROBE" --serial "file:$T/text/x"
# A control path longer than a unix socket holds is a usage error, not 71.
expect 64 "too long" "$FERRY" run --kernel "$PROBE" --control "$T/$(head -c 200 /dev/zero | tr '\0' a)"

if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	expect 65 "not an ELF" "$FERRY" run --kernel "$T/text"
	expect 65 "cannot boot" "$FERRY" run --kernel "$T/truncated"
	expect 65 "not a PVH kernel" "$FERRY" run --kernel /bin/true
	# A bzImage of boot protocol 2.11 (the loader's own cases: tests/unit/test_bzimage.c).
	head -c 10752 /dev/zero >"$T/old.bz"
	printf '\x04' | dd of="$T/old.bz" bs=1 seek=$((0x1f1)) conv=notrunc status=none
	printf '\x55\xaa' | dd of="$T/old.bz" bs=1 seek=$((0x1fe)) conv=notrunc status=none
	printf 'HdrS\x0b\x02' | dd of="$T/old.bz" bs=1 seek=$((0x202)) conv=notrunc status=none
	expect 65 "boot protocol 2.11 is older than 2.12" "$FERRY" run --kernel "$T/old.bz"
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
