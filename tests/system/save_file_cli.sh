#!/usr/bin/env bash
# 'ferry run --restore' and 'ferry save' refuse what they must before any
# VM exists (no KVM needed): a file that is not a save, a missing file, a
# directory, options that contradict the file, --lazy alone, a save to a
# control socket nobody serves, --disks other than path or copy, a live
# snapshot asked to copy the disks.  Each gets its exit status and a reason.
. "$(dirname "$0")/lib.sh"

expect() {	# expect STATUS REGEX ferry-args...
	local want=$1 re=$2 rc=0; shift 2
	"$FERRY" "$@" >"$T/out" 2>&1 || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$T/out"; fail "ferry $*: exit status $rc, want $want"; }
	grep -qE -e "$re" "$T/out" || { cat "$T/out"; fail "ferry $*: no '$re'"; }
}

head -c 10000 /dev/urandom >"$T/junk.sav"
expect 65 "not a ferry save file.*the guest was not started" run --restore "$T/junk.sav"
printf 'FERRYSAV' >"$T/short.sav"
expect 65 "shorter than its header: truncated" run --restore "$T/short.sav"
expect 66 "No such file" run --restore "$T/none.sav"
expect 64 "not a regular file" run --restore "$T"
expect 64 "drop --incoming" run --restore "$T/junk.sav" --memory 1G
expect 64 "drop --incoming" run --restore "$T/junk.sav" --kernel "$T/junk.sav"
expect 64 "--lazy needs --restore" run --lazy
expect 64 "Usage: ferry save" save "$T/ctl"
expect 69 "cannot reach ferry" save "$T/ctl" "$T/vm.sav"
expect 64 "Usage: ferry snapshot" snapshot "$T/ctl"
expect 64 "Usage: ferry snapshot" snapshot "$T/ctl" "$T/vm.sav" --keep-running
expect 69 "cannot reach ferry" snapshot "$T/ctl" "$T/vm.sav"
expect 64 "--disks takes path or copy, not 'all'" save "$T/ctl" "$T/vm.sav" --disks all
expect 64 "a live snapshot cannot copy the disks" snapshot "$T/ctl" "$T/vm.sav" --disks copy
expect 69 "cannot reach ferry" save "$T/ctl" "$T/vm.sav" --disks copy --keep-running
[ ! -e "$T/vm.sav" ] && [ ! -e "$T/vm.sav.tmp" ] || fail "a failed save left a file"
assert_no_sanitizer "$T"/out
echo "restore and save refused bad input with the right status"
